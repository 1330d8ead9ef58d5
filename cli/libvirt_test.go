package main

import (
	"strings"
	"testing"
)

// The libvirt commands on libvirt's test driver (no daemon): the CLI's
// flags, output and exit codes around vmnet.

// nic remove reads the MAC forms nic add --mac reads: a dash-separated MAC
// gets as far as the domain's NICs (test's NIC is not gallium-net's).
func TestNICRemoveDashMAC(t *testing.T) {
	_, errOut, code := run(t, "nic", "remove", "test", "52-54-00-12-34-56", "--connect", "test:///default")
	if code == 0 || !strings.Contains(errOut, "domain test has no gallium-net NIC 52:54:00:12:34:56") {
		t.Errorf("exit %d, stderr %q; want the MAC read and not found on the domain", code, errOut)
	}
}

func TestVMProfileShowTestDriver(t *testing.T) {
	out, errOut, code := run(t, "vm", "profile", "test", "-f", example, "--connect", "test:///default")
	if code != 0 || !strings.HasPrefix(out, "domain test: no hardware profile set: the cluster default ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = run(t, "vm", "profile", "nope", "-f", example, "--connect", "test:///default")
	if code == 0 || !strings.Contains(errOut, "domain nope does not exist on this host") {
		t.Errorf("unknown domain: exit %d, stderr %q", code, errOut)
	}
}
