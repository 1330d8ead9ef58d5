// Package testenv tells tests which tier they are in and what the machine
// offers, so that a test that cannot run here skips with a reason, and a
// test run that promised a tier (make test sets GALLIUM_STRICT=1; the kernel
// lab sets GALLIUM_LAB=1) fails instead of skipping silently.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing prerequisites must fail tests (make test).
func Strict() bool { return os.Getenv("GALLIUM_STRICT") == "1" }

// InLab reports whether the test runs inside the kernel lab VM.
func InLab() bool { return os.Getenv("GALLIUM_LAB") == "1" }

// NeedRoot skips (or, in strict mode, fails) a test that needs root, for
// example to create network namespaces.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Strict() || InLab() {
		t.Fatal("this test needs root (network namespaces); make test runs as root")
	}
	t.Skip("needs root (network namespaces): run as root or via make test")
}

// NeedKernel skips a test whose kernel feature (a module name such as
// "bonding", "8021q", or "vlan_filtering") this kernel lacks. Inside the
// kernel lab the feature must be there, so its absence fails the test; on
// the host it skips, because the lab tier runs the same test.
func NeedKernel(t testing.TB, feature string) {
	t.Helper()
	if HasKernel(feature) {
		return
	}
	if InLab() {
		t.Fatalf("kernel lab: kernel feature %s missing", feature)
	}
	t.Skipf("kernel has no %s; the kernel lab tier (make test-lab) runs this test", feature)
}

// HasKernel reports whether the running kernel offers feature.
func HasKernel(feature string) bool {
	switch feature {
	case "bonding":
		if _, err := os.Stat("/sys/class/net/bonding_masters"); err == nil {
			return true
		}
	case "8021q":
		if _, err := os.Stat("/proc/net/vlan"); err == nil {
			return true
		}
	case "vlan_filtering":
		// TODO(netsetup): probe by creating a filtering bridge in a throwaway
		// namespace; until then only the lab (a Debian kernel, which has
		// CONFIG_BRIDGE_VLAN_FILTERING=y) is assumed to have it.
		return InLab()
	}
	// A module that loads now counts too.
	if p, err := exec.LookPath("modprobe"); err == nil {
		return exec.Command(p, "-q", feature).Run() == nil
	}
	return false
}
