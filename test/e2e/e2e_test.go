//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
)

const (
	uri      = "qemu:///system"
	bridge   = "gbr-gte2e"
	flatNet  = "gte2e-flat"
	farNet   = "gte2e-far"
	foreign  = "gte2e-foreign"
	vm1      = "gte2e-vm1"
	vm2      = "gte2e-vm2"
	plainVM  = "gte2e-plain"
	etcdVM   = "gte2e-etcd"
	snapPath = "/var/lib/gallium-net/host-snapshot.json"
	hookLog  = "/var/log/gallium-net/hook.log"
	stateDir = "/run/gallium-net/hook/domains" // one record per domain
	hooksDir = "/etc/libvirt/hooks"
)

// The spec: hypervisor hv1 (this host) has group gte2e with the untagged
// network gte2e-flat; gte2e-far is on a group that only hv2 has. The host
// kernel has no VLAN filtering, so the networks here are untagged (tagged
// tap VLANs are asserted in the kernel lab).
const spec = `cluster:
  name: gte2e
  subnet: 10.99.0.0/24
  vip: 10.99.0.10
  evaluation: true
hypervisors:
  - name: hv1
    managementIP: 10.99.0.11/24
    adapters:
      - {name: gte2e-a1, speedMbps: 10000}
  - name: hv2
    managementIP: 10.99.0.12/24
    adapters:
      - {name: gte2e-a1, speedMbps: 10000}
      - {name: gte2e-a2, speedMbps: 10000}
adapterGroups:
  - name: gte2e
    infrastructure: true
    adapters: {hv1: [gte2e-a1], hv2: [gte2e-a1]}
  - name: gte2f
    adapters: {hv2: [gte2e-a2]}
networks:
  - {name: gte2e-flat, adapterGroup: gte2e}
  - {name: gte2e-far, adapterGroup: gte2f}
hardwareProfiles:
  - {name: modern, nicModel: virtio}
  - {name: legacy, nicModel: e1000}
`

// A domain of type qemu with no disk starts in about half a second here.
// ACPI makes pci.0 hot-pluggable (nic add on a running domain).
func domainXML(name, devices string) string {
	return `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>64</memory>` +
		`<os><type arch='x86_64'>hvm</type></os><features><acpi/></features><devices>` + devices + `</devices></domain>`
}

type env struct {
	t        *testing.T
	bin      string
	specPath string
	// configPath is gallium-net's host config for this run: a private
	// cluster store, so the test never touches the machine's own state.
	configPath string
}

// in is e reporting to t (a subtest), so a failed command fails that
// subtest and not its parent.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func (e *env) run(name string, args ...string) (string, string, error) {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	if e.configPath != "" {
		cmd.Env = append(os.Environ(), "GALLIUM_NET_CONFIG="+e.configPath)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (e *env) must(name string, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(name, args...)
	if err != nil {
		e.t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (e *env) virsh(args ...string) (string, string, error) {
	return e.run("virsh", append([]string{"-c", uri}, args...)...)
}

func (e *env) mustVirsh(args ...string) string {
	e.t.Helper()
	return e.must("virsh", append([]string{"-c", uri}, args...)...)
}

func (e *env) gn(args ...string) (string, string, error) {
	return e.run(filepath.Join(e.bin, "gallium-net"), args...)
}

func (e *env) mustGN(args ...string) string {
	e.t.Helper()
	return e.must(filepath.Join(e.bin, "gallium-net"), args...)
}

// specArgs are the flags of a spec-reading command on this host (hv1).
func (e *env) specArgs() []string { return []string{"-f", e.specPath, "--hypervisor", "hv1"} }

func (e *env) defineDomain(name, devices string) {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), name+".xml")
	if err := os.WriteFile(p, []byte(domainXML(name, devices)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.mustVirsh("define", p)
}

// liveNICs returns tap -> MAC of a running domain (virsh domiflist).
func (e *env) liveNICs(dom string) map[string]string {
	e.t.Helper()
	out := e.mustVirsh("domiflist", dom)
	taps := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && strings.HasPrefix(f[0], "vnet") {
			taps[f[0]] = f[4]
		}
	}
	return taps
}

func master(tap string) string {
	l, err := os.Readlink("/sys/class/net/" + tap + "/master")
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// logSince returns what the hook logged after offset.
func logSince(off int64) string {
	data, err := os.ReadFile(hookLog)
	if err != nil || int64(len(data)) < off {
		return ""
	}
	return string(data[off:])
}

func logSize() int64 {
	st, err := os.Stat(hookLog)
	if err != nil {
		return 0
	}
	return st.Size()
}

type nicRecord struct {
	MAC, Tap, Bridge string
}

type hookRecord struct {
	Name    string      `json:"name"`
	Running bool        `json:"running"`
	NICs    []nicRecord `json:"nics"`
}

func (st hookState) byName(name string) *hookRecord {
	for _, d := range st.Domains {
		if d.Name == name {
			return &d
		}
	}
	return nil
}

// asPreviousLayout replaces the hook's records by the single nics.json of
// the previous version (format 1, every domain in one file) holding st. The
// hook moves it aside as nics.json.v1 when it converts it; the test's
// cleanup removes that too.
func asPreviousLayout(t *testing.T, st hookState) {
	t.Helper()
	dir := filepath.Dir(stateDir)
	backup(t, filepath.Join(dir, "nics.json"))
	backup(t, filepath.Join(dir, "nics.json.v1"))
	domains := map[string]any{}
	for uuid, d := range st.Domains {
		nics := []map[string]string{}
		for _, n := range d.NICs {
			nics = append(nics, map[string]string{"mac": n.MAC, "tap": n.Tap, "bridge": n.Bridge, "network": flatNet})
		}
		domains[uuid] = map[string]any{"uuid": uuid, "name": d.Name, "running": d.Running, "nics": nics}
	}
	data, err := json.Marshal(map[string]any{"version": 1, "domains": domains})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"domains", "locks", "macs"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "nics.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type hookState struct {
	Domains map[string]hookRecord
}

// readState reads the hook's records: one file per domain, named by UUID.
func readState(t *testing.T) hookState {
	t.Helper()
	st := hookState{Domains: map[string]hookRecord{}}
	paths, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // removed by a hook since the listing
		}
		var r hookRecord
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("hook record %s is not JSON: %v", p, err)
		}
		st.Domains[strings.TrimSuffix(filepath.Base(p), ".json")] = r
	}
	return st
}

// stateBytes is every hook record's name and content, to tell whether a
// hook changed any.
func stateBytes() []byte {
	var b bytes.Buffer
	paths, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s\n%s\n", p, data)
	}
	return b.Bytes()
}

func (st hookState) domain(name string) (running bool, nics int, found bool) {
	for _, d := range st.Domains {
		if d.Name == name {
			return d.Running, len(d.NICs), true
		}
	}
	return false, 0, false
}

// backup keeps path's content (or its absence) and restores it at cleanup.
func backup(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	existed := err == nil
	t.Cleanup(func() {
		if existed {
			_ = os.WriteFile(path, data, 0o600)
		} else {
			_ = os.Remove(path)
		}
	})
}

func backupLink(t *testing.T, path string) {
	target, err := os.Readlink(path)
	t.Cleanup(func() {
		_ = os.Remove(path)
		if err == nil {
			_ = os.Symlink(target, path)
		}
	})
}

func cleanupAll(e *env) {
	for _, d := range []string{vm1, vm2, plainVM, etcdVM} {
		_, _, _ = e.virsh("destroy", d)
		_, _, _ = e.virsh("undefine", d)
	}
	for _, n := range []string{flatNet, farNet, foreign} {
		_, _, _ = e.virsh("net-destroy", n)
		_, _, _ = e.virsh("net-undefine", n)
	}
	_, _, _ = e.run("ip", "link", "del", bridge)
	_, _, _ = e.run("ip", "link", "del", "gte2e-fbr")
}

func TestEndToEnd(t *testing.T) {
	bin := os.Getenv("GALLIUM_E2E_BIN")
	if bin == "" {
		t.Fatal("GALLIUM_E2E_BIN is not set: run test/e2e/run.sh")
	}
	tmp := t.TempDir()
	e := &env{t: t, bin: bin, specPath: filepath.Join(tmp, "cluster.yaml"), configPath: filepath.Join(tmp, "config.yaml")}
	if err := os.WriteFile(e.specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.configPath, []byte("store:\n  backend: bolt\n  path: "+filepath.Join(tmp, "state.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cleanupAll(e)
	t.Cleanup(func() { cleanupAll(e) })
	backup(t, snapPath)
	backupLink(t, filepath.Join(hooksDir, "qemu.d", "gallium-net"))
	backupLink(t, filepath.Join(hooksDir, "network.d", "gallium-net"))
	// The bridge host apply would create; plain, as this kernel allows.
	e.must("ip", "link", "add", bridge, "type", "bridge")
	e.must("ip", "link", "set", bridge, "up")

	// A network gallium-net does not own, which it must never touch.
	e.must("ip", "link", "add", "gte2e-fbr", "type", "bridge")
	foreignXML := filepath.Join(t.TempDir(), "foreign.xml")
	_ = os.WriteFile(foreignXML, []byte(`<network><name>`+foreign+`</name><forward mode='bridge'/><bridge name='gte2e-fbr'/></network>`), 0o644)
	e.mustVirsh("net-define", foreignXML)
	foreignBefore := e.mustVirsh("net-dumpxml", "--inactive", foreign)

	t.Run("hook install and status", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		out := e.mustGN("hook", "install", "--hook-binary", filepath.Join(bin, "gallium-net-hook"))
		if !strings.Contains(out, "SIGHUP") {
			t.Errorf("hook install did not reload the daemon:\n%s", out)
		}
		// libvirtd reloads asynchronously; give it a moment before starting
		// domains that need the hook.
		time.Sleep(500 * time.Millisecond)
		out = e.mustGN("hook", "status", "-o", "json")
		var st struct {
			OK bool `json:"ok"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || !st.OK {
			t.Fatalf("hook status: %v\n%s", err, out)
		}
	})

	t.Run("network define is idempotent and leaves foreign networks alone", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		out := e.mustGN(append([]string{"network", "define", "--all", "-o", "json"}, e.specArgs()...)...)
		if !strings.Contains(out, `"action": "defined"`) {
			t.Errorf("first define:\n%s", out)
		}
		out = e.mustGN(append([]string{"network", "define", "--all", "-o", "json"}, e.specArgs()...)...)
		if !strings.Contains(out, `"action": "unchanged"`) {
			t.Errorf("second define changed something:\n%s", out)
		}
		info := e.mustVirsh("net-info", flatNet)
		for _, want := range []string{"Active:         yes", "Autostart:      yes", "Bridge:         " + bridge} {
			if !strings.Contains(info, want) {
				t.Errorf("net-info %s lacks %q:\n%s", flatNet, want, info)
			}
		}
		if _, _, err := e.virsh("net-info", farNet); err == nil {
			t.Errorf("%s (not on hv1) was defined here", farNet)
		}
		if after := e.mustVirsh("net-dumpxml", "--inactive", foreign); after != foreignBefore {
			t.Errorf("foreign network changed:\n%s\n->\n%s", foreignBefore, after)
		}
		if _, err := os.Stat(snapPath); err != nil {
			t.Errorf("no host snapshot for the hook: %v", err)
		}
		// Drift: the network moved to another bridge behind our back.
		drifted := filepath.Join(t.TempDir(), "drift.xml")
		x := strings.Replace(e.mustVirsh("net-dumpxml", "--inactive", flatNet), bridge, "gbr-gte2x", 1)
		_ = os.WriteFile(drifted, []byte(x), 0o644)
		e.mustVirsh("net-define", drifted)
		out = e.mustGN(append([]string{"network", "define", flatNet}, e.specArgs()...)...)
		if !strings.Contains(out, "updated") {
			t.Errorf("drifted network not updated:\n%s", out)
		}
		if x := e.mustVirsh("net-dumpxml", "--inactive", flatNet); !strings.Contains(x, bridge) {
			t.Errorf("network still drifted:\n%s", x)
		}
	})

	t.Run("spec pushed to the cluster store", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		e.mustGN(append([]string{"spec", "push"}, e.specArgs()...)...)
	})

	t.Run("managed domain starts with its taps on the bridge", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		e.defineDomain(vm1, "")
		out := e.mustGN(append([]string{"nic", "add", vm1, "--network", flatNet}, e.specArgs()...)...)
		if !strings.Contains(out, "cluster default profile modern") {
			t.Errorf("nic add without a profile did not say it used the default:\n%s", out)
		}
		out = e.mustGN(append([]string{"nic", "add", vm1, "--network", flatNet, "--profile", "legacy", "--mac", "52:54:00:e2:e0:02"}, e.specArgs()...)...)
		if !strings.Contains(out, "model e1000 from profile legacy") {
			t.Errorf("nic add --profile legacy:\n%s", out)
		}
		// Both MACs are in the cluster ledger, so no other hypervisor can
		// be handed them; the claimed one keeps the operator's MAC.
		ledger := e.mustGN("state", "nics", "-o", "json")
		var nics []struct {
			MAC, Network, Domain string
		}
		if err := json.Unmarshal([]byte(ledger), &nics); err != nil {
			t.Fatalf("state nics: %v\n%s", err, ledger)
		}
		if len(nics) != 2 || !strings.Contains(ledger, "52:54:00:e2:e0:02") {
			t.Errorf("want the 2 NICs of %s in the ledger, got:\n%s", vm1, ledger)
		}
		for _, n := range nics {
			if n.Domain != vm1 || n.Network != flatNet {
				t.Errorf("ledger record %+v: want domain %s on %s", n, vm1, flatNet)
			}
		}
		off := logSize()
		start := time.Now()
		e.mustVirsh("start", vm1)
		t.Logf("virsh start %s with the hook: %s", vm1, time.Since(start))
		taps := e.liveNICs(vm1)
		if len(taps) != 2 {
			t.Fatalf("want 2 NICs live, got %v", taps)
		}
		for tap := range taps {
			if m := master(tap); m != bridge {
				t.Errorf("tap %s is on %q, want %s", tap, m, bridge)
			}
		}
		log := logSince(off)
		for _, want := range []string{"prepare: networks ready", "start: domain NICs in line", "domain=" + vm1} {
			if !strings.Contains(log, want) {
				t.Errorf("hook log lacks %q:\n%s", want, log)
			}
		}
		if running, nics, ok := readState(t).domain(vm1); !ok || !running || nics != 2 {
			t.Errorf("hook records for %s: running=%v nics=%d found=%v", vm1, running, nics, ok)
		}
		out = e.mustGN("nic", "list", vm1, "-o", "json")
		var rows []struct{ MAC, Network, Model, State, Tap string }
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
			t.Fatalf("nic list: %v\n%s", err, out)
		}
		for _, r := range rows {
			if r.State != "running" || r.Tap == "" || r.Network != flatNet {
				t.Errorf("nic list row %+v", r)
			}
		}
	})

	t.Run("unmanaged domain starts and stops untouched", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		e.defineDomain(plainVM, `<interface type='bridge'><source bridge='`+bridge+`'/><mac address='52:54:00:e2:e0:99'/></interface>`)
		off := logSize()
		before := stateBytes()
		start := time.Now()
		e.mustVirsh("start", plainVM)
		t.Logf("virsh start %s (unmanaged) with the hook: %s", plainVM, time.Since(start))
		e.mustVirsh("destroy", plainVM)
		if log := logSince(off); strings.Contains(log, plainVM) {
			t.Errorf("the hook acted on the unmanaged domain:\n%s", log)
		}
		if after := stateBytes(); !bytes.Equal(before, after) {
			t.Errorf("hook records changed for an unmanaged domain:\n%s\n->\n%s", before, after)
		}
	})

	t.Run("a NIC on a network missing here refuses the start, naming the fix", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		e.defineDomain(vm2, "")
		e.mustGN(append([]string{"nic", "add", vm2, "--network", farNet}, e.specArgs()...)...)
		_, errOut, err := e.virsh("start", vm2)
		if err == nil {
			t.Fatalf("%s started with a NIC on %s, which hv1 lacks", vm2, farNet)
		}
		for _, want := range []string{farNet, "does not exist on hypervisor hv1", "gallium-net network define " + farNet} {
			if !strings.Contains(errOut, want) {
				t.Errorf("virsh start error lacks %q:\n%s", want, errOut)
			}
		}
	})

	t.Run("hot-plugged NIC gets its tap on the bridge; nic sync and remove", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		coldMACs := map[string]bool{}
		for _, mac := range e.liveNICs(vm1) {
			coldMACs[mac] = true
		}
		out := e.mustGN(append([]string{"nic", "add", vm1, "--network", flatNet}, e.specArgs()...)...)
		if !strings.Contains(out, "live: tap") {
			t.Errorf("nic add on a running domain did not plug it live:\n%s", out)
		}
		taps := e.liveNICs(vm1)
		if len(taps) != 3 {
			t.Fatalf("want 3 NICs live after hot-plug, got %v", taps)
		}
		var someTap, hotMAC, hotTap string
		for tap, mac := range taps {
			if m := master(tap); m != bridge {
				t.Errorf("tap %s is on %q, want %s", tap, m, bridge)
			}
			someTap = tap
			if !coldMACs[mac] {
				hotMAC, hotTap = mac, tap
			}
		}
		if hotMAC == "" {
			t.Fatalf("no new MAC among the live NICs %v (before: %v)", taps, coldMACs)
		}
		// The hook's detached hot-plug waiter may still be about to program
		// the new tap (it is slow under load); let it finish, or it would
		// undo the sabotage below before nic sync sees it.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, _, err := e.run("pgrep", "-f", "__await-tap "+hotMAC); err != nil {
				break
			}
		}
		// The waiter recorded the tap: a network update or a reconnect
		// re-asserts only recorded taps.
		if rec := readState(t).byName(vm1); rec == nil || !slices.Contains(rec.NICs, nicRecord{MAC: hotMAC, Tap: hotTap, Bridge: bridge}) {
			t.Errorf("hook record of %s after the hot-plug lacks %s on tap %s: %+v\nhook log:\n%s", vm1, hotMAC, hotTap, rec, logSince(0))
		}
		// Something took a tap off its bridge: nic sync puts it back.
		e.must("ip", "link", "set", someTap, "nomaster")
		out = e.mustGN("nic", "sync", vm1, "-f", e.specPath)
		if !strings.Contains(out, "master "+bridge) {
			t.Errorf("nic sync did not report re-enslaving %s:\n%s", someTap, out)
		}
		if m := master(someTap); m != bridge {
			t.Errorf("after nic sync tap %s is on %q", someTap, m)
		}
		out = e.mustGN("nic", "sync", "--all", "-f", e.specPath)
		if strings.Contains(out, "master") {
			t.Errorf("second nic sync still changed taps:\n%s", out)
		}
		// A guest without an OS never acknowledges an ACPI unplug, so the
		// live device stays; the persistent definition and the metadata lose
		// the NIC at once.
		e.mustGN("nic", "remove", vm1, "52:54:00:e2:e0:02")
		if x := e.mustVirsh("dumpxml", "--inactive", vm1); strings.Contains(x, "52:54:00:e2:e0:02") {
			t.Errorf("NIC still in the persistent definition after nic remove")
		}
		if out := e.mustGN("nic", "list", vm1); strings.Contains(out, "52:54:00:e2:e0:02") {
			t.Errorf("nic list still shows the removed NIC:\n%s", out)
		}
	})

	t.Run("libvirtd restart: managed domains keep running, taps right", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		pid := strings.TrimSpace(e.must("pgrep", "-f", "qemu.*guest="+vm1))
		// The records as a hook of the previous version left them (one
		// nics.json) while vm1 runs, as after a package upgrade: reconnect
		// converts them and keeps vm1's NICs.
		before := readState(t)
		beforeVM1 := before.byName(vm1)
		if beforeVM1 == nil {
			t.Fatalf("no hook record of %s before the restart", vm1)
		}
		asPreviousLayout(t, before)
		off := logSize()
		e.must("pkill", "-TERM", "-x", "libvirtd")
		for i := 0; i < 100; i++ {
			if _, _, err := e.run("pgrep", "-x", "libvirtd"); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.must("bash", "../setup/libvirtd.sh")
		if st := strings.TrimSpace(e.mustVirsh("domstate", vm1)); st != "running" {
			t.Fatalf("%s is %s after the libvirtd restart", vm1, st)
		}
		if now := strings.TrimSpace(e.must("pgrep", "-f", "qemu.*guest="+vm1)); now != pid {
			t.Errorf("QEMU of %s changed pid %s -> %s", vm1, pid, now)
		}
		for tap := range e.liveNICs(vm1) {
			if m := master(tap); m != bridge {
				t.Errorf("after restart tap %s is on %q", tap, m)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logSince(off), "reconnect: domain NICs in line") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if log := logSince(off); !strings.Contains(log, "reconnect: domain NICs in line") {
			t.Errorf("no reconnect in the hook log:\n%s", log)
		}
		if after := readState(t).byName(vm1); after == nil || !after.Running || !slices.EqualFunc(after.NICs, beforeVM1.NICs, func(a, b nicRecord) bool { return a == b }) {
			t.Errorf("hook record of %s after the upgrade and restart: %+v, want %+v", vm1, after, beforeVM1)
		}
	})

	t.Run("stopping the domain clears the hook records", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		e.mustVirsh("destroy", vm1)
		if _, _, ok := readState(t).domain(vm1); ok {
			t.Errorf("records of %s survived its stop", vm1)
		}
	})

	t.Run("with etcd as the cluster store, a VM starts while etcd is down", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		// The cluster store of a multi-hypervisor cluster is etcd; the hook
		// reads only the host snapshot, so losing etcd must not stop VMs.
		cluster := etcdtest.Start(t, 1)
		etcdConfig := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(etcdConfig, []byte("store:\n  backend: etcd\n  etcd:\n    dialTimeout: 2s\n    endpoints: ["+strings.Join(cluster.Endpoints, ", ")+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.configPath = etcdConfig // this subtest's copy only
		e.mustGN(append([]string{"spec", "push"}, e.specArgs()...)...)
		e.defineDomain(etcdVM, "")
		e.mustGN(append([]string{"nic", "add", etcdVM, "--network", flatNet}, e.specArgs()...)...)
		ledger := e.mustGN("state", "nics", "-o", "json")
		if !strings.Contains(ledger, etcdVM) {
			t.Fatalf("NIC of %s not in the etcd ledger:\n%s", etcdVM, ledger)
		}
		cluster.Stop()
		if _, _, err := e.gn("state", "nics"); err == nil {
			t.Fatalf("state nics still answered with etcd stopped: the test is not testing an outage")
		}
		e.mustVirsh("start", etcdVM)
		taps := e.liveNICs(etcdVM)
		if len(taps) != 1 {
			t.Fatalf("want 1 NIC live on %s, got %v", etcdVM, taps)
		}
		for tap := range taps {
			if m := master(tap); m != bridge {
				t.Errorf("tap %s is on %q, want %s", tap, m, bridge)
			}
		}
		e.mustVirsh("destroy", etcdVM)
	})

	t.Run("virsh start time with and without the hook", func(t *testing.T) {
		e := e.in(t) // failures belong to the subtest
		// Median of 7: other work on the machine only ever adds time.
		measure := func() time.Duration {
			const n = 7
			var d []time.Duration
			for range n {
				start := time.Now()
				e.mustVirsh("start", vm1)
				d = append(d, time.Since(start))
				e.mustVirsh("destroy", vm1)
			}
			slices.Sort(d)
			return d[n/2]
		}
		with := measure()
		for _, d := range []string{"qemu.d", "network.d"} {
			_ = os.Remove(filepath.Join(hooksDir, d, "gallium-net"))
		}
		e.must("bash", "../setup/libvirtd.sh", "reload")
		time.Sleep(500 * time.Millisecond)
		without := measure()
		t.Logf("virsh start of %s (2 NICs), median of 7: with hook %s, without %s", vm1, with, without)
		fmt.Printf("FIGURE virsh-start-with-hook=%s without-hook=%s\n", with, without)
		e.mustGN("hook", "install", "--hook-binary", filepath.Join(bin, "gallium-net-hook"))
	})
}
