package main

import (
	"fmt"
	"os"
	"path/filepath"
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

// vm migrate-check on the source: the domain's XML goes to the destination
// over --via (here a script standing in for ssh), whose verdict is printed
// and decides the exit code.
func TestVMMigrateCheckSource(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The stand-in checks what ssh would get: the host, the remote command
	// and the domain XML on stdin.
	answer := func(json string) string {
		return script("ok-"+fmt.Sprint(len(json)), `[ "$1" = 192.168.1.102 ] || { echo "wrong host $1" >&2; exit 2; }
[ "$*" = "192.168.1.102 gallium-net vm migrate-check --incoming -o json" ] || { echo "wrong command: $*" >&2; exit 2; }
grep -q '<name>test</name>' || { echo "no domain XML on stdin" >&2; exit 2; }
cat <<'JSON'
`+json+`
JSON
`)
	}
	base := []string{"vm", "migrate-check", "test", "hv2", "-f", example, "--hypervisor", "hv1", "--connect", "test:///default"}
	cases := []struct {
		name, via string
		code      int
		out, err  string
	}{
		{"can move", answer(`{"hypervisor":"hv2","domain":"test","managed":true,"nics":[{"mac":"52:54:00:00:00:01","network":"prod","bridge":"gbr-vmgroup","vlan":100,"problems":[]}]}`),
			0, "domain test -> hypervisor hv2: can run every gallium-net NIC", ""},
		{"cannot move", answer(`{"hypervisor":"hv2","domain":"test","managed":true,"nics":[{"mac":"52:54:00:00:00:01","network":"prod","bridge":"gbr-vmgroup","vlan":100,"problems":["network prod is not ready on hypervisor hv2: VLAN 100 is not on uplink gb-vmgroup of bridge gbr-vmgroup; fix: run 'gallium-net host apply' on hv2"]}]}`),
			1, "VLAN 100 is not on uplink gb-vmgroup", "domain test cannot migrate to hypervisor hv2: fix the problem above there first"},
		{"another host answered", answer(`{"hypervisor":"hv3","domain":"test","managed":true,"nics":[]}`),
			1, "", "192.168.1.102 answered as hypervisor \"hv3\", not hv2"},
		{"ssh fails", script("fail", `echo "Permission denied (publickey)." >&2; exit 255`),
			1, "", "Permission denied (publickey).; fix: make sure 'ssh root@192.168.1.102' works"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := run(t, append(base, "--via", c.via+" {host}")...)
			if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", code, out, errOut, c.code, c.out, c.err)
			}
		})
	}
	for _, bad := range [][]string{{"vm", "migrate-check", "test", "hv9", "-f", example, "--hypervisor", "hv1"}, {"vm", "migrate-check", "test", "hv1", "-f", example, "--hypervisor", "hv1"}} {
		if _, errOut, code := run(t, bad...); code == 0 || !strings.Contains(errOut, "hv") {
			t.Errorf("%v: exit %d, stderr %q; want refused", bad, code, errOut)
		}
	}
}
