package clusterpki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

type issued struct{ cert, key []byte }

func issue(t *testing.T, ca *CA, req IssueRequest) issued {
	t.Helper()
	c, k, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return issued{c, k}
}

// handshake runs a TLS handshake over loopback (127.0.0.1 only) and one
// message from server to client, so that a client refused only after its
// side of a TLS 1.3 handshake finished still sees the refusal. A socket
// rather than net.Pipe: a refusal in TLS 1.2 has both sides writing at once,
// which an unbuffered pipe turns into a wait for the deadline.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(20 * time.Second)
	done := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		sc.SetDeadline(deadline)
		s := tls.Server(sc, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte("ok"))
		}
		s.Close()
		done <- err
	}()
	cc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc.SetDeadline(deadline)
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			clientErr = err
		} else if string(buf) != "ok" {
			clientErr = errors.New("read " + string(buf))
		}
	}
	c.Close()
	return <-done, clientErr
}

func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	other := newTestCA(t, "prod", now) // another cluster of the same name
	member := issue(t, ca, IssueRequest{Name: "hv1", IPs: ips("127.0.0.1"), DNSNames: []string{"hv1"}, Usage: Peer})
	peer := issue(t, ca, IssueRequest{Name: "hv2", IPs: ips("127.0.0.1"), Usage: Peer})
	cli := issue(t, ca, IssueRequest{Name: "gallium-net-cli", Usage: Client})
	serverOnly := issue(t, ca, IssueRequest{Name: "hv3", IPs: ips("127.0.0.1"), Usage: Server})
	stranger := issue(t, other, IssueRequest{Name: "hv1", IPs: ips("127.0.0.1"), Usage: Peer})

	server, err := ServerTLS(ca.CertPEM(), member.cert, member.key)
	if err != nil {
		t.Fatal(err)
	}
	client := func(t *testing.T, c issued) *tls.Config {
		t.Helper()
		cfg, err := ClientTLS(ca.CertPEM(), c.cert, c.key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "127.0.0.1"
		return cfg
	}
	// A client that trusts the cluster CA but presents something else:
	// ClientTLS refuses to build these, so they are made by hand.
	presenting := func(t *testing.T, c *issued) *tls.Config {
		cfg := client(t, cli)
		cfg.Certificates = nil
		if c != nil {
			pair, err := tls.X509KeyPair(c.cert, c.key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return cfg
	}

	for _, tc := range []struct {
		name string
		// client builds the client's configuration.
		client func(t *testing.T) *tls.Config
		// maxVersion pins the protocol, so both TLS 1.2 and 1.3 are seen.
		maxVersion uint16
		// serverWant and clientWant are in the refusing side's error;
		// both empty: the connection works.
		serverWant, clientWant string
	}{
		{name: "a client with a cluster certificate", client: func(t *testing.T) *tls.Config { return client(t, cli) }},
		{name: "a client with a cluster certificate, TLS 1.2", client: func(t *testing.T) *tls.Config { return client(t, cli) }, maxVersion: tls.VersionTLS12},
		{name: "another member (peer certificate)", client: func(t *testing.T) *tls.Config { return client(t, peer) }},
		{
			name:       "a client without a certificate",
			client:     func(t *testing.T) *tls.Config { return presenting(t, nil) },
			serverWant: "client didn't provide a certificate",
		},
		{
			name:       "a client without a certificate, TLS 1.2",
			client:     func(t *testing.T) *tls.Config { return presenting(t, nil) },
			maxVersion: tls.VersionTLS12,
			serverWant: "client didn't provide a certificate",
		},
		{
			name:       "a client with another cluster's certificate",
			client:     func(t *testing.T) *tls.Config { return presenting(t, &stranger) },
			serverWant: "certificate signed by unknown authority",
		},
		{
			name:       "a client with another cluster's certificate, TLS 1.2",
			client:     func(t *testing.T) *tls.Config { return presenting(t, &stranger) },
			maxVersion: tls.VersionTLS12,
			serverWant: "certificate signed by unknown authority",
		},
		{
			name:       "a client with a server-only certificate",
			client:     func(t *testing.T) *tls.Config { return presenting(t, &serverOnly) },
			serverWant: "incompatible key usage",
		},
		{
			name: "a client of another cluster (it does not trust this server)",
			client: func(t *testing.T) *tls.Config {
				cfg, err := ClientTLS(other.CertPEM(), stranger.cert, stranger.key)
				if err != nil {
					t.Fatal(err)
				}
				cfg.ServerName = "127.0.0.1"
				return cfg
			},
			clientWant: "certificate signed by unknown authority",
		},
		{
			name: "a client that expects another server",
			client: func(t *testing.T) *tls.Config {
				cfg := client(t, cli)
				cfg.ServerName = "hv9"
				return cfg
			},
			clientWant: "certificate is valid for hv1, not hv9",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.client(t)
			cfg.MaxVersion = tc.maxVersion
			serverErr, clientErr := handshake(t, server, cfg)
			switch {
			case tc.serverWant == "" && tc.clientWant == "":
				if serverErr != nil || clientErr != nil {
					t.Fatalf("refused: server %v, client %v", serverErr, clientErr)
				}
			case tc.serverWant != "":
				if serverErr == nil || !strings.Contains(serverErr.Error(), tc.serverWant) {
					t.Errorf("server: err %v, want %q", serverErr, tc.serverWant)
				}
				if clientErr == nil {
					t.Error("the client was not told it is refused")
				}
			default:
				if clientErr == nil || !strings.Contains(clientErr.Error(), tc.clientWant) {
					t.Errorf("client: err %v, want %q", clientErr, tc.clientWant)
				}
				if serverErr == nil {
					t.Error("the server saw no failure")
				}
			}
		})
	}
}

func TestTLSConfigFields(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	m := issue(t, ca, IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	s, err := ServerTLS(ca.CertPEM(), m.cert, m.key)
	if err != nil {
		t.Fatal(err)
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || s.MinVersion != tls.VersionTLS12 || len(s.Certificates) != 1 || s.InsecureSkipVerify {
		t.Errorf("server config: ClientAuth %v, ClientCAs %v, MinVersion %#x, %d certificates", s.ClientAuth, s.ClientCAs != nil, s.MinVersion, len(s.Certificates))
	}
	c, err := ClientTLS(ca.CertPEM(), m.cert, m.key)
	if err != nil {
		t.Fatal(err)
	}
	if c.RootCAs == nil || c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 || c.InsecureSkipVerify {
		t.Errorf("client config: RootCAs %v, MinVersion %#x, %d certificates", c.RootCAs != nil, c.MinVersion, len(c.Certificates))
	}
}

func TestTLSConfigRefuses(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	other := newTestCA(t, "other", t0)
	peer := issue(t, ca, IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	srv := issue(t, ca, IssueRequest{Name: "hv2", Usage: Server, Now: t0})
	cli := issue(t, ca, IssueRequest{Name: "cli", Usage: Client, Now: t0})
	stranger := issue(t, other, IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	for _, tc := range []struct {
		name          string
		server        bool
		ca, cert, key []byte
		want          string
	}{
		{"server: another cluster's certificate", true, ca.CertPEM(), stranger.cert, stranger.key, `certificate for hv1: not issued by the cluster CA "gallium-net prod CA"`},
		{"client: another cluster's certificate", false, ca.CertPEM(), stranger.cert, stranger.key, `certificate for hv1: not issued by the cluster CA`},
		{"server: a client certificate", true, ca.CertPEM(), cli.cert, cli.key, "certificate for cli: not valid for a TLS server (issue it with Usage Server or Peer)"},
		{"client: a server certificate", false, ca.CertPEM(), srv.cert, srv.key, "certificate for hv2: not valid for a TLS client (issue it with Usage Client or Peer)"},
		{"a key that is not the certificate's", true, ca.CertPEM(), peer.cert, srv.key, "certificate and key: tls: private key does not match public key"},
		{"no CA", true, nil, peer.cert, peer.key, "CA certificate: no PEM CERTIFICATE block"},
		{"a member certificate as the CA", false, peer.cert, peer.cert, peer.key, `CA certificate "hv1": not a CA certificate`},
		{"a key in the CA bundle", true, append(ca.CertPEM(), peer.key...), peer.cert, peer.key, `CA certificate: PEM block is "PRIVATE KEY", want "CERTIFICATE"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := ClientTLS
			if tc.server {
				f = ServerTLS
			}
			_, err := f(tc.ca, tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCABundle: during a CA rotation a member trusts the old and the new
// CA, and a certificate of either works.
func TestCABundle(t *testing.T) {
	oldCA := newTestCA(t, "prod", t0)
	newCA := newTestCA(t, "prod", t0)
	bundle := append(oldCA.CertPEM(), newCA.CertPEM()...)
	for _, ca := range []*CA{oldCA, newCA} {
		m := issue(t, ca, IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
		if _, err := ServerTLS(bundle, m.cert, m.key); err != nil {
			t.Error(err)
		}
		if _, err := ClientTLS(bundle, m.cert, m.key); err != nil {
			t.Error(err)
		}
	}
}
