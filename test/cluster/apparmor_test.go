//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

// aaSpec is an evaluation cluster of the one lab hypervisor: enough for a
// gallium-managed domain with a tagged and an untagged NIC (the lab's
// 10.77.9.0/24 exists only on its virtual switch).
const aaSpec = `cluster:
  name: aa
  subnet: 10.77.9.0/24
  vip: 10.77.9.10
  evaluation: true
hypervisors:
  - name: hv1
    managementIP: 10.77.9.11/24
    adapters:
      - {name: eno3, speedMbps: 1000}
adapterGroups:
  - name: main
    infrastructure: true
    adapters: {hv1: [eno3]}
networks:
  - {name: lan, adapterGroup: main}
  - {name: guests, adapterGroup: main, vlan: 20}
`

// aaNetwork is a libvirt network gallium-net does not manage: its start
// runs the network.d hook, which must pass it through.
const aaNetwork = `<network><name>aa-net</name><forward mode='bridge'/><bridge name='br-aa'/></network>`

// plainXML is an unmanaged domain with one NIC on br-aa.
func plainXML(name, mac string) string {
	return strings.Replace(vmXML(name), "<devices/>",
		`<devices><interface type='bridge'><source bridge='br-aa'/><mac address='`+mac+`'/><model type='virtio'/><rom enabled='no'/></interface></devices>`, 1)
}

// TestAppArmorHook is issue 11: on a hypervisor as Debian installs it,
// AppArmor confines libvirtd with libvirt's own profile, which may execute
// /usr/sbin/* but nothing under /usr/libexec. The package of the previous
// layout (hook in /usr/libexec/gallium-net) makes every domain start fail
// there and says so in its postinst; this tree's package, installed over it
// while a VM runs, lets libvirt run the hook for unmanaged and managed
// domains, networks, reconnect after a libvirtd restart and hot-plug, with
// no denial logged for gallium-net. A fresh install under AppArmor is
// TestCluster's (three hypervisors, Debian 12 and 13, libvirtd enforced,
// no denial naming gallium-net before or after their reboots); purge and
// install again is the pkg tier's.
//
// It boots Debian 13 (libvirt 11.3, the current stable; whose libvirtd
// profile, like Debian 12's, allows /usr/sbin/* and nothing under
// /usr/libexec): so the install, upgrade and removal of the package are
// also shown on Debian 13. GALLIUM_AA_DEBIAN=12 boots Debian 12 instead.
func TestAppArmorHook(t *testing.T) {
	ctx := begin(t)
	suite := Trixie
	if os.Getenv("GALLIUM_AA_DEBIAN") == "12" {
		suite = Bookworm
	}
	img, root, deb := imageAndDeb(ctx, t, suite)
	legacy := legacyLayoutDeb(t, root)
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "halt.mb"), haltKernel(), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLab(ctx, t)
	hv, err := Boot(ctx, l, img, Config{
		Name: "hv1",
		NICs: issue7NICs("hv1"),
		Shares: []lab.Share{
			{Host: filepath.Dir(deb), Guest: "/dist", ReadOnly: true},
			{Host: filepath.Dir(legacy), Guest: "/legacy", ReadOnly: true},
			{Host: share, Guest: "/share", ReadOnly: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hv.Close() })
	a := &aaHost{hv: hv, ctx: ctx}
	t.Logf("hv1 (%s): libvirtd ready after %s; slowest units: %s", suite, hv.Ready.Round(100*time.Millisecond), slowestUnits(ctx, hv))

	t.Run("libvirtd-confined", func(t *testing.T) {
		if got := a.must(t, "cat /sys/module/apparmor/parameters/enabled"); strings.TrimSpace(got) != "Y" {
			t.Fatalf("AppArmor is not enabled in the lab kernel: %q", got)
		}
		if got := a.must(t, "cat /proc/$(pidof libvirtd)/attr/current"); strings.TrimSpace(got) != "libvirtd (enforce)" {
			t.Fatalf("libvirtd runs as %q, want 'libvirtd (enforce)' (its profile from libvirt-daemon-system):\n%s", got, a.try("systemctl status --no-pager apparmor.service"))
		}
	})

	t.Run("control-without-package", func(t *testing.T) {
		a.must(t, "ip link add br-aa type bridge && ip link set br-aa up")
		a.put(t, "/root/aa-net.xml", aaNetwork)
		a.put(t, "/root/plain1.xml", plainXML("plain1", "52:54:00:aa:00:01"))
		a.put(t, "/root/plain2.xml", plainXML("plain2", "52:54:00:aa:00:02"))
		a.virsh(t, "net-define /root/aa-net.xml")
		a.virsh(t, "net-start aa-net")
		a.virsh(t, "define /root/plain1.xml")
		a.virsh(t, "define /root/plain2.xml")
		a.virsh(t, "start plain2")
		a.virsh(t, "destroy plain2")
		// plain1 runs from here on, through the installs, the upgrade and
		// the libvirtd restarts.
		a.virsh(t, "start plain1")
	})
	if t.Failed() {
		t.FailNow()
	}
	plain1 := a.qemuPID(t, "plain1")

	t.Run("previous-layout-is-denied", func(t *testing.T) {
		out := a.must(t, "dpkg -i /legacy/"+filepath.Base(legacy)+" 2>&1")
		if !strings.Contains(out, "libvirt may NOT execute the gallium-net hook") {
			t.Errorf("the postinst did not warn that libvirt cannot run the hook:\n%s", out)
		}
		if got := strings.TrimSpace(a.must(t, "readlink /etc/libvirt/hooks/qemu.d/gallium-net")); got != "/usr/libexec/gallium-net/gallium-net-hook" {
			t.Fatalf("the previous layout's link leads to %q", got)
		}
		out, code := a.run("gallium-net hook status --exec-only 2>&1")
		if code != 1 || !strings.Contains(out, "libvirtd") || !strings.Contains(out, "may not execute") {
			t.Errorf("hook status --exec-only: exit %d, want 1 naming libvirtd:\n%s", code, out)
		}
		out, code = a.run("virsh -c qemu:///system start plain2 2>&1")
		if code == 0 || !strings.Contains(out, "Permission denied") {
			t.Errorf("with the hook in /usr/libexec an unmanaged domain started (exit %d):\n%s", code, out)
			a.try("virsh -c qemu:///system destroy plain2")
		}
		if den := a.try(denials + ` | grep gallium-net`); !strings.Contains(den, `name="/usr/libexec/gallium-net/gallium-net-hook"`) {
			t.Errorf("no AppArmor denial of the hook's exec logged:\n%s", den)
		}
	})

	t.Run("upgrade-while-a-vm-runs", func(t *testing.T) {
		out := a.must(t, "dpkg -i /dist/"+filepath.Base(deb)+" 2>&1")
		if strings.Contains(out, "NOT execute") {
			t.Errorf("the upgrade's postinst says libvirt cannot run the hook:\n%s", out)
		}
		for _, d := range []string{"qemu.d", "network.d"} {
			if got := strings.TrimSpace(a.must(t, "readlink /etc/libvirt/hooks/"+d+"/gallium-net")); got != "/usr/sbin/gallium-net-hook" {
				t.Errorf("%s link -> %q, want /usr/sbin/gallium-net-hook", d, got)
			}
		}
		if _, code := a.run("test -e /usr/libexec/gallium-net"); code == 0 {
			t.Errorf("/usr/libexec/gallium-net is left behind:\n%s", a.try("ls -la /usr/libexec/gallium-net"))
		}
		if pid := a.qemuPID(t, "plain1"); pid != plain1 {
			t.Errorf("plain1's QEMU changed during the upgrade: pid %d -> %d", plain1, pid)
		}
	})
	a.hookWorks(t, "after-upgrade", plain1)
}

// hookWorks runs the issue's checks with this tree's package installed:
// libvirt may execute the hook (gallium-net says so), an unmanaged domain
// starts and stops and a network starts through it, a managed domain's
// hook puts its taps on their VLANs, a hot-plugged NIC's tap waiter does
// the same, running VMs survive a libvirtd restart (the reconnect hook),
// and no denial naming gallium-net is logged meanwhile.
func (a *aaHost) hookWorks(t *testing.T, name string, plain1 int) {
	t.Run(name, func(t *testing.T) {
		since := strings.TrimSpace(a.must(t, "date +%s"))
		out, code := a.run("gallium-net hook status --exec-only 2>&1")
		if code != 0 || !regexp.MustCompile(`libvirtd\s+apparmor libvirtd \(enforce\)\s+yes`).MatchString(out) {
			t.Errorf("hook status --exec-only: exit %d, want libvirtd may execute it:\n%s", code, out)
		}
		a.virsh(t, "start plain2")
		a.virsh(t, "destroy plain2")
		a.virsh(t, "net-destroy aa-net")
		a.virsh(t, "net-start aa-net")

		// A managed domain: an evaluation spec on this hypervisor.
		a.must(t, "mkdir -p /etc/gallium-net")
		a.put(t, "/etc/gallium-net/cluster.yaml", aaSpec)
		a.must(t, "gallium-net host apply --yes --confirm-timeout 0 2>&1")
		a.must(t, "gallium-net spec push -f /etc/gallium-net/cluster.yaml 2>&1 && gallium-net network define --all 2>&1")
		a.put(t, "/root/web1.xml", vmXML("web1"))
		a.virsh(t, "define /root/web1.xml")
		a.must(t, "gallium-net nic add web1 --network guests 2>&1")
		logStart := strings.TrimSpace(a.must(t, "date +%s"))
		a.virsh(t, "start web1")
		a.waitLog(t, logStart, "start: domain NICs in line")
		a.wantTapVLANs(t, "web1", map[string]int{"guests": 20})

		a.hotPlugAndRestart(t, logStart, plain1)

		out, code = a.run("gallium-net hook status 2>&1")
		if code != 0 {
			t.Errorf("hook status: exit %d:\n%s", code, out)
		}
		if den := a.try(denials + ` | grep gallium-net | sed -n 's/.*audit(\([0-9]*\)\..*/\1 &/p' | awk -v s=` + since + ` '$1 >= s'`); den != "" {
			t.Errorf("AppArmor denials naming gallium-net:\n%s", den)
		}
		a.virsh(t, "destroy web1")
		a.virsh(t, "undefine web1")
		if t.Failed() {
			t.Logf("hook log:\n%s", a.try("journalctl -b -t gallium-net-hook -n 30 --no-pager"))
		}
	})
}

// hotPlugAndRestart: a hot-plugged NIC's tap is programmed by the hook's
// detached waiter, and running VMs survive a libvirtd restart (the
// reconnect hook).
func (a *aaHost) hotPlugAndRestart(t *testing.T, logStart string, plain1 int) {
	t.Helper()
	// Hot-plug: libvirt creates the port before the tap, so the hook's
	// detached waiter (the hook executing itself) programs it.
	a.must(t, "gallium-net nic add web1 --network lan 2>&1")
	a.waitLog(t, logStart, "hot-plug: tap programmed")
	a.wantTapVLANs(t, "web1", map[string]int{"guests": 20, "lan": 1})

	// A libvirtd restart runs the reconnect hook for every running
	// domain; a failing one would make libvirt stop the VM.
	web1 := a.qemuPID(t, "web1")
	a.must(t, `systemctl restart libvirtd.service; i=0; until virsh -c qemu:///system version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done`)
	if got := strings.TrimSpace(a.must(t, "cat /proc/$(pidof libvirtd)/attr/current")); got != "libvirtd (enforce)" {
		t.Errorf("restarted libvirtd runs as %q", got)
	}
	for dom, pid := range map[string]int{"plain1": plain1, "web1": web1} {
		if st := strings.TrimSpace(a.try("virsh -c qemu:///system domstate " + dom)); st != "running" {
			t.Errorf("%s after the libvirtd restart: %q, want running:\n%s", dom, st, a.try("journalctl -b -u libvirtd -n 5 --no-pager"))
		} else if got := a.qemuPID(t, dom); got != pid {
			t.Errorf("%s's QEMU changed across the libvirtd restart: pid %d -> %d", dom, pid, got)
		}
	}
	a.waitLog(t, logStart, "reconnect: domain NICs in line")
}

// aaHost runs the test's commands in the lab hypervisor.
type aaHost struct {
	hv  *Hypervisor
	ctx context.Context
}

func (a *aaHost) run(cmd string) (string, int) {
	out, code, err := a.hv.Run(a.ctx, cmd)
	if err != nil {
		return out + "\n" + err.Error(), -1
	}
	return out, code
}

// try runs cmd for information only.
func (a *aaHost) try(cmd string) string {
	out, _ := a.run(cmd)
	return out
}

func (a *aaHost) must(t *testing.T, cmd string) string {
	t.Helper()
	out, code := a.run(cmd)
	if code != 0 {
		t.Fatalf("%s: exit %d:\n%s", cmd, code, tailLines(out, 30))
	}
	return out
}

func (a *aaHost) virsh(t *testing.T, args string) string {
	t.Helper()
	return a.must(t, "virsh -c "+LibvirtURI+" "+args+" 2>&1")
}

func (a *aaHost) put(t *testing.T, path, data string) {
	t.Helper()
	if err := a.hv.Put(a.ctx, path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// qemuPID is the pid libvirt recorded for a running domain's QEMU.
func (a *aaHost) qemuPID(t *testing.T, dom string) int {
	t.Helper()
	out := a.must(t, "cat /run/libvirt/qemu/"+dom+".pid")
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%s's pid file: %q", dom, out)
	}
	return pid
}

// waitLog waits up to 60 s for the hook's journal (journald runs: the hook
// logs there) to show want since the Unix time from.
func (a *aaHost) waitLog(t *testing.T, from, want string) {
	t.Helper()
	cmd := fmt.Sprintf(`i=0; until journalctl -t gallium-net-hook --since @%s -o cat --no-pager | grep -q %q; do i=$((i+1)); [ $i -lt 300 ] || exit 1; sleep 0.2; done`, from, want)
	if _, code := a.run(cmd); code != 0 {
		t.Errorf("the hook never logged %q:\n%s", want, a.try("journalctl -t gallium-net-hook --since @"+from+" -n 20 --no-pager"))
	}
}

// wantTapVLANs checks that each NIC of dom (by network) has its tap on
// exactly the wanted VLAN, as PVID and untagged.
func (a *aaHost) wantTapVLANs(t *testing.T, dom string, want map[string]int) {
	t.Helper()
	rows, err := domiflist(a.ctx, a.hv, dom)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want) {
		t.Fatalf("%s has %d NICs, want %d: %+v", dom, len(rows), len(want), rows)
	}
	for _, r := range rows {
		vid, ok := want[r.Source]
		if !ok {
			t.Errorf("%s: NIC on unexpected network %q", dom, r.Source)
			continue
		}
		vlans, err := portVLANs(a.ctx, a.hv, r.Tap)
		if err != nil {
			t.Errorf("%s tap %s: %v", dom, r.Tap, err)
			continue
		}
		if len(vlans) != 1 || vlans[0].VLAN != vid || !strings.Contains(strings.Join(vlans[0].Flags, " "), "PVID") {
			t.Errorf("%s tap %s (network %s): VLANs %+v, want only %d as PVID untagged", dom, r.Tap, r.Source, vlans, vid)
		}
	}
}

// legacyLayoutDeb builds a package with the layout gallium-net had until
// issue 11 (the hook in /usr/libexec/gallium-net, no preinst) from this
// tree's binaries and packaging, versioned below every real build, so that
// the upgrade from it is tested without the old tree.
func legacyLayoutDeb(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	pkg := filepath.Join(dir, "packaging")
	if out, err := exec.Command("cp", "-a", filepath.Join(root, "packaging"), pkg).CombinedOutput(); err != nil {
		t.Fatalf("copy packaging: %v: %s", err, out)
	}
	cfg := filepath.Join(pkg, "nfpm.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(raw), "/usr/sbin/gallium-net-hook", "/usr/libexec/gallium-net/gallium-net-hook")
	var kept []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, "preinstall:") {
			kept = append(kept, line)
		}
	}
	s = strings.Join(kept, "\n")
	if !strings.Contains(s, "dst: /usr/libexec/gallium-net/gallium-net-hook") {
		t.Fatal("packaging/nfpm.yaml no longer installs /usr/sbin/gallium-net-hook: update legacyLayoutDeb")
	}
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist")
	cmd := exec.Command("go", "run", "./packaging/build", "-bin", "bin", "-out", out, "-packaging", pkg,
		"-version", "0.1.0~git20000101000000.legacy", "-formats", "deb")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the previous layout's package: %v: %s", err, b)
	}
	m, _ := filepath.Glob(filepath.Join(out, "gallium-net_*_amd64.deb"))
	if len(m) != 1 {
		t.Fatalf("previous layout's package: %v", m)
	}
	return m[0]
}
