package vmnet

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/snapshot"
)

// TestCheckIncoming: vm1 on hv1 has NICs on prod (VLAN 100), flat and san
// (an adapter group hv2 has no adapters in); hv2 is asked whether it can
// take it.
func TestCheckIncoming(t *testing.T) {
	ctx := context.Background()
	s := testSpec(t)
	src := newFakeConn()
	src.addDomain(t, "vm1", true)
	var macs []string
	for _, n := range []string{"prod", "flat", "san"} {
		added, err := AddNIC(ctx, src, s, LocalMACs{}, nil, NewNIC{Domain: "vm1", Network: n})
		if err != nil {
			t.Fatal(err)
		}
		macs = append(macs, added.MAC)
	}
	xml, err := src.DomainXML("vm1", true)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Build(s, "hv2", nil, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	dst := newFakeConn()
	define := func(name string, active bool) {
		if n, ok := dst.nets[name]; ok {
			n.state.Active = active
			return
		}
		if err := dst.DefineNetwork("<network><name>" + name + "</name></network>"); err != nil {
			t.Fatal(err)
		}
		dst.nets[name].state = NetworkState{Active: active, Autostart: true}
	}
	ready := func(n snapshot.Network) error {
		if n.VLAN == 100 {
			return errors.New("VLAN 100 is not on uplink gb-vmgroup of bridge gbr-vmgroup")
		}
		return nil
	}
	problems := func(in Incoming) map[string][]string {
		out := map[string][]string{}
		for _, n := range in.NICs {
			for _, p := range n.Problems {
				// The first words say which check; the rest is the fix.
				out[n.Network] = append(out[n.Network], strings.SplitN(p, ";", 2)[0])
			}
		}
		return out
	}

	// prod: defined but stopped, and its VLAN missing on the uplink; flat:
	// not defined; san: not on hv2 at all; and another domain here has
	// prod's MAC.
	define("prod", false)
	dst.addDomain(t, "squatter", true, macs[0])
	dst.doms["squatter"].live.UUID = "5a5a5a5a-0000-0000-0000-000000000000"
	in, err := CheckIncoming(dst, snap, ready, []byte(xml))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"prod": {
			"libvirt network prod is defined but not running on hypervisor hv2",
			"network prod is not ready on hypervisor hv2: VLAN 100 is not on uplink gb-vmgroup of bridge gbr-vmgroup",
			"domain squatter on hypervisor hv2 already has MAC " + macs[0],
		},
		"flat": {"libvirt network flat is not defined on hypervisor hv2"},
		"san":  {"network san is not on hypervisor hv2 (its adapter group has no adapters there, or the network is not in the spec this host follows)"},
	}
	if diff := cmp.Diff(want, problems(in)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if in.OK() || !in.Managed || in.Domain != "vm1" || in.Hypervisor != "hv2" || len(in.NICs) != 3 {
		t.Errorf("verdict = %+v; want vm1 managed, 3 NICs, not OK", in)
	}
	for _, n := range in.NICs {
		for _, p := range n.Problems {
			if !strings.Contains(p, "fix: ") {
				t.Errorf("NIC %s: problem without a fix: %q", n.MAC, p)
			}
		}
	}

	// Fixed: both networks run, the VLAN is there, the squatter is gone;
	// san is still not on hv2 and nothing else is wrong.
	define("prod", true)
	define("flat", true)
	delete(dst.doms, "squatter")
	in, err = CheckIncoming(dst, snap, func(snapshot.Network) error { return nil }, []byte(xml))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"san": want["san"]}, problems(in)); diff != "" {
		t.Errorf("problems once fixed (-want +got):\n%s", diff)
	}
	if in.NICs[0].VLAN != 100 || in.NICs[0].Bridge == "" {
		t.Errorf("prod NIC verdict %+v: want VLAN 100 and the bridge", in.NICs[0])
	}

	// A domain gallium-net does not manage: nothing to check.
	dst.addDomain(t, "plain", true, "52:54:00:99:99:99")
	plain, _ := dst.DomainXML("plain", true)
	in, err = CheckIncoming(dst, snap, ready, []byte(plain))
	if err != nil || in.Managed || !in.OK() || len(in.NICs) != 0 {
		t.Errorf("unmanaged domain: %+v, %v; want not managed, OK, no NICs", in, err)
	}
	if _, err := CheckIncoming(dst, snap, ready, []byte("<domain")); err == nil {
		t.Error("malformed XML accepted")
	}
}
