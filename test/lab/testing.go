package lab

import (
	"context"
	"os"
	"sync"
	"testing"
)

// HostTestsEnabled reports whether host-side lab tests (tests that boot lab
// VMs) should run: GALLIUM_LAB_HOST=1, which test/lab/run.sh (the lab tier)
// sets.
func HostTestsEnabled() bool { return os.Getenv("GALLIUM_LAB_HOST") == "1" }

// NeedLab skips a host-side test that boots lab VMs unless the lab tier
// runs it (GALLIUM_LAB_HOST=1). When it does run, a lab that cannot boot is
// a failure, never a skip.
func NeedLab(t testing.TB) {
	t.Helper()
	if !HostTestsEnabled() {
		t.Skip("boots kernel-lab VMs: the lab tier runs it (test/lab/run.sh, make test-lab; or GALLIUM_LAB_HOST=1)")
	}
}

// BootT boots VMs in parallel for a test, fails the test if any does not
// boot, and closes them all when the test ends.
func BootT(t testing.TB, ctx context.Context, cfgs ...Config) []*VM {
	t.Helper()
	vms := make([]*VM, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			vms[i], errs[i] = Boot(ctx, cfgs[i])
		}(i)
	}
	wg.Wait()
	for _, vm := range vms {
		if vm != nil {
			t.Cleanup(func() { vm.Close() })
		}
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, vm := range vms {
		t.Logf("%s booted in %s", vm.Name, vm.BootTime.Round(1e6))
	}
	return vms
}
