package confirm_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm/confirmtest"
	"github.com/gallium/gallium-net/test/testenv"
)

// The commit-confirm tests run this test binary again as "the CLI" and as
// the detached rollback process (confirmtest).
func TestMain(m *testing.M) { confirmtest.Main(m) }

// cabledHost gives the test's namespace two veth pairs and returns the host
// as read and the host an apply makes of it: gt-e1 on a new bridge gbr-t0
// (no VLAN filtering: the host kernel has none) that carries an address and
// the default route, and an address on gt-e2.
func cabledHost(t *testing.T, k netsetup.Kernel) (before, target *netsetup.Snapshot) {
	t.Helper()
	for i := 1; i <= 2; i++ {
		testenv.VethPair(t, fmt.Sprintf("gt-e%d", i), fmt.Sprintf("gt-p%d", i))
	}
	before, err := k.Observe()
	if err != nil {
		t.Fatal(err)
	}
	br := netsetup.Link{Name: "gbr-t0", Kind: "bridge", MTU: 1500, Up: true, Addrs: []string{"10.99.0.1/24"}}
	target = before.Clone()
	target.Links = append(target.Links, br)
	e1, e2 := target.Link("gt-e1"), target.Link("gt-e2")
	e1.Master, e1.Addrs = br.Name, nil
	e2.Addrs = []string{"10.98.0.2/24"}
	target.DefaultRoute = &netsetup.Route{Gateway: "10.99.0.254", Dev: br.Name}
	return before, target
}

// Tier 2: an unconfirmed commit-confirm apply rolls back on time even
// though the CLI process (and its process group) was killed.
func TestCommitConfirmRollsBackAfterTheCLIDies(t *testing.T) {
	testenv.EnterNetns(t)
	k := netsetup.NewNetlink()
	before, target := cabledHost(t, k)
	names := []string{"gt-e1", "gt-e2"}
	want := before.Subset(names)
	start := time.Now()
	store, id, _ := confirmtest.RunUnconfirmedApply(t, target, 1500*time.Millisecond)
	obs, err := k.Observe()
	if err != nil {
		t.Fatal(err)
	}
	if obs.Link("gbr-t0") == nil {
		t.Fatal("the apply did not happen")
	}
	took := confirmtest.WaitRestored(t, k, want, names, start, 10*time.Second)
	t.Logf("rolled back %s after the apply started (timeout 1.5s)", took.Round(time.Millisecond))
	if took < 1500*time.Millisecond {
		t.Errorf("rolled back after %s, before the confirm timeout", took)
	}
	confirmtest.WaitResult(t, store, id)
}

// Tier 2: a confirmed apply stays.
func TestCommitConfirmConfirmedApplyStays(t *testing.T) {
	testenv.EnterNetns(t)
	k := netsetup.NewNetlink()
	_, target := cabledHost(t, k)
	store, id, pid := confirmtest.RunUnconfirmedApply(t, target, 1500*time.Millisecond)
	if err := store.Confirm(id); err != nil {
		t.Fatal(err)
	}
	// The rollback process wakes up, finds the marker gone and exits.
	for i := 0; i < 200; i++ {
		if err := syscall.Kill(pid, 0); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	obs, err := k.Observe()
	if err != nil {
		t.Fatal(err)
	}
	if obs.Link("gbr-t0") == nil || obs.Link("gt-e1").Master != "gbr-t0" {
		t.Errorf("a confirmed apply was rolled back: %+v", obs)
	}
	if r := store.Result(id); r != "" {
		t.Errorf("result %q, want none", r)
	}
}
