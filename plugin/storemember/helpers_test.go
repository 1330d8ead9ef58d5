package storemember

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

// testPKI is a cluster CA with its certificate written to dir.
type testPKI struct {
	t      *testing.T
	dir    string
	ca     *clusterpki.CA
	caFile string
}

func newPKI(t *testing.T, cluster string) *testPKI {
	t.Helper()
	ca, err := clusterpki.NewCA(cluster, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{t: t, dir: dir, ca: ca, caFile: filepath.Join(dir, "ca.pem")}
	writeFile(t, p.caFile, ca.CertPEM())
	return p
}

var loopback = netip.MustParseAddr("127.0.0.1")

// issue writes a certificate and key for name and returns their paths.
func (p *testPKI) issue(name string, usage clusterpki.Usage, ips ...netip.Addr) (certFile, keyFile string) {
	p.t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(clusterpki.IssueRequest{Name: name, IPs: ips, Usage: usage})
	if err != nil {
		p.t.Fatal(err)
	}
	base := filepath.Join(p.dir, fmt.Sprintf("%s-%s-%d", name, usage, time.Now().UnixNano()))
	certFile, keyFile = base+".pem", base+"-key.pem"
	writeFile(p.t, certFile, certPEM)
	writeFile(p.t, keyFile, keyPEM)
	return certFile, keyFile
}

// clientTLS is a store client's configuration with a client certificate
// of this CA.
func (p *testPKI) clientTLS(name string) *tls.Config {
	p.t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(clusterpki.IssueRequest{Name: name, Usage: clusterpki.Client})
	if err != nil {
		p.t.Fatal(err)
	}
	cfg, err := clusterpki.ClientTLS(p.ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePorts returns n distinct free ports on 127.0.0.1; they are released
// before etcd binds them, a window too small to matter on a test machine.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func localURL(port int) string { return fmt.Sprintf("https://127.0.0.1:%d", port) }

// memberConfig is a member on 127.0.0.1 with a fresh certificate of p,
// short raft ticks (a shared 2-core machine keeps up with 50/500 ms) and
// a start timeout that fails a test long before its deadline.
func memberConfig(t *testing.T, p *testPKI, cluster, name string, ports [2]int) Config {
	t.Helper()
	cert, key := p.issue(name, clusterpki.Peer, loopback)
	return Config{
		ClusterName:       cluster,
		Name:              name,
		DataDir:           t.TempDir(),
		PeerURL:           localURL(ports[0]),
		ClientURL:         localURL(ports[1]),
		CAFile:            p.caFile,
		CertFile:          cert,
		KeyFile:           key,
		InitialCluster:    map[string]string{name: localURL(ports[0])},
		State:             StateNew,
		HeartbeatInterval: 50 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		StartTimeout:      30 * time.Second,
		Logger:            testLogger(t),
	}
}

// testLogger logs to the test's output until the test ends: etcd's
// goroutines may still log while a member stops, and a write to a
// finished test panics.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", b)
	}
	return len(b), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func newClient(t *testing.T, endpoints []string, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         cfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func caPool(t *testing.T, p *testPKI) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Certificate())
	return pool
}
