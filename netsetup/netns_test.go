package netsetup

import (
	"errors"
	"reflect"
	"testing"

	"github.com/gallium/gallium-net/test/testenv"
)

// inNetns moves the test's OS thread into a fresh network namespace for the
// rest of the test; cleanup moves it back, and the namespace disappears with
// its last handle.
func inNetns(t testing.TB) {
	t.Helper()
	testenv.EnterNetns(t)
}

// failAfter fails the Nth write (1-based) of a real kernel.
type failAfter struct {
	Kernel
	n int
}

func (f *failAfter) Do(op Op) error {
	f.n--
	if f.n == 0 {
		return errors.New("injected failure")
	}
	return f.Kernel.Do(op)
}

func mustDo(t *testing.T, k Kernel, ops ...Op) {
	t.Helper()
	for _, op := range ops {
		if err := k.Do(op); err != nil {
			t.Fatal(err)
		}
	}
}

// Tier 2: every write the host kernel supports (no bonding, no VLAN
// filtering here), read back through Observe.
func TestNetlinkWritesReadBack(t *testing.T) {
	inNetns(t)
	k := NewNetlink()
	testenv.VethPair(t, "gt-e1", "gt-p1")
	mustDo(t, k,
		Op{Kind: OpAddBridge, Link: "gbr-t0", MTU: 1400},
		Op{Kind: OpSetMTU, Link: "gt-e1", MTU: 1400},
		Op{Kind: OpSetMaster, Link: "gt-e1", Master: "gbr-t0"},
		Op{Kind: OpSetMAC, Link: "gbr-t0", MACFrom: "gt-e1"},
		Op{Kind: OpSetUp, Link: "gbr-t0", On: true},
		Op{Kind: OpAddrAdd, Link: "gbr-t0", Addr: "10.99.0.1/24"},
		Op{Kind: OpRouteReplace, Route: &Route{Gateway: "10.99.0.254", Dev: "gbr-t0"}},
	)
	obs, err := k.Observe()
	if err != nil {
		t.Fatal(err)
	}
	br, port := obs.Link("gbr-t0"), obs.Link("gt-e1")
	if br == nil || port == nil {
		t.Fatalf("links missing: %+v", obs.Links)
	}
	if br.Kind != "bridge" || br.MTU != 1400 || !br.Up || br.MAC != port.MAC || !reflect.DeepEqual(br.Addrs, []string{"10.99.0.1/24"}) {
		t.Errorf("bridge: %+v (port MAC %s)", br, port.MAC)
	}
	if port.Master != "gbr-t0" || port.Kind != "veth" {
		t.Errorf("port: %+v", port)
	}
	if !reflect.DeepEqual(obs.DefaultRoute, &Route{Gateway: "10.99.0.254", Dev: "gbr-t0"}) {
		t.Errorf("default route: %+v", obs.DefaultRoute)
	}
	// The raw IFLA_INFO_DATA read used for bonds parses any link.
	if d, err := peerNotifDelay(br.Index); err != nil || d != 0 {
		t.Errorf("peer_notif_delay of a bridge: %d, %v", d, err)
	}
	mustDo(t, k,
		Op{Kind: OpRouteDel, Route: &Route{Gateway: "10.99.0.254", Dev: "gbr-t0"}},
		Op{Kind: OpAddrDel, Link: "gbr-t0", Addr: "10.99.0.1/24"},
		// Already gone (another manager dropped it): the step still
		// reaches what it wants.
		Op{Kind: OpAddrDel, Link: "gbr-t0", Addr: "10.99.0.1/24"},
		Op{Kind: OpSetMaster, Link: "gt-e1"},
		Op{Kind: OpDel, Link: "gbr-t0"},
	)
	obs = observe(t, k)
	if obs.Link("gbr-t0") != nil || obs.DefaultRoute != nil || obs.Link("gt-e1").Master != "" {
		t.Errorf("after undoing by hand: %+v", obs)
	}
}

// bridgeTarget is a host snapshot with a bridge (no VLAN filtering: the
// host kernel has none) over a veth, an address and a default route.
func bridgeTarget(t *testing.T, k Kernel) (before, target *Snapshot) {
	t.Helper()
	testenv.VethPair(t, "gt-e1", "gt-p1")
	testenv.VethPair(t, "gt-e2", "gt-p2")
	before, err := k.Observe()
	if err != nil {
		t.Fatal(err)
	}
	target = before.Clone()
	target.Links = append(target.Links, Link{Name: "gbr-t0", Kind: "bridge", MTU: 1500, Up: true, Addrs: []string{"10.99.0.1/24"}})
	target.Link("gt-e1").Master = "gbr-t0"
	target.Link("gt-e1").Addrs = nil
	target.Link("gt-e2").Addrs = []string{"10.98.0.2/24"}
	target.DefaultRoute = &Route{Gateway: "10.99.0.254", Dev: "gbr-t0"}
	return before, target
}

func TestNetlinkRestorePlanConvergesWithZeroWritesAfter(t *testing.T) {
	inNetns(t)
	k := &Counter{Kernel: NewNetlink()}
	before, target := bridgeTarget(t, k)
	p, err := Restore(k, target, nil)
	if err != nil {
		t.Fatalf("restore to target: %v\n%s", err, p)
	}
	t.Logf("plan:\n%s", p)
	k.Writes = 0
	if p, err := Restore(k, target, nil); err != nil || !p.Empty() || k.Writes != 0 {
		t.Fatalf("again: err %v, %d writes, plan %s", err, k.Writes, p)
	}
	// And back (deletes the bridge, moves the address and route away).
	if _, err := Restore(k, before.Subset([]string{"gt-e1", "gt-e2"}), nil); err != nil {
		t.Fatal(err)
	}
	after := observe(t, k)
	if !reflect.DeepEqual(after.Restorable(), before.Restorable()) {
		t.Errorf("not back:\nbefore %+v\nafter  %+v", before.Restorable(), after.Restorable())
	}
}

func TestNetlinkFailureAtEachStepRestores(t *testing.T) {
	inNetns(t)
	k := NewNetlink()
	before, target := bridgeTarget(t, k)
	p, err := RestorePlan(target, before)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Steps {
		obs := observe(t, k)
		p, err := RestorePlan(target, obs)
		if err != nil {
			t.Fatal(err)
		}
		err = Apply(&failAfter{Kernel: k, n: i + 1}, p, ApplyOptions{AllowDisruptive: true})
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.UndoErr != nil {
			t.Fatalf("fail at step %d: %v", i+1, err)
		}
		after := observe(t, k)
		if !reflect.DeepEqual(after.Restorable(), before.Restorable()) {
			t.Fatalf("fail at step %d (%s): not restored\nbefore %+v\nafter  %+v", i+1, p.Steps[i].Cmd, before.Restorable(), after.Restorable())
		}
	}
}

// observe reads the host or fails the test.
func observe(t testing.TB, k Kernel) *Snapshot {
	t.Helper()
	s, err := k.Observe()
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	return s
}
