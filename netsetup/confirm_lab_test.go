package netsetup_test

// The kernel-lab test of commit-confirm stays in netsetup's test binary,
// which the lab already boots a VM for (test/lab/packages.txt). It is in
// the external test package because netsetup/confirm builds on netsetup:
// netsetup's own tests cannot import it. export_test.go lends it the lab.

import (
	"testing"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm/confirmtest"
)

// TestMain lets the commit-confirm test run this test binary again as "the
// CLI" and as the detached rollback process (confirmtest).
func TestMain(m *testing.M) { confirmtest.Main(m) }

// Tier 3: an unconfirmed commit-confirm apply that builds bonds rolls back
// to the pre-apply host after the CLI is killed.
func TestLabCommitConfirmRollsBackBonds(t *testing.T) {
	netsetup.NewLab(t)
	k := netsetup.NewNetlink()
	before := netsetup.Observe(t, k)
	// The target of the "apply": the converged lab host, computed on a
	// simulated copy (the real one must not change before the CLI runs).
	f := netsetup.NewSimKernelFrom(before)
	hs := netsetup.LabDesired(t, netsetup.LabSpec())
	if _, err := netsetup.Converge(f, hs, netsetup.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	target, _ := f.Observe()
	target = target.Subset(hs.Adapters())
	start := time.Now()
	store, id, _ := confirmtest.RunUnconfirmedApply(t, target, 2*time.Second)
	obs := netsetup.Observe(t, k)
	if obs.Link("gb-infra") == nil {
		t.Fatal("the apply did not happen")
	}
	took := confirmtest.WaitRestored(t, k, before.Subset(hs.Adapters()), hs.Adapters(), start, 15*time.Second)
	t.Logf("bonds rolled back %s after the apply started (timeout 2s)", took.Round(time.Millisecond))
	confirmtest.WaitResult(t, store, id)
}
