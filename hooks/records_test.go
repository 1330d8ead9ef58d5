package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/hooks/internal/records"
)

// previousRecords is /run/gallium-net/hook/nics.json as the previous hook
// (one file, format version 1) left it with vm1 running two NICs.
const previousRecords = `{"version":1,"domains":{"` + uuid1 + `":{"uuid":"` + uuid1 + `","name":"vm1","running":true,"nics":[` +
	`{"mac":"52:54:00:00:00:01","network":"flat","bridge":"gbr-vm","tap":"vnet0","mtu":1500},` +
	`{"mac":"52:54:00:00:00:02","network":"flat","bridge":"gbr-vm","tap":"vnet1","mtu":1500}]}}}
`

// TestUpgradeFromTheSingleFile is a package upgrade on a host where vm1 runs:
// the new hook finds vm1's NICs in the previous layout's records, for a
// network update, for the MAC check of another start, for reconnect and for
// stopped.
func TestUpgradeFromTheSingleFile(t *testing.T) {
	k := newFakeKernel()
	e := testEnv(t, k)
	if err := os.MkdirAll(e.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.StateDir, "nics.json"), []byte(previousRecords), 0o600); err != nil {
		t.Fatal(err)
	}
	// A network update re-asserts vm1's taps without any other call first.
	if code, _, errOut := runHook(e, "network.d", "flat", "updated", "begin", hookDataXML("flat", "gbr-vm", "", "", "")); code != 0 || errOut != "" {
		t.Fatalf("updated: exit %d: %s", code, errOut)
	}
	if diff := cmp.Diff([]string{"master vnet0 gbr-vm", "master vnet1 gbr-vm"}, sorted(k.writes)); diff != "" {
		t.Errorf("updated after the upgrade (-want +got):\n%s", diff)
	}
	// Another domain with vm1's MAC is refused.
	code, _, errOut := runHook(e, "qemu.d", "vm2", "start", "begin", domainXML("vm2", uuid2, true, 1, "flat"))
	if code == 0 || !strings.Contains(errOut, "running domain vm1") {
		t.Errorf("start of vm2 with vm1's MAC after the upgrade: exit %d: %s", code, errOut)
	}
	// libvirtd restarts: reconnect finds vm1 and keeps both NICs.
	k.writes = nil
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "reconnect", "begin", domainXML("vm1", uuid1, true, 2, "flat")); code != 0 || errOut != "" {
		t.Fatalf("reconnect: exit %d: %s", code, errOut)
	}
	d, err := records.Store{Dir: e.StateDir}.Get(uuid1)
	if err != nil {
		t.Fatal(err)
	}
	want := &records.Domain{UUID: uuid1, Name: "vm1", Running: true, NICs: []records.NIC{
		{MAC: "52:54:00:00:00:01", Network: "flat", Bridge: "gbr-vm", Tap: "vnet0", MTU: 1500},
		{MAC: "52:54:00:00:00:02", Network: "flat", Bridge: "gbr-vm", Tap: "vnet1", MTU: 1500},
	}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("vm1 after reconnect (-want +got):\n%s", diff)
	}
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "stopped", "end", domainXML("vm1", uuid1, true, 2, "flat")); code != 0 {
		t.Fatalf("stopped: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runHook(e, "qemu.d", "vm2", "start", "begin", domainXML("vm2", uuid2, true, 1, "flat")); code != 0 {
		t.Errorf("start of vm2 after vm1 stopped: exit %d: %s", code, errOut)
	}
	st, err := records.Store{Dir: e.StateDir}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{uuid2}, keys(st.Domains)); diff != "" {
		t.Errorf("domains recorded at the end (-want +got):\n%s", diff)
	}
}

// blockingKernel holds SetMaster until release is closed, as a slow
// kernel (or many taps) does.
type blockingKernel struct {
	*fakeKernel
	entered chan struct{}
	release chan struct{}
}

func (k *blockingKernel) SetMaster(link, bridge string) error {
	select {
	case k.entered <- struct{}{}:
	default:
	}
	<-k.release
	return k.fakeKernel.SetMaster(link, bridge)
}

// TestStartsOfOtherDomainsDoNotWait: while vm1's start hook programs its
// taps, the start of vm2 goes through (no host-wide lock), and vm1's own
// stopped hook waits for its start (calls for a domain stay ordered).
func TestStartsOfOtherDomainsDoNotWait(t *testing.T) {
	base := testEnv(t, nil)
	slow := &blockingKernel{fakeKernel: newFakeKernel(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	e1 := base
	e1.Kernel = slow
	started := make(chan string, 1)
	go func() {
		code, _, errOut := runHook(e1, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "flat"))
		if code != 0 {
			errOut = "exit non-zero: " + errOut
		}
		started <- errOut
	}()
	select {
	case <-slow.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("vm1's start never reached its tap")
	}
	stopped := make(chan struct{})
	go func() {
		runHook(e1, "qemu.d", "vm1", "stopped", "end", domainXML("vm1", uuid1, true, 1, "flat"))
		close(stopped)
	}()

	e2 := base
	e2.Kernel = newFakeKernel()
	xml2 := strings.ReplaceAll(domainXML("vm2", uuid2, true, 4, "flat"), "52:54:00:00:00:", "52:54:00:00:02:")
	done := make(chan [2]string, 1)
	go func() {
		code, _, errOut := runHook(e2, "qemu.d", "vm2", "start", "begin", xml2)
		done <- [2]string{map[bool]string{true: "ok", false: "failed"}[code == 0], errOut}
	}()
	select {
	case r := <-done:
		if r[0] != "ok" {
			t.Errorf("start of vm2: %s", r[1])
		}
	case <-time.After(5 * time.Second):
		t.Error("the start of vm2 waited for vm1's tap programming")
	}
	select {
	case <-stopped:
		t.Error("vm1's stopped hook ran while its start hook was still programming the taps")
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.release)
	if errOut := <-started; errOut != "" {
		t.Errorf("start of vm1: %s", errOut)
	}
	<-stopped
	st, err := records.Store{Dir: base.StateDir}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{uuid2}, keys(st.Domains)); diff != "" {
		t.Errorf("domains recorded at the end (-want +got):\n%s", diff)
	}
}

// TestFailedStartLeavesNoClaim: a start that fails on a tap puts the records
// back as they were, so the MAC is free for the next domain.
func TestFailedStartLeavesNoClaim(t *testing.T) {
	k := newFakeKernel()
	k.fail = true
	e := testEnv(t, k)
	// The port was recorded before the start, as libvirt does.
	if code, _, errOut := runHook(e, "network.d", "flat", "port-created", "begin", hookDataXML("flat", "gbr-vm", "52:54:00:00:00:01", "vm1", uuid1)); code != 0 {
		t.Fatalf("port-created: %s", errOut)
	}
	if code, _, _ := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "flat")); code == 0 {
		t.Fatal("start with a failing kernel succeeded")
	}
	d, err := records.Store{Dir: e.StateDir}.Get(uuid1)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil || d.Running || len(d.NICs) != 1 {
		t.Errorf("vm1 after the failed start: %+v, want the port's record, not running", d)
	}
	e2 := e
	e2.Kernel = newFakeKernel()
	if code, _, errOut := runHook(e2, "qemu.d", "vm2", "start", "begin", domainXML("vm2", uuid2, true, 1, "flat")); code != 0 {
		t.Errorf("start of vm2 with the MAC of vm1's failed start: %s", errOut)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
