package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// fakeKernel is a Kernel over a map of links; it records writes.
type fakeKernel struct {
	links  map[string]*tap.LinkState
	writes []string
	fail   bool
}

func newFakeKernel() *fakeKernel {
	k := &fakeKernel{links: map[string]*tap.LinkState{}}
	k.links["gbr-vm"] = &tap.LinkState{Name: "gbr-vm", Bridge: true, Up: true, MTU: 1500}
	for i := range 4 {
		n := fmt.Sprintf("vnet%d", i)
		k.links[n] = &tap.LinkState{Name: n, MTU: 1500, MAC: tap.MAC(fmt.Sprintf("52:54:00:00:00:0%d", i+1))}
	}
	return k
}

func (k *fakeKernel) Link(name string, _ bool) (tap.LinkState, error) {
	if l, ok := k.links[name]; ok {
		return *l, nil
	}
	return tap.LinkState{}, fmt.Errorf("%s: %w", name, tap.ErrNotFound)
}

func (k *fakeKernel) ByMAC(mac net.HardwareAddr) (string, error) {
	for n, l := range k.links {
		if bytes.Equal(l.MAC, mac) {
			return n, nil
		}
	}
	return "", nil
}

func (k *fakeKernel) write(s string) error {
	if k.fail {
		return fmt.Errorf("injected kernel failure")
	}
	k.writes = append(k.writes, s)
	return nil
}

func (k *fakeKernel) SetMaster(link, bridge string) error {
	if err := k.write("master " + link + " " + bridge); err != nil {
		return err
	}
	k.links[link].Master = bridge
	return nil
}

func (k *fakeKernel) SetMTU(link string, mtu int) error {
	if err := k.write(fmt.Sprintf("mtu %s %d", link, mtu)); err != nil {
		return err
	}
	k.links[link].MTU = mtu
	return nil
}

func (k *fakeKernel) VlanAdd(link string, v tap.VLAN) error {
	return k.write(fmt.Sprintf("vlan add %s %d", link, v.VID))
}

func (k *fakeKernel) VlanDel(link string, vid int) error {
	return k.write(fmt.Sprintf("vlan del %s %d", link, vid))
}

// testEnv is a hook environment in a temporary directory with a snapshot
// of hypervisor hv1 holding the untagged network "flat" on gbr-vm.
func testEnv(t testing.TB, k tap.Kernel) env {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.json")
	writeTestSnapshot(t, path)
	return env{StateDir: filepath.Join(dir, "state"), SnapshotPath: path, LogPath: filepath.Join(dir, "hook.log"), Kernel: k, LockTimeout: 5 * time.Second}
}

func writeTestSnapshot(t testing.TB, path string) {
	snap := &snapshot.Host{
		Version: snapshot.Version, Cluster: "lab", Hypervisor: "hv1", Generated: time.Now(),
		Networks: map[string]snapshot.Network{
			"flat":  {Group: "vm", Bridge: "gbr-vm", Bond: "gb-vm", MTU: 1500},
			"jumbo": {Group: "vm", Bridge: "gbr-vm", Bond: "gb-vm", MTU: 9000},
		},
	}
	if err := snapshot.Write(path, snap); err != nil {
		t.Fatal(err)
	}
}

const ns = `xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1"`

// domainXML builds a domain with n NICs (vnet0.. on network net); managed
// ones are listed in gallium-net metadata.
func domainXML(name, uuid string, managed bool, n int, net string) string {
	var meta, ifaces strings.Builder
	for i := range n {
		mac := fmt.Sprintf("52:54:00:00:00:0%d", i+1)
		fmt.Fprintf(&meta, `<gallium:nic mac="%s" network="%s"/>`, mac, net)
		fmt.Fprintf(&ifaces, `<interface type="network"><mac address="%s"/><source network="%s" bridge="gbr-vm"/><target dev="vnet%d"/><model type="virtio"/></interface>`, mac, net, i)
	}
	m := ""
	if managed {
		m = `<metadata><gallium:net ` + ns + `><gallium:profile>modern</gallium:profile>` + meta.String() + `</gallium:net></metadata>`
	}
	return `<domain type="qemu"><name>` + name + `</name><uuid>` + uuid + `</uuid>` + m + `<devices>` + ifaces.String() + `</devices></domain>`
}

func runHook(e env, dir, object, op, subop, stdin string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run([]string{"/etc/libvirt/hooks/" + dir + "/gallium-net", object, op, subop, "-"}, strings.NewReader(stdin), &out, &errb, e)
	return code, out.String(), errb.String()
}

const (
	uuid1 = "11111111-1111-1111-1111-111111111111"
	uuid2 = "22222222-2222-2222-2222-222222222222"
)

func TestQemuHook(t *testing.T) {
	tests := []struct {
		name       string
		op, subop  string
		stdin      string
		kernelFail bool
		wantCode   int
		wantStdout bool
		stderrHas  []string
		writes     int // kernel writes
	}{
		{name: "unmanaged start passes through", op: "start", subop: "begin", stdin: domainXML("plain", uuid1, false, 2, "flat")},
		{name: "unknown op is not even read", op: "frobnicate", subop: "begin", stdin: "<<<garbage"},
		{name: "attach is ignored", op: "attach", subop: "begin", stdin: "<<<garbage"},
		{name: "prepare managed, networks ready", op: "prepare", subop: "begin", stdin: domainXML("vm1", uuid1, true, 2, "flat")},
		{name: "prepare with a network missing on this host", op: "prepare", subop: "begin", stdin: domainXML("vm1", uuid1, true, 1, "prod"), wantCode: 1,
			stderrHas: []string{"cannot start domain vm1", "NIC 52:54:00:00:00:01", "network prod does not exist on hypervisor hv1", "gallium-net network define prod"}},
		{name: "start programs every tap", op: "start", subop: "begin", stdin: domainXML("vm1", uuid1, true, 4, "flat"), writes: 4},
		{name: "start on jumbo network sets MTU", op: "start", subop: "begin", stdin: domainXML("vm1", uuid1, true, 1, "jumbo"), writes: 2},
		{name: "start fails when the kernel refuses", op: "start", subop: "begin", stdin: domainXML("vm1", uuid1, true, 1, "flat"), kernelFail: true, wantCode: 1, stderrHas: []string{"cannot start domain vm1", "injected kernel failure"}},
		{name: "reconnect never fails, even when the kernel refuses", op: "reconnect", subop: "begin", stdin: domainXML("vm1", uuid1, true, 1, "flat"), kernelFail: true, stderrHas: []string{"reconnect vm1"}},
		{name: "reconnect with garbage exits 0", op: "reconnect", subop: "begin", stdin: "<domain><name>x</name", stderrHas: []string{"cannot read the domain XML"}},
		{name: "reconnect with oversized input exits 0", op: "reconnect", subop: "begin", stdin: strings.Repeat(" ", maxStdin+1), stderrHas: []string{"larger than"}},
		{name: "prepare with oversized input fails clearly", op: "prepare", subop: "begin", stdin: strings.Repeat(" ", maxStdin+1), wantCode: 1, stderrHas: []string{"larger than"}},
		{name: "prepare with malformed XML fails clearly", op: "prepare", subop: "begin", stdin: "<domain><name>x</name", wantCode: 1, stderrHas: []string{"prepare domain vm1", "malformed"}},
		{name: "migrate unchanged prints nothing", op: "migrate", subop: "begin", stdin: domainXML("vm1", uuid1, true, 2, "flat")},
		{name: "migrate to a host without the network fails", op: "migrate", subop: "begin", stdin: domainXML("vm1", uuid1, true, 1, "prod"), wantCode: 1, stderrHas: []string{"network prod does not exist"}},
		{name: "restore rewrites the MTU", op: "restore", subop: "begin",
			stdin:      strings.Replace(domainXML("vm1", uuid1, true, 1, "jumbo"), `<model type="virtio"/>`, `<model type="virtio"/><mtu size="1500"/>`, 1),
			wantStdout: true},
		{name: "stopped of an unknown domain", op: "stopped", subop: "end", stdin: domainXML("vm1", uuid1, true, 1, "flat")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			k.fail = tt.kernelFail
			e := testEnv(t, k)
			code, out, errOut := runHook(e, "qemu.d", "vm1", tt.op, tt.subop, tt.stdin)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errOut)
			}
			if (out != "") != tt.wantStdout {
				t.Errorf("stdout = %q, want output: %v", out, tt.wantStdout)
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if tt.wantCode == 0 && len(tt.stderrHas) == 0 && errOut != "" {
				t.Errorf("unexpected stderr: %s", errOut)
			}
			if len(k.writes) != tt.writes {
				t.Errorf("kernel writes %q, want %d", k.writes, tt.writes)
			}
		})
	}
}

func TestRestoreOutputIsTheRewrittenDomain(t *testing.T) {
	e := testEnv(t, newFakeKernel())
	in := strings.Replace(domainXML("vm1", uuid1, true, 1, "jumbo"), `<model type="virtio"/>`, `<model type="virtio"/><mtu size="1500"/>`, 1)
	code, out, errOut := runHook(e, "qemu.d", "vm1", "restore", "begin", in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `size="9000"`) || !strings.Contains(out, "<name>vm1</name>") {
		t.Errorf("rewritten XML lacks the new MTU or the rest of the domain:\n%s", out)
	}
}

func TestStartStopRecords(t *testing.T) {
	k := newFakeKernel()
	e := testEnv(t, k)
	store := records.Store{Dir: e.StateDir}
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 2, "flat")); code != 0 {
		t.Fatalf("start: exit %d: %s", code, errOut)
	}
	st, err := store.Read()
	if err != nil {
		t.Fatal(err)
	}
	d := st.Domains[uuid1]
	if d == nil || !d.Running || len(d.NICs) != 2 || d.NICs[0].Tap != "vnet0" || d.NICs[0].Bridge != "gbr-vm" {
		t.Fatalf("record after start: %+v", d)
	}
	// Another domain with the same MAC is refused while vm1 runs.
	code, _, errOut := runHook(e, "qemu.d", "vm2", "start", "begin", domainXML("vm2", uuid2, true, 1, "flat"))
	if code == 0 || !strings.Contains(errOut, "running domain vm1") {
		t.Errorf("start of vm2 with vm1's MAC: exit %d, stderr %s", code, errOut)
	}
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "stopped", "end", domainXML("vm1", uuid1, true, 2, "flat")); code != 0 {
		t.Fatalf("stopped: exit %d: %s", code, errOut)
	}
	if st, _ = store.Read(); st.Domains[uuid1] != nil {
		t.Errorf("record of vm1 survived stopped: %+v", st.Domains[uuid1])
	}
	if code, _, errOut := runHook(e, "qemu.d", "vm2", "start", "begin", domainXML("vm2", uuid2, true, 1, "flat")); code != 0 {
		t.Errorf("start of vm2 after vm1 stopped: exit %d: %s", code, errOut)
	}
	log, err := os.ReadFile(e.LogPath)
	if err != nil || !strings.Contains(string(log), "tap programmed") {
		t.Errorf("hook log lacks the tap programming: %v\n%s", err, log)
	}
}

func TestUnmanagedDomainTouchesNothing(t *testing.T) {
	k := newFakeKernel()
	e := testEnv(t, k)
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "reconnect", "migrate", "restore"} {
		code, out, errOut := runHook(e, "qemu.d", "plain", op, "begin", domainXML("plain", uuid1, false, 2, "flat"))
		if code != 0 || out != "" || errOut != "" {
			t.Errorf("%s: exit %d stdout %q stderr %q", op, code, out, errOut)
		}
	}
	if _, err := os.Stat(e.StateDir); !os.IsNotExist(err) {
		t.Errorf("state dir created for an unmanaged domain: %v", err)
	}
	if _, err := os.Stat(e.LogPath); !os.IsNotExist(err) {
		t.Errorf("log written for an unmanaged domain: %v", err)
	}
	if len(k.writes) > 0 {
		t.Errorf("kernel writes: %q", k.writes)
	}
}

func hookDataXML(network, bridge, mac, owner, ownerUUID string) string {
	port := ""
	if mac != "" {
		port = `<networkport><uuid>99999999-9999-9999-9999-999999999999</uuid><owner><name>` + owner + `</name><uuid>` + ownerUUID + `</uuid></owner><mac address="` + mac + `"/><plug type="bridge" bridge="` + bridge + `"/></networkport>`
	}
	return `<hookData><network><name>` + network + `</name><forward mode="bridge"/><bridge name="` + bridge + `"/></network>` + port + `</hookData>`
}

func TestNetworkHook(t *testing.T) {
	k := newFakeKernel()
	e := testEnv(t, k)
	store := records.Store{Dir: e.StateDir}
	// A port on a network gallium-net does not own is ignored.
	if code, _, _ := runHook(e, "network.d", "default", "port-created", "begin", hookDataXML("default", "virbr0", "52:54:00:00:00:09", "x", uuid2)); code != 0 || store.Exists() {
		t.Fatalf("foreign network port: exit %d, state written: %v", code, store.Exists())
	}
	if code, _, errOut := runHook(e, "network.d", "flat", "port-created", "begin", hookDataXML("flat", "gbr-vm", "52:54:00:00:00:01", "vm1", uuid1)); code != 0 {
		t.Fatalf("port-created: exit %d: %s", code, errOut)
	}
	st, _ := store.Read()
	if d := st.Domains[uuid1]; d == nil || d.NIC("52:54:00:00:00:01") == nil || d.Running {
		t.Fatalf("record after port-created: %+v", d)
	}
	// A port on a network that this host lacks is refused.
	code, _, errOut := runHook(e, "network.d", "prod", "port-created", "begin", hookDataXML("prod", "gbr-x", "52:54:00:00:00:02", "vm1", uuid1))
	if code == 0 || !strings.Contains(errOut, "network prod does not exist") {
		t.Errorf("port on a missing network: exit %d: %s", code, errOut)
	}
	// Start, then updated re-asserts the recorded taps.
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "flat")); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	k.links["vnet0"].Master = "" // something took the tap off its bridge
	k.writes = nil
	if code, _, errOut := runHook(e, "network.d", "flat", "updated", "begin", hookDataXML("flat", "gbr-vm", "", "", "")); code != 0 {
		t.Fatalf("updated: %s", errOut)
	}
	if !slices.Contains(k.writes, "master vnet0 gbr-vm") {
		t.Errorf("updated did not re-assert the tap: %q", k.writes)
	}
	if code, _, errOut := runHook(e, "network.d", "flat", "port-deleted", "begin", hookDataXML("flat", "gbr-vm", "52:54:00:00:00:01", "vm1", uuid1)); code != 0 {
		t.Fatalf("port-deleted: %s", errOut)
	}
	st, _ = store.Read()
	if d := st.Domains[uuid1]; d == nil || len(d.NICs) != 0 {
		t.Errorf("record after port-deleted: %+v", d)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want kind
	}{
		{[]string{"/etc/libvirt/hooks/qemu.d/gallium-net", "vm", "start", "begin", "-"}, kindQemu},
		{[]string{"/etc/libvirt/hooks/network.d/gallium-net", "net", "start", "begin", "-"}, kindNetwork},
		{[]string{"/etc/libvirt/hooks/qemu", "vm", "started", "begin", "-"}, kindQemu},
		{[]string{"/usr/libexec/gallium-net/gallium-net-hook", "vm", "prepare", "begin", "-"}, kindQemu},
		{[]string{"/usr/libexec/gallium-net/gallium-net-hook", "net", "port-created", "begin", "-"}, kindNetwork},
		{[]string{"/usr/libexec/gallium-net/gallium-net-hook", "x", "start", "begin", "-"}, kindUnknown},
		{[]string{"gallium-net-hook"}, kindUnknown},
	}
	for _, tt := range tests {
		if got := parseArgs(tt.argv).kind; got != tt.want {
			t.Errorf("parseArgs(%q).kind = %s, want %s", tt.argv, got, tt.want)
		}
	}
	for in, want := range map[string]kind{
		`<?xml version="1.0"?><domain type="kvm">`: kindQemu,
		"  <hookData><network>":                    kindNetwork,
		"<!-- c --><domain>":                       kindQemu,
		"junk":                                     kindUnknown,
	} {
		if got := kindFromDocument([]byte(in)); got != want {
			t.Errorf("kindFromDocument(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestReconnectFailureSaidOnceAboutARunningVM: a failed reconnect said
// "cannot start domain" about a running VM, and said it twice (issue 13
// #11).
func TestReconnectFailureSaidOnceAboutARunningVM(t *testing.T) {
	e := testEnv(t, newFakeKernel())
	code, _, stderr := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "flat"))
	if code != 0 {
		t.Fatalf("start: exit %d\n%s", code, stderr)
	}
	// vm2 reconnects with vm1's MAC: a conflict it can only report.
	code, _, stderr = runHook(e, "qemu.d", "vm2", "reconnect", "begin", domainXML("vm2", uuid2, true, 1, "flat"))
	type result struct {
		Code         int
		CannotStart  bool
		KeepsRunning int
		Conflict     int
	}
	got := result{code, strings.Contains(stderr, "cannot start"), strings.Count(stderr, "keeps running"), strings.Count(stderr, "has the MAC of a NIC of running domain vm1")}
	if diff := cmp.Diff(result{Code: 0, KeepsRunning: 1, Conflict: 1}, got); diff != "" {
		t.Errorf("reconnect (-want +got):\n%s\nstderr:\n%s", diff, stderr)
	}
}
