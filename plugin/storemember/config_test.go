package storemember

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

func TestValidate(t *testing.T) {
	p := newPKI(t, "lab")
	other := newPKI(t, "elsewhere")
	base := memberConfig(t, p, "lab", "hv1", [2]int{2380, 2379})
	if err := base.Validate(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	mgmt := netip.MustParseAddr("192.0.2.11")
	otherCACert, otherCAKey := other.issue("hv1", clusterpki.Peer, loopback)
	serverOnly, serverOnlyKey := p.issue("hv1", clusterpki.Server, loopback)
	hv2Cert, hv2Key := p.issue("hv2", clusterpki.Peer, loopback)
	mgmtOnly, mgmtOnlyKey := p.issue("hv1", clusterpki.Peer, mgmt)
	wrongIP, wrongIPKey := p.issue("hv1", clusterpki.Peer, netip.MustParseAddr("192.0.2.99"))

	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // substrings of the error
	}{
		{"no cluster name", func(c *Config) { c.ClusterName = "" }, []string{"ClusterName", "the cluster has no name"}},
		{"bad name", func(c *Config) { c.Name = "hv_1" }, []string{"Name:", "not a valid host name"}},
		{"relative data dir", func(c *Config) { c.DataDir = "store" }, []string{"DataDir", "absolute"}},
		{"http peer URL", func(c *Config) { c.PeerURL = "http://127.0.0.1:2380" }, []string{"PeerURL", "https"}},
		{"host name in client URL", func(c *Config) { c.ClientURL = "https://hv1:2379" }, []string{"ClientURL", "IP address"}},
		{"unspecified address", func(c *Config) { c.ClientURL = "https://0.0.0.0:2379" }, []string{"ClientURL", "no address other members can reach"}},
		{"same port", func(c *Config) { c.ClientURL = c.PeerURL }, []string{"different ports"}},
		{"different IPs", func(c *Config) { c.ClientURL = "https://192.0.2.12:2379" }, []string{"different IPs", "management IP"}},
		{"no initial cluster", func(c *Config) { c.InitialCluster = nil }, []string{"InitialCluster is empty"}},
		{"initial cluster without self", func(c *Config) {
			c.InitialCluster = map[string]string{"hv2": "https://127.0.0.1:12380"}
		}, []string{`InitialCluster has no member "hv1"`}},
		{"initial cluster with another peer URL", func(c *Config) {
			c.InitialCluster = map[string]string{"hv1": "https://127.0.0.1:12380"}
		}, []string{"make them the same"}},
		{"initial cluster with a shared address", func(c *Config) {
			c.InitialCluster = map[string]string{"hv1": c.PeerURL, "hv2": c.PeerURL}
		}, []string{"same peer address"}},
		{"initial cluster with a bad name", func(c *Config) {
			c.InitialCluster = map[string]string{"hv1": c.PeerURL, "hv 2": "https://127.0.0.1:12380"}
		}, []string{"InitialCluster: member name", "not a valid host name"}},
		{"no state", func(c *Config) { c.State = "" }, []string{"State is empty", `"new"`, `"existing"`}},
		{"unknown state", func(c *Config) { c.State = "join" }, []string{`State "join"`}},
		{"joining alone", func(c *Config) { c.State = StateExisting }, []string{"AddLearner"}},
		{"short election", func(c *Config) { c.ElectionTimeout = 4 * c.HeartbeatInterval }, []string{"ElectionTimeout", "5 heartbeats"}},
		{"tiny heartbeat", func(c *Config) { c.HeartbeatInterval = 1 }, []string{"HeartbeatInterval"}},
		{"tiny quota", func(c *Config) { c.QuotaBackendBytes = 1 << 20 }, []string{"QuotaBackendBytes"}},
		{"no CA file", func(c *Config) { c.CAFile = "" }, []string{"CAFile is empty"}},
		{"missing CA file", func(c *Config) { c.CAFile = filepath.Join(t.TempDir(), "nope.pem") }, []string{"CAFile", "no such file"}},
		{"member certificate as CA", func(c *Config) { c.CAFile = c.CertFile }, []string{"CAFile", "not a CA certificate"}},
		{"key as certificate", func(c *Config) { c.CertFile = c.KeyFile }, []string{"CertFile", "PRIVATE KEY"}},
		{"certificate of another CA", func(c *Config) { c.CertFile, c.KeyFile = otherCACert, otherCAKey }, []string{"CertFile " + otherCACert, "not issued by the CA in CAFile"}},
		{"key of another certificate", func(c *Config) { c.KeyFile = hv2Key }, []string{"KeyFile " + hv2Key, "is not the key of CertFile"}},
		{"server-only certificate", func(c *Config) { c.CertFile, c.KeyFile = serverOnly, serverOnlyKey }, []string{"CertFile " + serverOnly, "TLS client", "usage Peer"}},
		{"another member's certificate", func(c *Config) { c.CertFile, c.KeyFile = hv2Cert, hv2Key }, []string{"CertFile " + hv2Cert, `"hv2"`, `not of this member "hv1"`}},
		{"certificate without the member's IP", func(c *Config) { c.CertFile, c.KeyFile = wrongIP, wrongIPKey }, []string{"CertFile " + wrongIP, "does not hold IP 127.0.0.1", "PeerURL"}},
		{"certificate without loopback", func(c *Config) {
			c.PeerURL, c.ClientURL = "https://192.0.2.11", "https://192.0.2.11"
			c.InitialCluster = map[string]string{"hv1": "https://192.0.2.11:2380"}
			c.CertFile, c.KeyFile = mgmtOnly, mgmtOnlyKey
		}, []string{"does not hold IP 127.0.0.1", "loopback", "192.0.2.11 and 127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.InitialCluster = map[string]string{c.Name: c.PeerURL}
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "store member") {
				t.Errorf("error %q does not name the member", err)
			}
		})
	}

	t.Run("management IP with loopback in the certificate", func(t *testing.T) {
		both, bothKey := p.issue("hv1", clusterpki.Peer, mgmt, loopback)
		c := base
		c.PeerURL, c.ClientURL = "https://192.0.2.11", "https://192.0.2.11"
		c.InitialCluster = map[string]string{"hv1": "https://192.0.2.11"}
		c.CertFile, c.KeyFile = both, bothKey
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		d := c.WithDefaults()
		if d.PeerURL != "https://192.0.2.11:2380" || d.ClientURL != "https://192.0.2.11:2379" || d.InitialCluster["hv1"] != "https://192.0.2.11:2380" {
			t.Errorf("default ports: %s %s %v", d.PeerURL, d.ClientURL, d.InitialCluster)
		}
		var got []string
		for _, u := range d.listenClientURLs() {
			got = append(got, u.String())
		}
		if want := []string{"https://192.0.2.11:2379", "https://127.0.0.1:2379"}; !slices.Equal(got, want) {
			t.Errorf("client listeners %v, want %v", got, want)
		}
		d.NoLoopbackClient = true
		if n := len(d.listenClientURLs()); n != 1 {
			t.Errorf("NoLoopbackClient: %d client listeners, want 1", n)
		}
		c.CertFile, c.KeyFile = mgmtOnly, mgmtOnlyKey
		c.NoLoopbackClient = true
		if err := c.Validate(); err != nil {
			t.Errorf("NoLoopbackClient with a certificate without 127.0.0.1: %v", err)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		d := Config{}.WithDefaults()
		if d.DataDir != DefaultDataDir || d.HeartbeatInterval != DefaultHeartbeatInterval || d.ElectionTimeout != DefaultElectionTimeout ||
			d.SnapshotCount != DefaultSnapshotCount || d.QuotaBackendBytes != DefaultQuotaBackendBytes || d.Logger == nil {
			t.Errorf("defaults: %+v", d)
		}
	})
}

// TestDataDirMarker covers the refusals that happen before etcd starts.
func TestDataDirMarker(t *testing.T) {
	p := newPKI(t, "lab")
	base := memberConfig(t, p, "lab", "hv2", [2]int{2380, 2379}).WithDefaults()
	facts, err := base.check()
	if err != nil {
		t.Fatal(err)
	}
	withWAL := func(t *testing.T, m *marker) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "member", "wal"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "member", "wal", "0000000000000000-0000000000000000.wal"), []byte("x"))
		if m != nil {
			if err := writeMarker(dir, *m); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	good := marker{Cluster: "lab", Member: "hv2", CAHashes: facts.caHashes}

	t.Run("empty", func(t *testing.T) {
		c := base
		c.DataDir = filepath.Join(t.TempDir(), "store")
		if fresh, err := c.checkDataDir(facts); err != nil || !fresh {
			t.Fatalf("fresh %v, err %v", fresh, err)
		}
	})
	t.Run("member dir without WAL", func(t *testing.T) {
		c := base
		c.DataDir = t.TempDir()
		os.MkdirAll(filepath.Join(c.DataDir, "member", "snap"), 0o700)
		if fresh, err := c.checkDataDir(facts); err != nil || !fresh {
			t.Fatalf("fresh %v, err %v", fresh, err)
		}
	})
	t.Run("own data", func(t *testing.T) {
		c := base
		c.DataDir = withWAL(t, &good)
		if fresh, err := c.checkDataDir(facts); err != nil || fresh {
			t.Fatalf("fresh %v, err %v", fresh, err)
		}
	})
	otherCluster, otherMember, otherCA := good, good, good
	otherCluster.Cluster = "prod"
	otherMember.Member = "hv3"
	otherCA.CAHashes = []string{"00ff"}
	for _, tt := range []struct {
		name string
		m    *marker
		want string
	}{
		{"no marker", nil, "without gallium-net's marker file"},
		{"another cluster", &otherCluster, `cluster "prod", not "lab"`},
		{"another member", &otherMember, `member "hv3", not "hv2"`},
		{"another CA", &otherCA, "another CA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.DataDir = withWAL(t, tt.m)
			_, err := c.checkDataDir(facts)
			if !errors.Is(err, ErrStaleDataDir) {
				t.Fatalf("err %v, want ErrStaleDataDir", err)
			}
			mv := "mv " + c.DataDir + " " + c.DataDir + ".old"
			for _, w := range []string{tt.want, mv, "store member hv2", "belongs to another cluster or an earlier member"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
}

func TestFindTrap(t *testing.T) {
	c := Config{Name: "hv2", DataDir: "/var/lib/gallium-net/store", InitialCluster: map[string]string{"hv1": "", "hv2": ""}}
	for _, tt := range []struct {
		err    error
		recent []string
		is     error
		want   string
	}{
		{errors.New("error validating peerURLs {...}: member count is unequal"), nil, nil, "add hv2 first (AddLearner"},
		{errors.New("etcd stopped"), []string{"server error: the member has been permanently removed from the cluster"}, ErrRemoved, "mv /var/lib/gallium-net/store /var/lib/gallium-net/store.old"},
		{errors.New("member 8e9e05c52164694d has already been bootstrapped"), nil, nil, `State "existing"`},
		{errors.New("listen tcp 127.0.0.1:2380: bind: address already in use"), nil, nil, "is taken"},
		{errors.New("etcdserver: too many learner members in cluster"), nil, ErrJoinInProgress, "retry when it is done"},
		{errors.New("something new"), []string{"a", "b"}, nil, "etcd's last warnings: a; b"},
	} {
		err := c.explain(tt.err, tt.recent)
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%v: not %v", err, tt.is)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%v does not wrap %v", err, tt.err)
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "store member hv2: ") {
			t.Errorf("%v\ndoes not say %q", err, tt.want)
		}
	}
	err := c.notReady(errors.New("context deadline exceeded"), 0, []string{"request sent was ignored due to cluster ID mismatch"})
	if !errors.Is(err, ErrStaleDataDir) || !strings.Contains(err.Error(), "mv /var/lib/gallium-net/store") {
		t.Errorf("timeout after a cluster ID mismatch: %v", err)
	}
}
