package clusterpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	der, err := decodePEM(certPEM, "CERTIFICATE")
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify checks certPEM against ca's pool for usage, at t0, and returns it.
func verify(t *testing.T, ca *CA, certPEM []byte, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	c := parseCert(t, certPEM)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("%s does not verify for %v: %v", c.Subject.CommonName, usage, err)
	}
	return c
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func netIPs(s ...string) []net.IP {
	var out []net.IP
	for _, a := range s {
		out = append(out, net.ParseIP(a))
	}
	return out
}

// ipCmp compares net.IPs by address, whatever their length (4 or 16 bytes).
var ipCmp = cmp.Comparer(func(a, b net.IP) bool { return a.Equal(b) })

func TestIssue(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	for _, tc := range []struct {
		name     string
		req      IssueRequest
		ext      []x509.ExtKeyUsage
		refused  []x509.ExtKeyUsage
		ips      []net.IP
		dns      []string
		notAfter time.Time
	}{
		{
			name:     "store member",
			req:      IssueRequest{Name: "hv1", IPs: ips("192.0.2.11", "127.0.0.1"), DNSNames: []string{"hv1", "hv1.lab.example"}, Usage: Peer, Now: t0},
			ext:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			ips:      netIPs("192.0.2.11", "127.0.0.1"),
			dns:      []string{"hv1", "hv1.lab.example"},
			notAfter: t0.Add(DefaultValidity),
		},
		{
			name:     "server only, IPv6 with a zone and v4-mapped",
			req:      IssueRequest{Name: "hv2", IPs: ips("2001:db8::2", "fe80::1%eth0", "::ffff:192.0.2.12"), Usage: Server, Now: t0, Validity: 24 * time.Hour},
			ext:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			refused:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			ips:      netIPs("2001:db8::2", "fe80::1", "192.0.2.12"),
			notAfter: t0.Add(24 * time.Hour),
		},
		{
			name:     "client",
			req:      IssueRequest{Name: "gallium-net-cli", Usage: Client, Now: t0},
			ext:      []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			refused:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			notAfter: t0.Add(DefaultValidity),
		},
		{
			name:     "cut to the CA's expiry",
			req:      IssueRequest{Name: "hv3", Usage: Peer, Now: t0, Validity: 20 * 365 * 24 * time.Hour},
			ext:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			notAfter: t0.AddDate(CAYears, 0, 0),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			c := parseCert(t, certPEM)
			for _, u := range tc.ext {
				verify(t, ca, certPEM, u)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Certificate())
			for _, u := range tc.refused {
				if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
					t.Errorf("verifies for %v, which it was not issued for", u)
				}
			}
			if c.Subject.CommonName != tc.req.Name {
				t.Errorf("CommonName %q, want %q", c.Subject.CommonName, tc.req.Name)
			}
			if diff := cmp.Diff(tc.ext, c.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ips, c.IPAddresses, ipCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("IP SANs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.dns, c.DNSNames, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DNS SANs (-want +got):\n%s", diff)
			}
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("IsCA %v, KeyUsage %v: want a leaf for signatures only", c.IsCA, c.KeyUsage)
			}
			if !c.NotBefore.Equal(t0.Add(-clockSkew)) || !c.NotAfter.Equal(tc.notAfter) {
				t.Errorf("valid %v to %v, want %v to %v", c.NotBefore, c.NotAfter, t0.Add(-clockSkew), tc.notAfter)
			}
			key, err := parsePrivateKey(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(keyPEM), "-----BEGIN PRIVATE KEY-----") || !publicKeysEqual(key.Public(), c.PublicKey) {
				t.Error("the key is not the certificate's, or not PKCS#8")
			}
		})
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	for _, tc := range []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"no name", IssueRequest{Usage: Peer}, "certificate: the name (CommonName) is empty"},
		{"control character in the name", IssueRequest{Name: "hv\n1", Usage: Peer}, `certificate for "hv\n1": the name has a control character`},
		{"no usage", IssueRequest{Name: "hv1"}, "certificate for hv1: usage is none, want Server, Client or Peer"},
		{"unknown usage", IssueRequest{Name: "hv1", Usage: Server | 8}, "certificate for hv1: usage is server+unknown(0x8)"},
		{"negative validity", IssueRequest{Name: "hv1", Usage: Peer, Validity: -time.Hour}, "certificate for hv1: validity -1h0m0s is negative"},
		{"zero IP", IssueRequest{Name: "hv1", Usage: Peer, IPs: []netip.Addr{{}}}, "certificate for hv1: an IP address is the zero netip.Addr"},
		{"empty DNS name", IssueRequest{Name: "hv1", Usage: Peer, DNSNames: []string{""}}, `certificate for hv1: DNS name "" is empty`},
		{"DNS name with a space", IssueRequest{Name: "hv1", Usage: Peer, DNSNames: []string{"hv 1"}}, `DNS name "hv 1" is empty or has a space`},
		{"CA expired", IssueRequest{Name: "hv1", Usage: Peer, Now: t0.AddDate(CAYears, 0, 0)}, `certificate for hv1: the cluster CA "gallium-net prod CA" expired on 2036-03-14`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ca.Issue(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue: err %v, want %q", err, tc.want)
			}
			csr, _, err := NewCSR("x")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.SignCSR(csr, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SignCSR: err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewCSR(t *testing.T) {
	csrPEM, keyPEM, err := NewCSR("hv2")
	if err != nil {
		t.Fatal(err)
	}
	der, err := decodePEM(csrPEM, "CERTIFICATE REQUEST")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Error(err)
	}
	if csr.Subject.CommonName != "hv2" {
		t.Errorf("CommonName %q", csr.Subject.CommonName)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(key.Public(), csr.PublicKey) {
		t.Error("the key is not the CSR's")
	}
	if _, _, err := NewCSR(""); err == nil || err.Error() != "CSR: the name is empty" {
		t.Errorf("NewCSR(\"\"): err %v", err)
	}
}

// greedyCSR asks for everything a joiner must not get: another name,
// addresses, and CA powers.
func greedyCSR(t *testing.T) (csrPEM []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "hv1", Organization: []string{"system:masters"}},
		DNSNames:       []string{"hv1", "*.lab.example"},
		IPAddresses:    netIPs("192.0.2.11", "127.0.0.1"),
		EmailAddresses: []string{"root@lab.example"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "lab", Path: "/hv1"}},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
		},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func TestSignCSRTakesNamesFromTheRequestOnly(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	csrPEM, key := greedyCSR(t)
	certPEM, err := ca.SignCSR(csrPEM, IssueRequest{Name: "hv2", IPs: ips("192.0.2.12"), DNSNames: []string{"hv2"}, Usage: Peer, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, ca, certPEM, x509.ExtKeyUsageClientAuth)
	verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
	got := struct {
		Subject pkix.Name
		IPs     []net.IP
		DNS     []string
		Emails  []string
		URIs    []*url.URL
		IsCA    bool
	}{c.Subject, c.IPAddresses, c.DNSNames, c.EmailAddresses, c.URIs, c.IsCA}
	want := got
	want.Subject = pkix.Name{CommonName: "hv2"}
	want.IPs, want.DNS, want.Emails, want.URIs, want.IsCA = netIPs("192.0.2.12"), []string{"hv2"}, nil, nil, false
	if diff := cmp.Diff(want, got, ipCmp, cmpopts.IgnoreFields(pkix.Name{}, "Names"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("certificate (-want +got):\n%s", diff)
	}
	if !publicKeysEqual(key.Public(), c.PublicKey) {
		t.Error("the certificate is not for the CSR's key")
	}
}

func TestSignCSRRefuses(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	good, _, err := NewCSR("hv2")
	if err != nil {
		t.Fatal(err)
	}
	// Flipping the signature's last byte keeps the CSR parseable but makes
	// its signature wrong.
	block, _ := pem.Decode(good)
	bad := append([]byte(nil), block.Bytes...)
	bad[len(bad)-1] ^= 0x01
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad})

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "hv2"}}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	weak := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: weakDER})

	for _, tc := range []struct {
		name string
		csr  []byte
		want string
	}{
		{"bad signature", badSig, "CSR for hv2: its signature does not verify"},
		{"weak key", weak, "CSR for hv2: a 1024-bit RSA key is too weak, want 2048 bits or more"},
		{"not PEM", []byte("hello"), `CSR for hv2: no PEM data (want a "CERTIFICATE REQUEST" block)`},
		{"a certificate", ca.CertPEM(), `CSR for hv2: PEM block is "CERTIFICATE", want "CERTIFICATE REQUEST"`},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0}}), "CSR for hv2: asn1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.SignCSR(tc.csr, IssueRequest{Name: "hv2", Usage: Peer, Now: t0})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ca.SignCSR(good, IssueRequest{Name: "hv2", Usage: Peer, Now: t0}); err != nil {
		t.Fatalf("the unflipped CSR: %v", err)
	}
}

func TestUsageString(t *testing.T) {
	for u, want := range map[Usage]string{0: "none", Server: "server", Client: "client", Peer: "server+client", 0x10: "unknown(0x10)"} {
		if got := u.String(); got != want {
			t.Errorf("Usage(%d) = %q, want %q", u, got, want)
		}
	}
}
