package clusterjoin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

type rig struct {
	ca      *clusterpki.CA
	token   clusterpki.Token
	srv     *Server
	ts      *httptest.Server
	admits  atomic.Int32
	nonces  atomic.Int32
	admitFn func(Request, netip.Addr) (Admission, error)
}

func newRig(t *testing.T) *rig { return newRigFor(t, "127.0.0.1") }

// newRigFor serves on 127.0.0.1 with a member certificate for certIP.
func newRigFor(t *testing.T, certIP string) *rig {
	t.Helper()
	ca, err := clusterpki.NewCA("lab", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := clusterpki.NewToken(ca)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(clusterpki.IssueRequest{Name: "hv1", IPs: []netip.Addr{netip.MustParseAddr(certIP)}, Usage: clusterpki.Peer})
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{ca: ca, token: tok}
	r.admitFn = func(req Request, addr netip.Addr) (Admission, error) {
		return Admission{InitialCluster: map[string]string{"hv1": "https://127.0.0.1:2380", req.Name: "https://" + addr.String() + ":2380"}}, nil
	}
	r.srv, err = NewServer(ServerConfig{
		Cluster: "lab", Member: "hv1", CACert: ca.CertPEM(), CAKey: caKey, CertPEM: cert, KeyPEM: key, Token: tok,
		Admit: AdmitFunc(func(_ context.Context, req Request, addr netip.Addr) (Admission, error) {
			r.admits.Add(1)
			return r.admitFn(req, addr)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := r.srv.Handler()
	r.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == noncePath {
			r.nonces.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	r.ts.TLS = r.srv.TLSConfig()
	r.ts.StartTLS()
	t.Cleanup(r.ts.Close)
	return r
}

func joinRequest(t *testing.T, name, addr string) (Request, []byte) {
	t.Helper()
	csr, key, err := clusterpki.NewCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	return Request{Name: name, Address: addr, CSR: string(csr)}, key
}

func TestJoinAdmitted(t *testing.T) {
	AllowLoopback = true
	t.Cleanup(func() { AllowLoopback = false })
	r := newRig(t)
	req, key := joinRequest(t, "hv2", "127.0.0.2")
	ans, err := Join(t.Context(), r.ts.URL, r.token, req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"hv1": "https://127.0.0.1:2380", "hv2": "https://127.0.0.2:2380"}, ans.InitialCluster); diff != "" {
		t.Errorf("initial cluster (-want +got):\n%s", diff)
	}
	if ans.Cluster != "lab" || ans.AdmittedBy != "hv1" {
		t.Errorf("cluster %q admitted by %q, want lab by hv1", ans.Cluster, ans.AdmittedBy)
	}
	// The CA and its key travel together and load as the cluster's CA.
	ca, err := clusterpki.LoadCA([]byte(ans.CA), []byte(ans.CAKey))
	if err != nil {
		t.Fatal(err)
	}
	if ca.Hash() != r.ca.Hash() {
		t.Error("the answer's CA is not the cluster's")
	}
	// The certificate is for the joiner's key, its name and its addresses,
	// and works as a store member's (server and client).
	if _, err := tls.X509KeyPair([]byte(ans.Cert), key); err != nil {
		t.Fatalf("certificate does not match the CSR's key: %v", err)
	}
	b, _ := pem.Decode([]byte(ans.Cert))
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "hv2" {
		t.Errorf("CommonName %q, want hv2", cert.Subject.CommonName)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"127.0.0.2", "127.0.0.1"}, ips); diff != "" {
		t.Errorf("certificate IPs (-want +got):\n%s", diff)
	}
	if _, err := clusterpki.ServerTLS([]byte(ans.CA), []byte(ans.Cert), key); err != nil {
		t.Errorf("not a server certificate: %v", err)
	}
	if _, err := clusterpki.ClientTLS([]byte(ans.CA), []byte(ans.Cert), key); err != nil {
		t.Errorf("not a client certificate: %v", err)
	}
}

// A token that pins another CA stops the join in the handshake: not even a
// nonce is asked for.
func TestJoinWrongCANothingSent(t *testing.T) {
	r := newRig(t)
	other, err := clusterpki.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok := r.token
	tok.CAHash = other.Hash()
	req, _ := joinRequest(t, "hv2", "192.168.1.102")
	_, err = Join(t.Context(), r.ts.URL, tok, req)
	if !errors.Is(err, clusterpki.ErrCAMismatch) {
		t.Fatalf("error %v, want ErrCAMismatch", err)
	}
	if !strings.Contains(err.Error(), "nothing was sent") {
		t.Errorf("error %q does not say that nothing was sent", err)
	}
	if n := r.nonces.Load(); n != 0 {
		t.Errorf("%d nonce requests reached the server, want 0", n)
	}
}

// The CA pinned but the server's certificate for another address: a member
// certificate stolen from another host must not pass.
func TestJoinServerCertForOtherAddress(t *testing.T) {
	r := newRigFor(t, "192.168.1.101")
	req, _ := joinRequest(t, "hv2", "192.168.1.102")
	_, err := Join(t.Context(), r.ts.URL, r.token, req)
	if err == nil || !strings.Contains(err.Error(), "not the cluster CA's for 127.0.0.1") {
		t.Fatalf("error %v, want the certificate refused for 127.0.0.1", err)
	}
	if n := r.nonces.Load(); n != 0 {
		t.Errorf("%d nonce requests reached the server, want 0", n)
	}
}

func TestJoinWrongSecret(t *testing.T) {
	r := newRig(t)
	tok := r.token
	tok.Secret = strings.Repeat("x", 40)
	req, _ := joinRequest(t, "hv2", "192.168.1.102")
	_, err := Join(t.Context(), r.ts.URL, tok, req)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "gallium-net cluster token") {
		t.Fatalf("error %v, want refused with the fix", err)
	}
	if n := r.admits.Load(); n != 0 {
		t.Errorf("Admit called %d times, want 0", n)
	}
}

// A recorded request played again is refused: its nonce is used up.
func TestJoinReplayRefused(t *testing.T) {
	r := newRig(t)
	hc := r.ts.Client()
	resp, err := hc.Get(r.ts.URL + noncePath)
	if err != nil {
		t.Fatal(err)
	}
	var n struct{ Nonce string }
	json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	req, _ := joinRequest(t, "hv2", "192.168.1.102")
	req.Nonce = n.Nonce
	body, _ := json.Marshal(req)
	post := func() int {
		hr, _ := http.NewRequest(http.MethodPost, r.ts.URL+joinPath, bytes.NewReader(body))
		hr.Header.Set(MACHeader, hex.EncodeToString(r.token.MAC(body)))
		resp, err := hc.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != http.StatusOK {
		t.Fatalf("first request: HTTP %d, want 200", got)
	}
	if got := post(); got != http.StatusForbidden {
		t.Errorf("replayed request: HTTP %d, want 403", got)
	}
	if n := r.admits.Load(); n != 1 {
		t.Errorf("Admit called %d times, want 1", n)
	}
}

func TestJoinNonceExpires(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	r.srv.now = func() time.Time { return now }
	resp, err := r.ts.Client().Get(r.ts.URL + noncePath)
	if err != nil {
		t.Fatal(err)
	}
	var n struct{ Nonce string }
	json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	now = now.Add(NonceTTL + time.Second)
	if r.srv.takeNonce(n.Nonce) {
		t.Error("a nonce older than NonceTTL was accepted")
	}
}

// The Admitter's refusal reaches the joiner word for word, and no
// certificate is handed out.
func TestJoinAdmitterRefuses(t *testing.T) {
	r := newRig(t)
	r.admitFn = func(req Request, _ netip.Addr) (Admission, error) {
		return Admission{}, errors.New("store member hv2: name taken: remove the dead member first")
	}
	req, _ := joinRequest(t, "hv2", "192.168.1.102")
	ans, err := Join(t.Context(), r.ts.URL, r.token, req)
	if ans != nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "remove the dead member first") {
		t.Fatalf("answer %v, error %v: want the Admitter's refusal", ans, err)
	}
}

func TestJoinRequestChecked(t *testing.T) {
	for _, tc := range []struct {
		name, addr, csr, want string
	}{
		{"hv_2", "192.168.1.102", "x", "hypervisor"},
		{"hv2", "192.168.1", "x", "management IP"},
		{"hv2", "127.0.0.1", "x", "not an address other hypervisors can reach"},
		{"hv2", "0.0.0.0", "x", "not an address other hypervisors can reach"},
		{"hv2", "192.168.1.102", "", "no CSR"},
	} {
		_, err := Request{Name: tc.name, Address: tc.addr, CSR: tc.csr}.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: error %v, want %q", tc.name, tc.addr, err, tc.want)
		}
	}
	// A bad CSR is refused before the store is touched.
	r := newRig(t)
	_, err := Join(t.Context(), r.ts.URL, r.token, Request{Name: "hv2", Address: "192.168.1.102", CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("error %v, want refused", err)
	}
	if n := r.admits.Load(); n != 0 {
		t.Errorf("Admit called %d times, want 0", n)
	}
}

func TestServerURL(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.101":             "https://192.168.1.101:2381",
		"192.168.1.101:9000":        "https://192.168.1.101:9000",
		"https://192.168.1.101":     "https://192.168.1.101:2381",
		"https://[fd00::1]:2381/":   "https://[fd00::1]:2381",
		"fd00::1":                   "",
		"http://192.168.1.101:2381": "",
	} {
		got, _, err := serverURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("%s: %s, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", in, got, err, want)
		}
	}
}

func TestNewServerRefusesForeignToken(t *testing.T) {
	r := newRig(t)
	other, _ := clusterpki.NewCA("other", time.Now())
	tok, _ := clusterpki.NewToken(other)
	caKey, _ := r.ca.KeyPEM()
	_, err := NewServer(ServerConfig{CACert: r.ca.CertPEM(), CAKey: caKey, Token: tok, Admit: AdmitFunc(nil)})
	if err == nil || !strings.Contains(err.Error(), "different clusters") {
		t.Fatalf("error %v, want the token refused", err)
	}
}
