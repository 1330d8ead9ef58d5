// Package storetest is the conformance suite every store.Backend runs: the
// key-value contract (revisions, compare-and-swap, watches), the spec with
// its history, the NIC ledger with cluster-unique MAC allocation, and the
// host snapshot. A backend's test calls Run with a factory; the concurrency
// checks (ConcurrentMACs) take several clients of one shared state.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
)

// Factory returns n clients of one fresh, empty state (n >= 1). A backend
// that is one process (bbolt) may return the same value n times. The test
// closes nothing: the factory registers its own cleanup.
type Factory func(t testing.TB, n int) []store.Backend

// SpecYAML returns a valid 3-hypervisor spec for cluster name with MAC
// prefix prefix; its management subnet 10.77.0.0/24 is only ever used
// inside test namespaces.
func SpecYAML(name, prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster:\n  name: %s\n  subnet: 10.77.0.0/24\n  vip: 10.77.0.100\n  macPrefix: %q\n", name, prefix)
	b.WriteString("hypervisors:\n")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, "  - name: hv%d\n    managementIP: 10.77.0.%d/24\n    adapters:\n", i, 10+i)
		for j := 1; j <= 4; j++ {
			speed := 10000
			if j > 2 {
				speed = 1000
			}
			fmt.Fprintf(&b, "      - {name: eno%d, speedMbps: %d}\n", j, speed)
		}
	}
	b.WriteString(`adapterGroups:
  - name: infra
    infrastructure: true
    adapters: {hv1: [eno1, eno2], hv2: [eno1, eno2], hv3: [eno1, eno2]}
  - name: vmgroup
    adapters: {hv1: [eno3, eno4], hv2: [eno3, eno4], hv3: [eno3, eno4]}
networks:
  - {name: prod, adapterGroup: vmgroup, vlan: 100}
  - {name: flat, adapterGroup: vmgroup}
hardwareProfiles:
  - {name: modern, nicModel: virtio}
`)
	return b.String()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pushed returns a store holding a fresh spec with prefix.
func pushed(t testing.TB, f Factory, prefix string) *store.Store {
	t.Helper()
	s := store.New(f(t, 1)[0])
	if _, err := s.PushSpec(ctxT(t), store.PushRequest{YAML: []byte(SpecYAML("lab", prefix))}); err != nil {
		t.Fatalf("push spec: %v", err)
	}
	return s
}

// Run runs the whole conformance suite against backends from f.
func Run(t *testing.T, f Factory) {
	t.Run("KV", func(t *testing.T) { testKV(t, f) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, f) })
	t.Run("SpecPush", func(t *testing.T) { testSpecPush(t, f) })
	t.Run("Ledger", func(t *testing.T) { testLedger(t, f) })
	t.Run("Import", func(t *testing.T) { testImport(t, f) })
	t.Run("MoveDomain", func(t *testing.T) { testMoveDomain(t, f) })
	t.Run("Snapshot", func(t *testing.T) { testSnapshot(t, f) })
	t.Run("HostsAndRollouts", func(t *testing.T) { testHostsAndRollouts(t, f) })
	t.Run("SameNICConcurrently", func(t *testing.T) { testSameNICConcurrently(t, f) })
	t.Run("ConcurrentMACs", func(t *testing.T) {
		clients := f(t, 3)
		ConcurrentMACs(t, clients, 50, nil)
	})
}

func testKV(t *testing.T, f Factory) {
	b := f(t, 1)[0]
	ctx := ctxT(t)
	if _, err := b.Get(ctx, "a/x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing key: err = %v, want ErrNotFound", err)
	}
	r1, err := b.Txn(ctx, []store.Cmp{{Key: "a/x"}}, []store.Op{{Key: "a/x", Value: []byte("1")}, {Key: "a/y", Value: []byte("2")}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	kv, err := b.Get(ctx, "a/x")
	if err != nil || string(kv.Value) != "1" || kv.ModRevision != r1 {
		t.Fatalf("Get a/x = %+v, %v; want value 1 at revision %d", kv, err, r1)
	}
	cases := []struct {
		name    string
		cmps    []store.Cmp
		ops     []store.Op
		wantErr error
	}{
		{"create existing", []store.Cmp{{Key: "a/x"}}, []store.Op{{Key: "a/x", Value: []byte("bad")}}, store.ErrConflict},
		{"stale revision", []store.Cmp{{Key: "a/x", ModRevision: r1 - 1}}, []store.Op{{Key: "a/x", Value: []byte("bad")}}, store.ErrConflict},
		{"one of two fails", []store.Cmp{{Key: "a/x", ModRevision: r1}, {Key: "a/y"}}, []store.Op{{Key: "a/z", Value: []byte("bad")}}, store.ErrConflict},
		{"current revision", []store.Cmp{{Key: "a/x", ModRevision: r1}}, []store.Op{{Key: "a/x", Value: []byte("3")}, {Key: "a/y", Delete: true}}, nil},
	}
	last := r1
	for _, c := range cases {
		rev, err := b.Txn(ctx, c.cmps, c.ops)
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", c.name, err, c.wantErr)
		}
		if err == nil {
			if rev <= last {
				t.Fatalf("%s: revision %d does not grow past %d", c.name, rev, last)
			}
			last = rev
		}
	}
	kvs, rev, err := b.List(ctx, "a/")
	if err != nil {
		t.Fatal(err)
	}
	if rev < last {
		t.Errorf("List revision %d older than the last write %d", rev, last)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key+"="+string(kv.Value))
	}
	if strings.Join(got, ",") != "a/x=3" {
		t.Errorf("List a/ = %v, want [a/x=3] (failed transactions must change nothing, delete must delete)", got)
	}
	if _, err := b.Get(ctx, "a/z"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed transaction wrote a/z: %v", err)
	}
}

func testWatch(t *testing.T, f Factory) {
	b := f(t, 1)[0]
	ctx := ctxT(t)
	r0, err := b.Txn(ctx, nil, []store.Op{{Key: "w/before", Value: []byte("0")}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := b.Watch(wctx, "w/", r0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Txn(ctx, nil, []store.Op{{Key: "other/x", Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	r2, err := b.Txn(ctx, nil, []store.Op{{Key: "w/a", Value: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-ch:
			switch {
			case ev.Key == "w/a" && string(ev.Value) == "1" && ev.Revision == r2:
				seen = true
			case ev.Key == "other/x":
				t.Fatalf("watch on w/ reported %s", ev.Key)
			case ev.Key == "w/before":
				t.Fatalf("watch after revision %d reported the write at that revision", r0)
			}
		case <-deadline:
			t.Fatal("watch did not report the put of w/a within 10 s")
		}
	}
	cancel()
	for range ch { // the channel must close after cancel
	}
}

func testSpecPush(t *testing.T, f Factory) {
	s := store.New(f(t, 1)[0])
	ctx := ctxT(t)
	v1 := SpecYAML("lab", "52:54:00")
	v2 := strings.Replace(v1, "vlan: 100", "vlan: 101", 1)
	v3 := strings.Replace(v1, "vlan: 100", "vlan: 102", 1)
	if _, err := s.Spec(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("empty store: Spec err = %v, want ErrNotFound", err)
	}
	steps := []struct {
		name      string
		req       store.PushRequest
		wantErr   error
		wantVer   int64
		unchanged bool
	}{
		{"first push", store.PushRequest{YAML: []byte(v1)}, nil, 1, false},
		{"same content again", store.PushRequest{YAML: []byte(v1)}, nil, 1, true},
		{"no base", store.PushRequest{YAML: []byte(v2)}, store.ErrConflict, 0, false},
		{"based on current", store.PushRequest{YAML: []byte(v2), Base: 1}, nil, 2, false},
		{"stale base", store.PushRequest{YAML: []byte(v3), Base: 1}, store.ErrConflict, 0, false},
		{"header gives base", store.PushRequest{YAML: []byte(store.RevisionHeader + " 2\n" + v3)}, nil, 3, false},
		{"stale header", store.PushRequest{YAML: []byte(store.RevisionHeader + " 2\n" + v1)}, store.ErrConflict, 0, false},
		{"forced", store.PushRequest{YAML: []byte(v1), Base: 1, Force: true}, nil, 4, false},
		{"unparsable", store.PushRequest{YAML: []byte("cluster: [\n"), Base: 4}, nil, 0, false},
		{"unknown field", store.PushRequest{YAML: []byte(v1 + "bogus: 1\n"), Base: 4}, nil, 0, false},
		{"invalid (VLAN 5000)", store.PushRequest{YAML: []byte(strings.Replace(v1, "vlan: 100", "vlan: 5000", 1)), Base: 4}, nil, 0, false},
		{"invalid even forced", store.PushRequest{YAML: []byte(strings.Replace(v1, "vip: 10.77.0.100", "vip: 10.99.0.1", 1)), Force: true}, nil, 0, false},
	}
	for _, st := range steps {
		res, err := s.PushSpec(ctx, st.req)
		if st.wantVer == 0 {
			if err == nil {
				t.Fatalf("%s: push succeeded (revision %d), want a refusal", st.name, res.Record.Version)
			}
			if st.wantErr != nil && !errors.Is(err, st.wantErr) {
				t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if res.Record.Version != st.wantVer || res.Unchanged != st.unchanged {
			t.Fatalf("%s: revision %d unchanged=%v, want %d unchanged=%v", st.name, res.Record.Version, res.Unchanged, st.wantVer, st.unchanged)
		}
	}
	cur, err := s.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version != 4 || cur.YAML != v1 || !cur.Forced {
		t.Errorf("current = revision %d forced=%v, want the forced revision 4 with v1's text", cur.Version, cur.Forced)
	}
	if _, err := cur.Spec(); err != nil {
		t.Errorf("stored spec does not parse: %v", err)
	}
	hist, err := s.SpecHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{v1, v2, v3, v1}
	if len(hist) != len(want) {
		t.Fatalf("history has %d records, want %d", len(hist), len(want))
	}
	for i, h := range hist {
		if h.Version != int64(i+1) || h.YAML != want[i] {
			t.Errorf("history[%d] = revision %d, want revision %d with its text", i, h.Version, i+1)
		}
		if strings.Contains(h.YAML, store.RevisionHeader) {
			t.Errorf("history[%d] kept the revision header line", i)
		}
	}
}

func testLedger(t *testing.T, f Factory) {
	ctx := ctxT(t)
	empty := store.New(f(t, 1)[0])
	if _, _, err := empty.AllocateMAC(ctx, store.NIC{DomainUUID: "u1", Key: "net0", Network: "prod"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("allocation without a spec: err = %v, want ErrNotFound (push a spec first)", err)
	}
	s := pushed(t, f, "02:aa:bb")
	seen := map[string]string{}
	reqs := []store.NIC{
		{DomainUUID: "u1", Key: "net0", Network: "prod", Hypervisor: "hv1"},
		{DomainUUID: "u1", Key: "net1", Network: "flat", Hypervisor: "hv1"},
		{DomainUUID: "u2", Key: "net0", Network: "prod", Hypervisor: "hv2"},
	}
	for _, r := range reqs {
		n, created, err := s.AllocateMAC(ctx, r)
		if err != nil || !created {
			t.Fatalf("allocate %s: created=%v err=%v", r.ID(), created, err)
		}
		if !strings.HasPrefix(n.MAC, "02:aa:bb:") {
			t.Errorf("%s got MAC %s outside prefix 02:aa:bb", r.ID(), n.MAC)
		}
		if other, dup := seen[n.MAC]; dup {
			t.Errorf("MAC %s given to %s and %s", n.MAC, other, r.ID())
		}
		seen[n.MAC] = r.ID()
		owner, err := s.MACOwner(ctx, n.MAC)
		if err != nil || owner != r.ID() {
			t.Errorf("MACOwner(%s) = %q, %v; want %s", n.MAC, owner, err, r.ID())
		}
	}
	// Stable for the NIC's whole life: asking again, even with a new
	// network or model, keeps the MAC.
	first, _ := s.NIC(ctx, "u1", "net0")
	again, created, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: "u1", Key: "net0", Network: "flat", Model: "e1000"})
	if err != nil || created || again.MAC != first.MAC || again.Network != "flat" || again.Model != "e1000" || again.Hypervisor != "hv1" {
		t.Fatalf("re-allocation = %+v created=%v err=%v; want MAC %s kept, network/model updated, hypervisor kept", again, created, err, first.MAC)
	}
	hv1, err := s.NICs(ctx, "hv1")
	if err != nil || len(hv1) != 2 {
		t.Fatalf("NICs(hv1) = %d, %v; want 2", len(hv1), err)
	}
	all, _ := s.NICs(ctx, "")
	if len(all) != 3 {
		t.Fatalf("NICs() = %d, want 3", len(all))
	}
	rel, err := s.ReleaseNIC(ctx, "u1", "net0")
	if err != nil || rel.MAC != first.MAC {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if _, err := s.MACOwner(ctx, first.MAC); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("released MAC %s still claimed: %v", first.MAC, err)
	}
	if _, err := s.ReleaseNIC(ctx, "u1", "net0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second release: err = %v, want ErrNotFound", err)
	}
	for _, bad := range []store.NIC{{Key: "net0"}, {DomainUUID: "u1"}, {DomainUUID: "u/1", Key: "x"}} {
		if _, _, err := s.AllocateMAC(ctx, bad); err == nil {
			t.Errorf("AllocateMAC(%+v) accepted a malformed NIC name", bad)
		}
	}
}

// testMoveDomain: a migrated domain's NICs name their new hypervisor; other
// domains' NICs (one whose UUID starts the same) stay; a second move is a
// no-op.
func testMoveDomain(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := pushed(t, f, "52:54:01")
	for _, r := range []store.NIC{
		{DomainUUID: "u1", Key: "net0", Network: "prod", Hypervisor: "hv1"},
		{DomainUUID: "u1", Key: "net1", Network: "flat", Hypervisor: "hv1"},
		{DomainUUID: "u10", Key: "net0", Network: "prod", Hypervisor: "hv1"},
	} {
		if _, _, err := s.AllocateMAC(ctx, r); err != nil {
			t.Fatalf("allocate %s: %v", r.ID(), err)
		}
	}
	moved, err := s.MoveDomain(ctx, "u1", "hv2")
	if err != nil || len(moved) != 2 {
		t.Fatalf("MoveDomain(u1, hv2) = %+v, %v; want its 2 NICs", moved, err)
	}
	hv2, _ := s.NICs(ctx, "hv2")
	hv1, _ := s.NICs(ctx, "hv1")
	if len(hv2) != 2 || len(hv1) != 1 || hv1[0].DomainUUID != "u10" {
		t.Fatalf("after the move: hv2 has %+v, hv1 has %+v; want u1's 2 NICs on hv2, u10's on hv1", hv2, hv1)
	}
	for _, n := range hv2 {
		if n.MAC == "" || n.Network == "" || n.Created.IsZero() {
			t.Errorf("moved NIC %s lost fields: %+v", n.ID(), n)
		}
	}
	if again, err := s.MoveDomain(ctx, "u1", "hv2"); err != nil || len(again) != 0 {
		t.Errorf("second MoveDomain(u1, hv2) = %+v, %v; want nothing changed", again, err)
	}
	if none, err := s.MoveDomain(ctx, "u404", "hv2"); err != nil || len(none) != 0 {
		t.Errorf("MoveDomain of a domain without NICs = %+v, %v; want nothing, no error", none, err)
	}
	for _, bad := range [][2]string{{"", "hv2"}, {"u/1", "hv2"}, {"u1", ""}} {
		if _, err := s.MoveDomain(ctx, bad[0], bad[1]); err == nil {
			t.Errorf("MoveDomain(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func testImport(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := pushed(t, f, "52:54:00")
	n, created, err := s.ImportNIC(ctx, store.NIC{DomainUUID: "u9", Key: "net0", MAC: "52:54:00:AA:BB:CC", Network: "prod", Hypervisor: "hv3"})
	if err != nil || !created || n.MAC != "52:54:00:aa:bb:cc" || !n.Imported {
		t.Fatalf("import = %+v created=%v err=%v", n, created, err)
	}
	cases := []struct {
		name    string
		nic     store.NIC
		wantErr error
		created bool
	}{
		{"same again", store.NIC{DomainUUID: "u9", Key: "net0", MAC: "52:54:00:aa:bb:cc"}, nil, false},
		{"MAC of another NIC", store.NIC{DomainUUID: "u8", Key: "net0", MAC: "52:54:00:aa:bb:cc"}, store.ErrConflict, false},
		{"NIC with another MAC", store.NIC{DomainUUID: "u9", Key: "net0", MAC: "52:54:00:aa:bb:cd"}, store.ErrConflict, false},
		{"bad MAC", store.NIC{DomainUUID: "u7", Key: "net0", MAC: "zz"}, nil, false},
	}
	for _, c := range cases {
		_, created, err := s.ImportNIC(ctx, c.nic)
		switch {
		case c.name == "bad MAC":
			if err == nil {
				t.Errorf("%s: accepted", c.name)
			}
		case !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) || created != c.created:
			t.Errorf("%s: created=%v err=%v, want created=%v err=%v", c.name, created, err, c.created, c.wantErr)
		}
	}
	// An allocation never hands out an imported MAC: it is claimed.
	owner, err := s.MACOwner(ctx, "52:54:00:aa:bb:cc")
	if err != nil || owner != "u9/net0" {
		t.Errorf("imported MAC owner = %q, %v", owner, err)
	}
}

func testSnapshot(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := pushed(t, f, "52:54:00")
	path := filepath.Join(t.TempDir(), "snap.json")
	a, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: "u1", Key: "net0", Network: "prod", Hypervisor: "hv1", Model: "virtio"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: "u2", Key: "net0", Network: "prod", Hypervisor: "hv2"}); err != nil {
		t.Fatal(err)
	}
	changed, err := s.SyncSnapshot(ctx, "hv1", path)
	if err != nil || !changed {
		t.Fatalf("first sync: changed=%v err=%v", changed, err)
	}
	snap, err := snapshot.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Hypervisor != "hv1" || snap.SpecRevision != 1 || len(snap.NICs) != 1 || snap.NICs[0].MAC != a.MAC || snap.NICs[0].Model != "virtio" {
		t.Fatalf("snapshot = %+v; want hv1, spec revision 1, only hv1's NIC %s", snap, a.MAC)
	}
	if nw := snap.Networks["prod"]; nw.VLAN != 100 || nw.Bridge != model.BridgeName("vmgroup") {
		t.Errorf("snapshot network prod = %+v", nw)
	}
	if changed, err := s.SyncSnapshot(ctx, "hv1", path); err != nil || changed {
		t.Errorf("sync without a change rewrote the file: changed=%v err=%v", changed, err)
	}
	if _, err := s.SyncSnapshot(ctx, "hv9", path); err == nil {
		t.Errorf("sync for a hypervisor not in the spec succeeded")
	}
	// Follow mode picks up a ledger change without being told.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	synced := make(chan struct{}, 16)
	go s.FollowSnapshot(fctx, "hv1", path, func(changed bool, err error) {
		if err == nil {
			synced <- struct{}{}
		}
	})
	<-synced
	b, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: "u3", Key: "net0", Network: "flat", Hypervisor: "hv1"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := snapshot.Read(path)
		if err == nil && len(snap.NICs) == 2 {
			found := false
			for _, n := range snap.NICs {
				found = found || n.MAC == b.MAC
			}
			if !found {
				t.Fatalf("followed snapshot lacks the new NIC %s", b.MAC)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow mode did not rewrite the snapshot within 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSameNICConcurrently(t *testing.T, f Factory) {
	clients := f(t, 3)
	ctx := ctxT(t)
	if _, err := store.New(clients[0]).PushSpec(ctx, store.PushRequest{YAML: []byte(SpecYAML("lab", "52:54:00"))}); err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	for r := 0; r < rounds; r++ {
		macs := make([]string, len(clients)*2)
		var wg sync.WaitGroup
		for i := range macs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				n, _, err := store.New(clients[i%len(clients)]).AllocateMAC(ctx, store.NIC{DomainUUID: fmt.Sprintf("same-%d", r), Key: "net0", Network: "prod"})
				if err != nil {
					t.Errorf("round %d: %v", r, err)
				}
				macs[i] = n.MAC
			}(i)
		}
		wg.Wait()
		for _, m := range macs {
			if m != macs[0] {
				t.Fatalf("round %d: one NIC got different MACs %v from concurrent allocations", r, macs)
			}
		}
	}
}

// Ack is one acknowledged allocation.
type Ack struct{ ID, MAC string }

// ConcurrentMACs lets every client allocate perClient MACs concurrently for
// distinct NICs of one freshly pushed spec, then checks there are no
// duplicates and that every acknowledged allocation is in the ledger. mid,
// when set, runs once when half of the allocations are acknowledged (for
// example to kill the etcd leader) while the allocations go on.
func ConcurrentMACs(t testing.TB, clients []store.Backend, perClient int, mid func()) []Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := store.New(clients[0]).PushSpec(ctx, store.PushRequest{YAML: []byte(SpecYAML("lab", "52:54:00"))}); err != nil {
		t.Fatal(err)
	}
	total := len(clients) * perClient
	acks := make(chan Ack, total)
	var midOnce sync.Once
	var done sync.WaitGroup
	var midWG sync.WaitGroup
	var count sync.Mutex
	n := 0
	start := time.Now()
	for c, b := range clients {
		done.Add(1)
		go func(c int, s *store.Store) {
			defer done.Done()
			for i := 0; i < perClient; i++ {
				nic, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: fmt.Sprintf("c%d-vm%d", c, i), Key: "net0", Network: "prod", Hypervisor: fmt.Sprintf("hv%d", c%3+1)})
				if err != nil {
					t.Errorf("client %d allocation %d: %v", c, i, err)
					return
				}
				acks <- Ack{nic.ID(), nic.MAC}
				count.Lock()
				n++
				half := n == total/2
				count.Unlock()
				if half && mid != nil {
					midOnce.Do(func() { midWG.Add(1); go func() { defer midWG.Done(); mid() }() })
				}
			}
		}(c, store.New(b))
	}
	done.Wait()
	midWG.Wait()
	close(acks)
	elapsed := time.Since(start)
	var got []Ack
	byMAC := map[string]string{}
	for a := range acks {
		if other, dup := byMAC[a.MAC]; dup {
			t.Errorf("duplicate MAC %s acknowledged for %s and %s", a.MAC, other, a.ID)
		}
		byMAC[a.MAC] = a.ID
		got = append(got, a)
	}
	if t.Failed() {
		return got
	}
	if len(got) != total {
		t.Fatalf("%d allocations acknowledged, want %d", len(got), total)
	}
	// Every acknowledged write must be in the ledger, read through a client
	// that may be another than the writer.
	reader := store.New(clients[len(clients)-1])
	ledger, err := reader.NICs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	inLedger := map[string]string{}
	for _, nic := range ledger {
		inLedger[nic.ID()] = nic.MAC
	}
	lost := 0
	for _, a := range got {
		if inLedger[a.ID] != a.MAC {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged allocation %s=%s is not in the ledger (ledger says %q)", a.ID, a.MAC, inLedger[a.ID])
			}
		}
		owner, err := reader.MACOwner(ctx, a.MAC)
		if err != nil || owner != a.ID {
			t.Errorf("MAC %s: claimed by %q (%v), want %s", a.MAC, owner, err, a.ID)
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged allocations lost", lost)
	}
	if len(ledger) != total {
		t.Errorf("ledger holds %d NICs, want %d", len(ledger), total)
	}
	t.Logf("%d clients x %d allocations: %d MACs, 0 duplicates, in %v (%.0f allocations/s)", len(clients), perClient, len(got), elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	return got
}

// testHostsAndRollouts: what agents publish and what cluster apply asks.
func testHostsAndRollouts(t *testing.T, f Factory) {
	s := pushed(t, f, "52:54:00")
	ctx := ctxT(t)
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 0 {
		t.Fatalf("hosts of a fresh store: %v, %v", hosts, err)
	}
	if r, err := s.Rollout(ctx, "hv1"); r != nil || err != nil {
		t.Fatalf("roll-out of a fresh store: %+v, %v", r, err)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A watch for hv2's roll-out key wakes on hv2's request only.
	woke := make(chan error, 1)
	go func() { woke <- s.WatchChanges(ctx, rev, store.RolloutKey("hv2")) }()
	beat := time.Now().UTC().Truncate(time.Millisecond)
	for _, hv := range []string{"hv1", "hv2"} {
		st := store.HostState{Hypervisor: hv, Heartbeat: beat, Interval: 10 * time.Second, StoredRevision: 1, AppliedRevision: 1, InSync: true,
			Groups: []store.HostGroup{{Group: "infra", Bond: "gb-infra", Up: true, Active: "eno1", Carriers: map[string]bool{"eno1": true, "eno2": false}, VLANs: []int{1}}}}
		if err := s.PublishHost(ctx, st, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-woke:
		t.Fatalf("the watch for hv2's roll-out woke on a host state: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	req := store.RolloutRequest{ID: "r1", Revision: 1, ConfirmTimeout: time.Minute, At: beat}
	if err := s.RequestRollout(ctx, "hv2", req); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not wake on hv2's roll-out request")
	}
	got, err := s.Rollout(ctx, "hv2")
	if err != nil || got == nil || *got != req {
		t.Fatalf("roll-out read back %+v, %v; want %+v", got, err, req)
	}
	hosts, err = s.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts["hv2"].Groups[0].Active != "eno1" || !hosts["hv1"].Heartbeat.Equal(beat) {
		t.Fatalf("hosts read back: %+v", hosts)
	}
	if hosts["hv1"].Stale(beat.Add(29*time.Second)) || !hosts["hv1"].Stale(beat.Add(31*time.Second)) {
		t.Error("Stale: want fresh for three intervals, stale after")
	}
	done := &store.RolloutStatus{Phase: store.PhaseRolledBack}
	if !done.Done() || (&store.RolloutStatus{Phase: store.PhaseChecking}).Done() {
		t.Error("Done: rolled-back is final, checking is not")
	}
}
