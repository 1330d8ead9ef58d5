package clusterjoin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

// Join asks the member at server (host, host:port or https URL; the port
// defaults to JoinPort) to admit the hypervisor req names. req.Nonce is
// filled in here. The answer's CA is checked against the token again and
// its certificate against the CSR's key by the caller that writes them.
func Join(ctx context.Context, server string, tok clusterpki.Token, req Request) (*Answer, error) {
	base, host, err := serverURL(server)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{
		Timeout: 2 * time.Minute, // the member waits for etcd to add the learner
		Transport: &http.Transport{
			TLSClientConfig:   pinnedTLS(tok, host),
			Proxy:             nil, // a join goes straight to the member, never through a proxy
			DisableKeepAlives: true,
		},
	}
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := call(ctx, hc, http.MethodGet, base+noncePath, nil, nil, &nonce); err != nil {
		return nil, err
	}
	req.Nonce = nonce.Nonce
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hdr := http.Header{MACHeader: {hex.EncodeToString(tok.MAC(body))}, "Content-Type": {"application/json"}}
	var ans Answer
	if err := call(ctx, hc, http.MethodPost, base+joinPath, body, hdr, &ans); err != nil {
		return nil, err
	}
	if err := tok.VerifyCA([]byte(ans.CA)); err != nil {
		return nil, fmt.Errorf("join via %s: the CA in the answer: %w", base, err)
	}
	return &ans, nil
}

func serverURL(server string) (base, host string, err error) {
	raw := server
	if u, perr := url.Parse(server); perr != nil || u.Scheme == "" || u.Host == "" {
		raw = "https://" + server
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return "", "", fmt.Errorf("join: server %q: want a member's management IP, IP:PORT or https://IP:PORT", server)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(JoinPort))
	}
	return "https://" + u.Host, u.Hostname(), nil
}

// pinnedTLS trusts the server only when the chain it sends holds the CA the
// token pins and its certificate is signed by that CA for host. The check
// runs in the handshake, so a wrong server learns nothing from the joiner
// but that it tried.
func pinnedTLS(tok clusterpki.Token, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The usual check needs a trusted root, which the joiner does
		// not have yet; VerifyConnection does it with the pinned CA.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates[1:] {
				if sha256.Sum256(c.Raw) == tok.CAHash {
					ca = c
				}
			}
			if ca == nil {
				return clusterpki.ErrCAMismatch
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots, DNSName: host,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("the server's certificate is not the cluster CA's for %s: %w", host, err)
			}
			return nil
		},
	}
}

func call(ctx context.Context, hc *http.Client, method, url string, body []byte, hdr http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ce *tls.CertificateVerificationError
		if errors.As(err, &ce) || errors.Is(err, clusterpki.ErrCAMismatch) {
			return fmt.Errorf("join via %s: nothing was sent: %w", url, err)
		}
		return fmt.Errorf("join via %s: %w (is gallium-net-store.service running there, and port %d open?)", url, err, JoinPort)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("join via %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("%w by %s: %s", ErrRefused, url, eb.Error)
		}
		return fmt.Errorf("%w by %s: HTTP %s", ErrRefused, url, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("join via %s: the answer is not JSON: %w", url, err)
	}
	return nil
}
