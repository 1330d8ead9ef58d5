// Package etcdtest runs real etcd members inside the test process
// (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1 with free ports and
// temporary data directories, so the etcd backend is tested against the
// real engine without any installed server.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a set of embedded etcd members.
type Cluster struct {
	Members []*embed.Etcd
	// Endpoints are the client URLs, one per member, in member order.
	Endpoints []string
	stopped   []bool
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are
// released before etcd binds them; the window is tiny on a test machine.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// Start starts an n-member cluster and waits until every member is ready.
// The cluster stops at the end of the test.
func Start(t testing.TB, n int) *Cluster { t.Helper(); return start(t, n, nil) }

// StartTLS starts a 1-member cluster that serves clients over TLS and
// requires a client certificate signed by files.CA.
func StartTLS(t testing.TB, files TLSFiles) *Cluster {
	t.Helper()
	return start(t, 1, &files)
}

// start retries with fresh ports when another process took one of the
// free ports between freePorts and etcd's bind.
func start(t testing.TB, n int, tlsFiles *TLSFiles) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryStart(t, n, tlsFiles)
		if err == nil {
			t.Cleanup(c.Stop)
			return c
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying with other ports: %v", err)
	}
}

func tryStart(t testing.TB, n int, tlsFiles *TLSFiles) (*Cluster, error) {
	t.Helper()
	ports := freePorts(t, 2*n)
	var initial []string
	for i := 0; i < n; i++ {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{stopped: make([]bool, n)}
	cfgs := make([]*embed.Config, n)
	for i := 0; i < n; i++ {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		scheme := "http"
		if tlsFiles != nil {
			scheme = "https"
			cfg.ClientTLSInfo = transport.TLSInfo{
				CertFile: tlsFiles.ServerCert, KeyFile: tlsFiles.ServerKey,
				TrustedCAFile: tlsFiles.CA, ClientCertAuth: true,
			}
		}
		curl := mustURL(fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]))
		purl := mustURL(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = fmt.Sprintf("gallium-test-%d", ports[0])
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.LogLevel = "error"
		// Even at "error", members log their own orderly shutdown as an
		// error (http: Server closed); tests judge etcd by its answers.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Short ticks make leader elections after a kill quick; a shared
		// 2-core machine still keeps up with 50/500 ms.
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfgs[i] = cfg
		c.Endpoints = append(c.Endpoints, curl.String())
	}
	// Members of a new cluster wait for each other, so start them all
	// before waiting for any.
	for i, cfg := range cfgs {
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("start etcd member %d: %w", i, err)
		}
		c.Members = append(c.Members, e)
	}
	for i, e := range c.Members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Stop()
			return nil, fmt.Errorf("etcd member %d: %w", i, err)
		case <-time.After(60 * time.Second):
			c.Stop()
			return nil, fmt.Errorf("etcd member %d not ready within 60 s", i)
		}
	}
	return c, nil
}

// Leader returns the index of the current leader, waiting up to 10 s for
// one; -1 when there is none.
func (c *Cluster) Leader() int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, e := range c.Members {
			if c.stopped[i] {
				continue
			}
			if lead := e.Server.Leader(); lead != 0 && lead == e.Server.MemberID() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}

// Kill stops member i abruptly (no leadership transfer), like a crashed
// host: HardStop, then Close to free its ports.
func (c *Cluster) Kill(i int) {
	if c.stopped[i] {
		return
	}
	c.stopped[i] = true
	c.Members[i].Server.HardStop()
	c.Members[i].Close()
}

// Stop stops every member still running.
func (c *Cluster) Stop() {
	for i := range c.Members {
		if !c.stopped[i] {
			c.stopped[i] = true
			c.Members[i].Close()
		}
	}
}
