package etcdstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

var prefixes atomic.Int64

// factory returns n clients of a fresh key prefix on cluster c; client i
// lists member i's endpoint first, so the clients spread over the members.
func factory(c *etcdtest.Cluster) storetest.Factory {
	return func(t testing.TB, n int) []store.Backend {
		prefix := fmt.Sprintf("/gallium-test/%d/", prefixes.Add(1))
		out := make([]store.Backend, n)
		for i := range out {
			eps := append([]string(nil), c.Endpoints[i%len(c.Endpoints):]...)
			eps = append(eps, c.Endpoints[:i%len(c.Endpoints)]...)
			b, err := Open(Config{Endpoints: eps, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			out[i] = b
		}
		return out
	}
}

func TestConformanceSingle(t *testing.T) {
	storetest.Run(t, factory(etcdtest.Start(t, 1)))
}

func TestConformanceCluster(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := factory(c)
	storetest.Run(t, f)
	t.Run("ConcurrentMACs3x1000", func(t *testing.T) {
		storetest.ConcurrentMACs(t, f(t, 3), 1000, nil)
	})
}

// TestLeaderKill kills the etcd leader while 3 clients allocate MACs: every
// acknowledged allocation must survive, with no duplicates.
func TestLeaderKill(t *testing.T) {
	c := etcdtest.Start(t, 3)
	per := 1000
	if testing.Short() {
		per = 200
	}
	var killed atomic.Int64
	killed.Store(-1)
	storetest.ConcurrentMACs(t, factory(c)(t, 3), per, func() {
		lead := c.Leader()
		if lead < 0 {
			t.Error("no etcd leader to kill")
			return
		}
		start := time.Now()
		c.Kill(lead)
		killed.Store(int64(lead))
		t.Logf("killed leader m%d mid-way (stop took %v); new leader: m%d", lead, time.Since(start).Round(time.Millisecond), c.Leader())
	})
	if killed.Load() < 0 {
		t.Fatal("the leader was never killed")
	}
}

func TestUnreachable(t *testing.T) {
	// Nothing listens on port 1: requests fail as "unavailable", which the
	// store treats as retryable, and the message names the endpoint.
	b, err := Open(Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond, OpTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Get(t.Context(), "x")
	if err == nil {
		t.Fatal("Get against a dead endpoint succeeded")
	}
	if !errorsIs(err, store.ErrUnavailable) {
		t.Errorf("err = %v, want it to wrap ErrUnavailable", err)
	}
	if _, err := Open(Config{}); err == nil {
		t.Error("Open without endpoints succeeded")
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// TestSnapshotOutlivesEtcd: once synced, the host snapshot serves the hook
// with etcd down, and a sync that fails on the dead store leaves it intact.
func TestSnapshotOutlivesEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	b, err := Open(Config{Endpoints: c.Endpoints, DialTimeout: time.Second, OpTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := store.New(b)
	ctx := t.Context()
	if _, err := s.PushSpec(ctx, store.PushRequest{YAML: []byte(storetest.SpecYAML("lab", "52:54:00"))}); err != nil {
		t.Fatal(err)
	}
	nic, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: "u1", Key: "net0", Network: "prod", Hypervisor: "hv1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "host-snapshot.json")
	if _, err := s.SyncSnapshot(ctx, "hv1", path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	c.Stop()
	s.SetReadRetry(time.Second) // it reads again for a second, then gives up
	if _, err := s.SyncSnapshot(ctx, "hv1", path); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("sync with etcd stopped: err = %v, want ErrUnavailable", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Errorf("a failed sync changed the snapshot")
	}
	snap, err := snapshot.Read(path)
	if err != nil || len(snap.NICs) != 1 || snap.NICs[0].MAC != nic.MAC || snap.Networks["prod"].VLAN != 100 {
		t.Fatalf("snapshot with etcd down: %+v, %v", snap, err)
	}
}

// TestTLS: with the CA and a client certificate from the config the
// backend works; without a client certificate, or trusting another CA, it
// does not.
func TestTLS(t *testing.T) {
	files := etcdtest.NewTLSFiles(t, t.TempDir())
	other := etcdtest.NewTLSFiles(t, t.TempDir())
	c := etcdtest.StartTLS(t, files)
	// Each wrong setting fails at once (not after the store's retries),
	// with an error that names it.
	cases := []struct {
		name string
		cfg  Config
		want string // "" when the write must work
	}{
		{"client certificate", Config{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}, ""},
		{"no client certificate", Config{CAFile: files.CA}, "it refuses this client's certificate"},
		{"another CA", Config{CAFile: other.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}, "not signed by the CA this client trusts"},
		{"plain http", Config{}, "use https://"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Endpoints = c.Endpoints
			if tc.name == "plain http" {
				cfg.Endpoints = []string{strings.Replace(c.Endpoints[0], "https://", "http://", 1)}
			}
			cfg.DialTimeout, cfg.OpTimeout = time.Second, time.Second
			b, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			_, err = b.Txn(t.Context(), nil, []store.Op{{Key: "tls/x", Value: []byte("1")}})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("write over TLS: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("write over TLS worked, want an error naming %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("error = %v\nwant it to say %q", err, tc.want)
			case errors.Is(err, store.ErrUnavailable):
				t.Errorf("a configuration error is marked retryable: %v", err)
			}
		})
	}
	if _, err := Open(Config{Endpoints: c.Endpoints, CAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Error("Open with a missing CA file succeeded")
	}
}

// A key put under the lease lives while its writer renews it and goes away
// by itself once the writer is gone: a dead hypervisor's published state
// does not linger.
func TestPutLeasedExpires(t *testing.T) {
	c := etcdtest.Start(t, 1)
	writer, err := Open(Config{Endpoints: c.Endpoints, Prefix: "/lease-test/"})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := Open(Config{Endpoints: c.Endpoints, Prefix: "/lease-test/"})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx := t.Context()
	for i := range 3 {
		if err := writer.PutLeased(ctx, "hosts/hv1", []byte{byte('a' + i)}, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Renewed: still there after more than one TTL.
	time.Sleep(3 * time.Second)
	kv, err := reader.Get(ctx, "hosts/hv1")
	if err != nil || string(kv.Value) != "c" {
		t.Fatalf("while renewed: %q, %v", kv.Value, err)
	}
	writer.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := reader.Get(ctx, "hosts/hv1")
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key outlived its writer by 10 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
