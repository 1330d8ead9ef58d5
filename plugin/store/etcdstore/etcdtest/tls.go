package etcdtest

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

// TLSFiles are PEM files of a throwaway cluster CA, a server certificate for
// 127.0.0.1 and a client certificate, all signed by that CA: the same
// clusterpki certificates a real cluster's store member and clients use.
type TLSFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// NewTLSFiles writes a fresh CA, server and client certificate to dir.
func NewTLSFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	ca, err := clusterpki.NewCA("etcdtest", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{CA: filepath.Join(dir, "ca.pem")}
	write(t, f.CA, ca.CertPEM())
	leaf := func(name string, usage clusterpki.Usage) (string, string) {
		cert, key, err := ca.Issue(clusterpki.IssueRequest{
			Name:     name,
			IPs:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Usage:    usage,
			Validity: 24 * time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		write(t, certPath, cert)
		write(t, keyPath, key)
		return certPath, keyPath
	}
	f.ServerCert, f.ServerKey = leaf("server", clusterpki.Server)
	f.ClientCert, f.ClientKey = leaf("client", clusterpki.Client)
	return f
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
