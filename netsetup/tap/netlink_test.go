package tap

import (
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/test/testenv"
)

// inTapNamespace runs f on a locked thread inside a fresh network namespace
// (so it touches no host link) and leaves the namespace afterwards.
func inTapNamespace(t *testing.T, f func(k Netlink)) {
	t.Helper()
	testenv.InNetns(t, func(h *netlink.Handle) { f(Netlink{Handle: h}) })
}

func addTapTestLinks(t *testing.T, k Netlink, filtering bool) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "gbr-tt", MTU: 1500}}
	if filtering {
		br.VlanFiltering = &filtering
	}
	if err := k.Handle.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	if err := k.Handle.LinkSetUp(br); err != nil {
		t.Fatalf("bridge up: %v", err)
	}
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "gtt-tap0"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
	if err := k.Handle.LinkAdd(tap); err != nil {
		t.Fatalf("add tap: %v", err)
	}
}

// TestTapNetlinkUntagged is tier 2: a real bridge (no VLAN filtering, as on
// the development kernel) and a real tap in a throwaway namespace.
func TestTapNetlinkUntagged(t *testing.T) {
	inTapNamespace(t, func(k Netlink) {
		addTapTestLinks(t, k, false)
		if err := NetworkReady(k, "gbr-tt", "gb-tt", 0); err != nil {
			t.Fatalf("NetworkReady: %v", err)
		}
		cfg := Config{Tap: "gtt-tap0", Bridge: "gbr-tt", MTU: 1400}
		res, err := Program(k, cfg)
		if err != nil {
			t.Fatalf("Program: %v", err)
		}
		if len(res.Ops) != 2 {
			t.Errorf("ops = %v, want enslave and mtu", res.Summary())
		}
		st, err := k.Link("gtt-tap0", false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Master != "gbr-tt" || st.MTU != 1400 {
			t.Errorf("tap after programming: master %q mtu %d", st.Master, st.MTU)
		}
		if res, err := Program(k, cfg); err != nil || res.Changed() {
			t.Errorf("second Program: %s, %v", res.Summary(), err)
		}
		if name, err := k.ByMAC(st.MAC); err != nil || name != "gtt-tap0" {
			t.Errorf("ByMAC(%s) = %q, %v", st.MAC, name, err)
		}
		if err := NetworkReady(k, "gbr-missing", "gb-missing", 0); err == nil {
			t.Error("NetworkReady on a missing bridge: no error")
		}
	})
}

// TestTapNetlinkTagged needs bridge VLAN filtering: the kernel lab runs it.
func TestTapNetlinkTagged(t *testing.T) {
	testenv.NeedKernel(t, "vlan_filtering")
	inTapNamespace(t, func(k Netlink) {
		addTapTestLinks(t, k, true)
		if _, err := Program(k, Config{Tap: "gtt-tap0", Bridge: "gbr-tt", VLAN: 42}); err != nil {
			t.Fatalf("Program: %v", err)
		}
		st, err := k.Link("gtt-tap0", true)
		if err != nil {
			t.Fatal(err)
		}
		if want := []VLAN{{VID: 42, PVID: true, Untagged: true}}; !slices.Equal(st.VLANs, want) {
			t.Errorf("tap VLANs = %v, want %v", st.VLANs, want)
		}
	})
}
