package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/test/testenv"
)

func runHost(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"gallium-net", "host"}, args...))
	return out.String() + errOut.String(), err
}

func exampleSpec(name string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "examples", name)
}

func TestHostPicksTheHypervisor(t *testing.T) {
	spec := exampleSpec("cluster.yaml")
	_, err := runHost(t, "plan", "-f", spec, "--hypervisor", "hv9")
	if err == nil || !strings.Contains(err.Error(), "--hypervisor hv9: not in the cluster spec; use one of: hv1, hv2, hv3") {
		t.Errorf("unknown hypervisor: %v", err)
	}
	// This machine is none of hv1..hv3 and has none of their IPs.
	_, err = runHost(t, "status", "-f", spec)
	if err == nil || !strings.Contains(err.Error(), "cannot tell which hypervisor this host is: its name") || !strings.Contains(err.Error(), "hv1, hv2, hv3") || !strings.Contains(err.Error(), "--hypervisor NAME") {
		t.Errorf("no hypervisor: %v", err)
	}
}

func TestHostConfirmWithNothingPending(t *testing.T) {
	_, err := runHost(t, "confirm", "--state-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "nothing to confirm") {
		t.Errorf("got %v", err)
	}
	_, err = runHost(t, "rollback", "--state-dir", t.TempDir(), "--yes")
	if err == nil || !strings.Contains(err.Error(), "nothing to roll back") {
		t.Errorf("got %v", err)
	}
}

// hostNetns moves the test's thread into a fresh network namespace with
// the example's adapters eno1..eno4 as veths whose peers are ports of one
// plain bridge (a switch).
func hostNetns(t *testing.T) {
	testenv.EnterNetns(t)
	a := netlink.NewLinkAttrs()
	a.Name = "gc-sw"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: a}); err != nil {
		t.Fatal(err)
	}
	sw, _ := netlink.LinkByName("gc-sw")
	netlink.LinkSetUp(sw)
	for i := 1; i <= 4; i++ {
		a := netlink.NewLinkAttrs()
		a.Name = fmt.Sprintf("eno%d", i)
		peer := fmt.Sprintf("gc-p%d", i)
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: a, PeerName: peer}); err != nil {
			t.Fatal(err)
		}
		l, _ := netlink.LinkByName(a.Name)
		p, _ := netlink.LinkByName(peer)
		netlink.LinkSetMaster(p, sw)
		netlink.LinkSetUp(p)
		netlink.LinkSetUp(l)
	}
}

func TestHostVerifyTopologyCommand(t *testing.T) {
	hostNetns(t)
	spec := exampleSpec("cluster.yaml")
	out, err := runHost(t, "verify-topology", "-f", spec, "--hypervisor", "hv1", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		OK    bool `json:"ok"`
		Pairs []struct {
			Group, From, To string
			OK              bool
		} `json:"pairs"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.OK || len(res.Pairs) != 4 {
		t.Fatalf("json: %v %+v\n%s", err, res, out)
	}
	// Unplug eno4 from the switch.
	p, _ := netlink.LinkByName("gc-p4")
	netlink.LinkSetNoMaster(p)
	out, err = runHost(t, "verify-topology", "-f", spec, "--hypervisor", "hv1")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "vmgroup: eno3 -> eno4") {
		t.Fatalf("broken pair: %v", err)
	}
	for _, want := range []string{"GROUP", "infra    eno1  eno2  ok", "vmgroup  eno4  eno3  FAILED (no probe arrived)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// eno3's switch port goes down: the table names the adapter without
	// carrier instead of only saying that no probe arrived.
	p, _ = netlink.LinkByName("gc-p3")
	netlink.LinkSetDown(p)
	out, err = runHost(t, "verify-topology", "-f", spec, "--hypervisor", "hv1", "--settle", "200ms")
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("adapter without carrier: %v", err)
	}
	if want := "vmgroup  eno3  eno4  FAILED (eno3 without carrier)"; !strings.Contains(out, want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
}

func TestHostPlanAndStatusCommands(t *testing.T) {
	hostNetns(t)
	spec := exampleSpec("cluster.yaml")
	out, err := runHost(t, "status", "-f", spec, "--hypervisor", "hv1", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var st struct {
		Hypervisor string `json:"hypervisor"`
		Groups     []struct {
			Group       string `json:"group"`
			BondPresent bool   `json:"bondPresent"`
			Adapters    []struct {
				Name    string `json:"name"`
				Carrier bool   `json:"carrier"`
			} `json:"adapters"`
		} `json:"groups"`
		Converged bool `json:"converged"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Groups) != 2 || st.Groups[0].BondPresent || st.Converged || !st.Groups[0].Adapters[0].Carrier {
		t.Fatalf("status: %v %+v\n%s", err, st, out)
	}
	// The plan is printed on any kernel (issue 13 #5: nothing was printed
	// on one without bonding or VLAN filtering), with apply's refusal.
	// No sysfs for the namespace's veths: --skip-checks.
	for _, args := range [][]string{{"plan"}, {"apply", "--dry-run", "--skip-checks", "--state-dir", t.TempDir()}} {
		out, err = runHost(t, append(args, "-f", spec, "--hypervisor", "hv1")...)
		if !strings.Contains(out, "ip link add gb-infra mtu 1500 type bond mode active-backup miimon 100 primary eno1") {
			t.Errorf("%s: no plan printed: %v\n%s", args[0], err, out)
		}
		if testenv.HasKernel("vlan_filtering") && testenv.HasKernel("bonding") {
			if err != nil {
				t.Errorf("%s: %v\n%s", args[0], err, out)
			}
		} else if err == nil || !strings.Contains(err.Error(), "apply refuses this plan") {
			t.Errorf("%s on a kernel without bonding or VLAN filtering: want apply's refusal, got %v\n%s", args[0], err, out)
		}
	}
	if !testenv.HasKernel("vlan_filtering") || !testenv.HasKernel("bonding") {
		out, _ = runHost(t, "status", "-f", spec, "--hypervisor", "hv1")
		if !strings.Contains(out, "which apply cannot run: hypervisor hv1: the running kernel has no") {
			t.Errorf("status does not say why the pending steps cannot run:\n%s", out)
		}
	}
}

// host check --root reads a copy of a host's network configuration: the
// JSON names ifupdown's stanza for eno1 and the management IP, with file and
// line; the table says the same in words.
func TestHostCheckRoot(t *testing.T) {
	root := t.TempDir()
	ifaces := filepath.Join(root, "etc", "network")
	if err := os.MkdirAll(ifaces, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "source /etc/network/interfaces.d/*\n\nallow-hotplug eno1\niface eno1 inet static\n  address 192.168.1.101\n  netmask 255.255.255.0\n"
	if err := os.WriteFile(filepath.Join(ifaces, "interfaces"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// ifupdown "installed" in the tree: its claims are live.
	if err := os.MkdirAll(filepath.Join(root, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sbin", "ifup"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	out, _, _ := run(t, "host", "check", "-f", example, "--hypervisor", "hv1", "--root", root, "-o", "json")
	var got struct {
		HeldBy []struct {
			Object string
			Claims []struct {
				Manager, File, What string
				Line                int
			}
		}
		Findings []struct{ Severity, Path, Message string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var lines []string
	for _, h := range got.HeldBy {
		for _, c := range h.Claims {
			lines = append(lines, fmt.Sprintf("%s: %s %s:%d %s", h.Object, c.Manager, c.File, c.Line, c.What))
		}
	}
	want := []string{
		"adapter eno1: ifupdown /etc/network/interfaces:3 allow-hotplug eno1",
		"adapter eno1: ifupdown /etc/network/interfaces:4 iface eno1 inet static",
		"management IP 192.168.1.101: ifupdown /etc/network/interfaces:4 iface eno1 inet static",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("heldBy:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	warned := false
	for _, f := range got.Findings {
		warned = warned || (f.Path == "hypervisors[hv1].managementIP" && strings.Contains(f.Message, "ifupdown /etc/network/interfaces:4"))
	}
	if !warned {
		t.Errorf("no warning about the management IP held by ifupdown: %+v", got.Findings)
	}
	table, _, _ := run(t, "host", "check", "-f", example, "--hypervisor", "hv1", "--root", root)
	if !strings.Contains(table, "OS network configuration (under "+root+"):") || !strings.Contains(table, "iface eno1 inet static") {
		t.Errorf("table output:\n%s", table)
	}
	empty, _, _ := run(t, "host", "check", "-f", example, "--hypervisor", "hv1", "--root", t.TempDir())
	if !strings.Contains(empty, "no manager is configured to hold these adapters") {
		t.Errorf("empty root, table output:\n%s", empty)
	}
}

// host takeover --root edits the files of a copy of an installed host:
// --dry-run writes nothing, the takeover comments ifupdown's stanza out and
// writes networkd's drop-in, host check then finds nothing held, and a
// second takeover has nothing to write.
func TestHostTakeoverRoot(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"etc/network/interfaces":              "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nallow-hotplug eno1\niface eno1 inet static\n  address 192.168.1.101/24\n",
		"sbin/ifup":                           "",
		"etc/systemd/network/20-eno3.network": "[Match]\nName=eno3\n[Network]\nDHCP=yes\n",
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "",
	}
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"host", "takeover", "-f", example, "--hypervisor", "hv1", "--root", root}
	dry, errOut, code := run(t, append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s\n%s", code, errOut, dry)
	}
	for _, want := range []string{
		"# management IP 192.168.1.101 is held by ifupdown at /etc/network/interfaces:7 (iface eno1 inet static)",
		"# edit /etc/network/interfaces: ifupdown no longer brings up allow-hotplug eno1, iface eno1 inet static",
		"# create /etc/systemd/network/00-gallium-net.network: systemd-networkd leaves eno1",
		"# then: networkctl reload (if systemd-networkd.service runs)",
	} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/network/00-gallium-net.network")); err == nil {
		t.Fatal("--dry-run wrote the drop-in")
	}
	out, errOut, code := run(t, args...)
	if code != 0 || !strings.Contains(out, "wrote 2 file(s) under "+root) {
		t.Fatalf("takeover: exit %d: %s\n%s", code, errOut, out)
	}
	b, _ := os.ReadFile(filepath.Join(root, "etc/network/interfaces"))
	if !strings.Contains(string(b), "#gallium-net# iface eno1 inet static\n#gallium-net#   address 192.168.1.101/24\n") || !strings.Contains(string(b), "\nauto lo\n") {
		t.Errorf("interfaces after the takeover:\n%s", b)
	}
	check, _, _ := run(t, "host", "check", "-f", example, "--hypervisor", "hv1", "--root", root)
	if !strings.Contains(check, "no manager is configured to hold these adapters") {
		t.Errorf("host check after the takeover:\n%s", check)
	}
	again, errOut, code := run(t, args...)
	if code != 0 || !strings.Contains(again, "no OS network manager holds") || strings.Contains(again, "wrote") {
		t.Errorf("second takeover: exit %d: %s\n%s", code, errOut, again)
	}
}
