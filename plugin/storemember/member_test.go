package storemember

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

// start starts a member and stops it at the end of the test.
func start(t *testing.T, cfg Config) *Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	began := time.Now()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("member %s ready in %v", cfg.Name, time.Since(began).Round(time.Millisecond))
	t.Cleanup(m.Stop)
	return m
}

func TestSingleMemberMutualTLS(t *testing.T) {
	p := newPKI(t, "lab")
	ports := freePorts(t, 2)
	cfg := memberConfig(t, p, "lab", "hv1", [2]int{ports[0], ports[1]})
	m := start(t, cfg)
	if got := m.ClientEndpoints(); len(got) != 1 || got[0] != cfg.ClientURL {
		t.Fatalf("ClientEndpoints %v, want [%s] (a ClientURL on loopback needs no second listener)", got, cfg.ClientURL)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := newClient(t, m.ClientEndpoints(), p.clientTLS("gallium-net-cli"))
	if _, err := cli.Put(ctx, "/gallium/k", "v1"); err != nil {
		t.Fatalf("put with a cluster client certificate: %v", err)
	}
	resp, err := cli.Get(ctx, "/gallium/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get: %v %v", resp, err)
	}

	refused := func(name string, cfg *tls.Config) {
		t.Helper()
		c := newClient(t, m.ClientEndpoints(), cfg)
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		if _, err := c.Put(rctx, "/gallium/k", name); err == nil {
			t.Errorf("%s: the member accepted a write", name)
		}
		// The client above only sees its deadline pass; the handshake
		// says why.
		conn, err := tls.Dial("tcp", strings.TrimPrefix(m.ClientEndpoints()[0], "https://"), cfg)
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "tls: ") {
			t.Errorf("%s: the handshake did not fail in TLS: %v", name, err)
		}
		t.Logf("%s refused: %v", name, err)
	}
	refused("no certificate", &tls.Config{RootCAs: caPool(t, p), MinVersion: tls.VersionTLS12})
	other := newPKI(t, "lab")
	otherPEM, otherKey, err := other.ca.Issue(clusterpki.IssueRequest{Name: "intruder", Usage: clusterpki.Client})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(otherPEM, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	refused("another CA's certificate", &tls.Config{RootCAs: caPool(t, p), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})

	resp, err = cli.Get(ctx, "/gallium/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after the refused writes: %v %v", resp, err)
	}

	// A restart (the service after a reboot) starts from the data with
	// the same configuration, State new included.
	m.Stop()
	m = start(t, cfg)
	cli = newClient(t, m.ClientEndpoints(), p.clientTLS("gallium-net-cli"))
	resp, err = cli.Get(ctx, "/gallium/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after a restart: %v %v", resp, err)
	}
}

// TestJoin grows a cluster by a learner, refuses what must be refused
// along the way, and plays a reinstalled hypervisor: removed, refused on
// its old data, joined again with a fresh data directory.
func TestJoin(t *testing.T) {
	p := newPKI(t, "lab")
	ports := freePorts(t, 6)
	m1cfg := memberConfig(t, p, "lab", "hv1", [2]int{ports[0], ports[1]})
	m1 := start(t, m1cfg)
	cli := newClient(t, m1.ClientEndpoints(), p.clientTLS("gallium-net-cli"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	hv2URL, hv3URL := localURL(ports[2]), localURL(ports[4])
	ic, err := AddLearner(ctx, cli, "hv2", hv2URL)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"hv1": m1cfg.PeerURL, "hv2": hv2URL}; !maps.Equal(ic, want) {
		t.Fatalf("initial cluster %v, want %v", ic, want)
	}

	// One learner at a time: hv2 has not even started.
	_, err = AddLearner(ctx, cli, "hv3", hv3URL)
	if !errors.Is(err, ErrJoinInProgress) || !strings.Contains(err.Error(), "retry when it is done") || !strings.Contains(err.Error(), hv2URL) {
		t.Fatalf("a second learner: %v", err)
	}
	// Retrying hv2's own join gives the same answer.
	again, err := AddLearner(ctx, cli, "hv2", hv2URL)
	if err != nil || !maps.Equal(again, ic) {
		t.Fatalf("AddLearner again before hv2 started: %v %v", again, err)
	}

	m2cfg := memberConfig(t, p, "lab", "hv2", [2]int{ports[2], ports[3]})
	m2cfg.State, m2cfg.InitialCluster = StateExisting, ic
	m2 := start(t, m2cfg)
	if err := Promote(ctx, cli, "hv2"); err != nil {
		t.Fatal(err)
	}
	checkHealth(t, ctx, cli, "hv1", "hv2")

	_, err = AddLearner(ctx, cli, "hv2", hv3URL)
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "RemoveByName hv2") || !strings.HasPrefix(err.Error(), "store member hv2: ") {
		t.Fatalf("a duplicate name: %v", err)
	}

	// hv2 is reinstalled: the dead member goes first, and notices.
	if err := RemoveByName(ctx, cli, "hv2"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m2.Err():
		if !errors.Is(err, ErrRemoved) {
			t.Errorf("a removed member's error: %v, want ErrRemoved", err)
		}
		t.Logf("removed member: %v", err)
	case <-time.After(15 * time.Second):
		t.Error("the removed member did not stop by itself within 15 s")
	}
	m2.Stop()
	if err := RemoveByName(ctx, cli, "hv2"); !errors.Is(err, ErrNoMember) {
		t.Errorf("removing hv2 twice: %v", err)
	}

	// Its old data, under another cluster: refused before etcd starts.
	stale := m2cfg
	stale.ClusterName, stale.State, stale.InitialCluster = "prod", StateNew, map[string]string{"hv2": m2cfg.PeerURL}
	began := time.Now()
	_, err = Start(ctx, stale)
	mv := "mv " + m2cfg.DataDir + " " + m2cfg.DataDir + ".old"
	if !errors.Is(err, ErrStaleDataDir) || !strings.Contains(err.Error(), mv) {
		t.Fatalf("old data under another cluster: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the stale data directory was refused after %v: etcd started?", took)
	}
	// Its old data, same cluster and name: etcd itself finds out.
	_, err = Start(ctx, m2cfg)
	if !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), mv) {
		t.Fatalf("old data of the removed member: %v", err)
	}
	t.Logf("restart on a removed member's data: %v", err)

	// Join again with a wiped data directory.
	ic, err = AddLearner(ctx, cli, "hv2", hv2URL)
	if err != nil {
		t.Fatal(err)
	}
	m2cfg.InitialCluster, m2cfg.DataDir = ic, t.TempDir()
	m2 = start(t, m2cfg)
	if err := Promote(ctx, cli, "hv2"); err != nil {
		t.Fatal(err)
	}
	checkHealth(t, ctx, cli, "hv1", "hv2")

	// The data is replicated to the new hv2.
	if _, err := cli.Put(ctx, "/gallium/joined", "yes"); err != nil {
		t.Fatal(err)
	}
	cli2 := newClient(t, m2.ClientEndpoints(), p.clientTLS("gallium-net-cli"))
	resp, err := cli2.Get(ctx, "/gallium/joined")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read from hv2: %v %v", resp, err)
	}
	if _, err := os.Stat(markerPath(m2cfg.DataDir)); err != nil {
		t.Errorf("marker: %v", err)
	}
}

// checkHealth wants the named members, all voting and reachable, and one
// leader among them.
func checkHealth(t *testing.T, ctx context.Context, cli *clientv3.Client, names ...string) {
	t.Helper()
	hs, err := Health(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	var got []string
	for _, h := range hs {
		got = append(got, h.Name)
		if !h.Reachable || h.Learner || h.Revision == 0 || h.ID == 0 {
			t.Errorf("member %+v: want reachable, voting, with a revision", h)
		}
		if h.Leader {
			leaders++
		}
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("members %v, want %v", got, names)
	}
	if leaders != 1 {
		t.Errorf("%d leaders in %+v", leaders, hs)
	}
}
