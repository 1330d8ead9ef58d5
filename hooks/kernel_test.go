package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/test/testenv"
)

// TestHookTaggedNetworkKernel runs prepare and start of a managed domain on
// a tagged network against a real VLAN-filtering bridge, in a throwaway
// namespace: the uplink carries VID 100, the tap must end with exactly VID
// 100 as PVID untagged (VID 1 gone). The host kernel has no VLAN filtering;
// the kernel lab runs this.
func TestHookTaggedNetworkKernel(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedKernel(t, "vlan_filtering")
	testenv.InNetns(t, func(h *netlink.Handle) { taggedHookScenario(t, h) })
}

func taggedHookScenario(t *testing.T, h *netlink.Handle) {
	yes := true
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "gbr-vm"}, VlanFiltering: &yes}
	up := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "gb-vm"}}
	vnet := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "vnet0"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
	for _, l := range []netlink.Link{br, up, vnet} {
		if err := h.LinkAdd(l); err != nil {
			t.Errorf("add %s: %v", l.Attrs().Name, err)
			return
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Error(err)
		return
	}
	if err := h.LinkSetMaster(up, br); err != nil {
		t.Error(err)
		return
	}
	if err := h.BridgeVlanAdd(up, 100, false, false, false, true); err != nil {
		t.Errorf("uplink VID 100: %v", err)
		return
	}
	k := tap.Netlink{Handle: h}
	dir := t.TempDir()
	snap := filepath.Join(dir, "snapshot.json")
	if err := snapshot.Write(snap, &snapshot.Host{
		Version: snapshot.Version, Hypervisor: "hv1", Generated: time.Now(),
		Networks: map[string]snapshot.Network{
			"prod":  {Group: "vm", Bridge: "gbr-vm", Bond: "gb-vm", VLAN: 100, MTU: 1500},
			"other": {Group: "vm", Bridge: "gbr-vm", Bond: "gb-vm", VLAN: 200, MTU: 1500},
		},
	}); err != nil {
		t.Error(err)
		return
	}
	e := env{StateDir: filepath.Join(dir, "state"), SnapshotPath: snap, LogPath: filepath.Join(dir, "hook.log"), Kernel: k, LockTimeout: 5 * time.Second}
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "prepare", "begin", domainXML("vm1", uuid1, true, 1, "prod")); code != 0 {
		t.Errorf("prepare on prod (VID 100 on the uplink): %s", errOut)
	}
	code, _, errOut := runHook(e, "qemu.d", "vm1", "prepare", "begin", domainXML("vm1", uuid1, true, 1, "other"))
	if code == 0 || !strings.Contains(errOut, "VLAN 200 is not on uplink gb-vm") {
		t.Errorf("prepare on other (VID 200 missing on the uplink): exit %d: %s", code, errOut)
	}
	if code, _, errOut := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "prod")); code != 0 {
		t.Errorf("start: %s", errOut)
		return
	}
	st, err := k.Link("vnet0", true)
	if err != nil {
		t.Error(err)
		return
	}
	if want := []tap.VLAN{{VID: 100, PVID: true, Untagged: true}}; st.Master != "gbr-vm" || !slices.Equal(st.VLANs, want) {
		t.Errorf("tap after start: master %q VLANs %v, want gbr-vm %v", st.Master, st.VLANs, want)
	}
}
