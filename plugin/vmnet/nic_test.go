package vmnet

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
)

// nicView is what a test checks of a domain's NICs: per definition, the
// NICs with MAC, network and model, and the metadata's profile and NICs.
type nicView struct {
	Config, Live []string
	Profile      string
	Meta         []string
}

func view(t *testing.T, conn Conn, name string) nicView {
	t.Helper()
	d, err := LoadDomain(conn, name)
	if err != nil {
		t.Fatal(err)
	}
	nics := func(x *domains.Domain) []string {
		if x == nil {
			return nil
		}
		var out []string
		for _, n := range x.NICs {
			out = append(out, n.MAC+" "+x.NetworkOf(n)+" "+n.Model)
		}
		return out
	}
	v := nicView{Config: nics(d.Config), Live: nics(d.Live)}
	if m := d.Config.Meta; m != nil {
		v.Profile = m.Profile
		for _, n := range m.NICs {
			v.Meta = append(v.Meta, n.MAC+" "+n.Network)
		}
	}
	return v
}

// recordingMACs is LocalMACs that records the MACs it was asked to give
// back (undo).
type recordingMACs struct {
	LocalMACs
	undone []string
}

func (r *recordingMACs) NewMAC(ctx context.Context, s *model.Spec, want string, used map[string]bool, rec store.NIC) (string, func() error, error) {
	mac, _, err := r.LocalMACs.NewMAC(ctx, s, want, used, rec)
	return mac, func() error { r.undone = append(r.undone, mac); return nil }, err
}

func TestAddRemoveNIC(t *testing.T) {
	ctx := context.Background()
	s := testSpec(t)
	f := newFakeConn()
	f.addDomain(t, "vm1", true, "52:54:00:aa:00:01")
	macs := &recordingMACs{LocalMACs: LocalMACs{Rand: bytes.NewReader([]byte{0, 1, 0, 2})}}
	// The first draw (52:54:00:aa:00:01) is on the domain already: the
	// allocator moves on.
	added, err := AddNIC(ctx, f, s, macs, nil, NewNIC{Domain: "vm1", Network: "prod", Hypervisor: "hv1"})
	if err != nil {
		t.Fatal(err)
	}
	wantAdded := AddedNIC{MAC: "52:54:00:aa:00:02", Network: "prod", Profile: s.Profile("modern"), DefaultProfile: true, Active: true}
	if diff := cmp.Diff(wantAdded, added); diff != "" {
		t.Errorf("AddNIC (-want +got):\n%s", diff)
	}
	// An operator's MAC in dashes, with a profile set on the way.
	added, err = AddNIC(ctx, f, s, macs, nil, NewNIC{Domain: "vm1", Network: "flat", Profile: "legacy", MAC: "52-54-00-AA-00-09"})
	if err != nil {
		t.Fatal(err)
	}
	if added.MAC != "52:54:00:aa:00:09" || added.Profile.Name != "legacy" || added.DefaultProfile {
		t.Errorf("AddNIC --mac --profile: %+v", added)
	}
	want := nicView{
		Config:  []string{"52:54:00:aa:00:01 default ", "52:54:00:aa:00:02 prod virtio", "52:54:00:aa:00:09 flat e1000"},
		Live:    []string{"52:54:00:aa:00:01 default ", "52:54:00:aa:00:02 prod virtio", "52:54:00:aa:00:09 flat e1000"},
		Profile: "legacy",
		Meta:    []string{"52:54:00:aa:00:02 prod", "52:54:00:aa:00:09 flat"},
	}
	if diff := cmp.Diff(want, view(t, f, "vm1")); diff != "" {
		t.Errorf("after two nic adds (-want +got):\n%s", diff)
	}

	// nic remove takes the same forms nic add --mac takes.
	mac, err := RemoveNIC(f, "vm1", "5254.00aa.0009")
	if err != nil {
		t.Fatal(err)
	}
	if mac != "52:54:00:aa:00:09" {
		t.Errorf("RemoveNIC returned %s", mac)
	}
	want.Config, want.Live, want.Meta = want.Config[:2], want.Live[:2], want.Meta[:1]
	if diff := cmp.Diff(want, view(t, f, "vm1")); diff != "" {
		t.Errorf("after nic remove (-want +got):\n%s", diff)
	}
	if len(macs.undone) > 0 {
		t.Errorf("MACs given back after successful adds: %v", macs.undone)
	}
}

func TestAddNICErrors(t *testing.T) {
	ctx := context.Background()
	s := testSpec(t)
	f := newFakeConn()
	f.addDomain(t, "vm1", false, "52:54:00:aa:00:01")
	snap := &snapshot.Host{NICs: []snapshot.NIC{{MAC: "52:54:00:aa:00:05"}}}
	cases := []struct {
		name string
		req  NewNIC
		want string
	}{
		{"unknown network", NewNIC{Domain: "vm1", Network: "nope"}, "network nope is not in the cluster spec"},
		{"unknown domain", NewNIC{Domain: "vm9", Network: "prod"}, "domain vm9 does not exist on this host"},
		{"unknown profile", NewNIC{Domain: "vm1", Network: "prod", Profile: "fancy"}, `hardware profile "fancy" is not in the cluster spec`},
		{"MAC on a domain", NewNIC{Domain: "vm1", Network: "prod", MAC: "52:54:00:AA:00:01"}, "is already used by a NIC on this host"},
		{"MAC in the snapshot", NewNIC{Domain: "vm1", Network: "prod", MAC: "52:54:00:aa:00:05"}, "is already used by a NIC on this host"},
		{"multicast MAC", NewNIC{Domain: "vm1", Network: "prod", MAC: "01:00:5e:00:00:01"}, "--mac: MAC 01:00:5e:00:00:01 is multicast"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.calls = nil
			_, err := AddNIC(ctx, f, s, LocalMACs{}, snap, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if len(f.calls) > 0 {
				t.Errorf("a refused NIC changed the domain: %q", f.calls)
			}
		})
	}

	// libvirt refuses the device: the metadata is restored and the MAC
	// given back.
	f.fail = map[string]error{"attach ": errors.New("no PCI slot left")}
	macs := &recordingMACs{}
	_, err := AddNIC(ctx, f, s, macs, nil, NewNIC{Domain: "vm1", Network: "prod", MAC: "52:54:00:aa:00:07"})
	if err == nil || !strings.Contains(err.Error(), "domain vm1: attach NIC 52:54:00:aa:00:07 on network prod: no PCI slot left") {
		t.Fatalf("err = %v", err)
	}
	if diff := cmp.Diff([]string{"52:54:00:aa:00:07"}, macs.undone); diff != "" {
		t.Errorf("MACs given back (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(nicView{Config: []string{"52:54:00:aa:00:01 default "}}, view(t, f, "vm1"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after a failed attach (-want +got):\n%s", diff)
	}
}

func TestRemoveNICErrors(t *testing.T) {
	f := newFakeConn()
	f.addDomain(t, "vm1", false, "52:54:00:aa:00:01")
	for _, c := range []struct{ domain, mac, want string }{
		{"vm1", "52:54:00:aa:00:01", "domain vm1 has no gallium-net NIC 52:54:00:aa:00:01"},
		{"vm1", "52:54:00:aa:00", "is not a MAC address"},
		{"vm9", "52:54:00:aa:00:01", "domain vm9 does not exist"},
	} {
		if _, err := RemoveNIC(f, c.domain, c.mac); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RemoveNIC(%s, %s) err = %v, want %q", c.domain, c.mac, err, c.want)
		}
	}
	if len(f.calls) > 0 {
		t.Errorf("refused removals changed the domain: %q", f.calls)
	}
}

func TestSetProfile(t *testing.T) {
	ctx := context.Background()
	s := testSpec(t)
	f := newFakeConn()
	f.addDomain(t, "vm1", true)
	for _, n := range []string{"prod", "flat"} {
		if _, err := AddNIC(ctx, f, s, LocalMACs{}, nil, NewNIC{Domain: "vm1", Network: n}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ShowProfile(f, s, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Set != "" || p.Profile.Name != "modern" || len(p.NICs) != 2 || p.NICs[0].Stale {
		t.Errorf("ShowProfile before: %+v", p)
	}

	// Without --update-nics only the metadata changes.
	ch, err := SetProfile(f, s, "vm1", "legacy", false)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Set != "legacy" || len(ch.Updated) != 0 || !ch.NICs[0].Stale || !ch.NICs[1].Stale {
		t.Errorf("SetProfile legacy: %+v", ch)
	}
	v := view(t, f, "vm1")
	if v.Profile != "legacy" || !strings.HasSuffix(v.Config[0], " virtio") {
		t.Errorf("after SetProfile legacy: %+v", v)
	}

	// With it, the persistent NICs take the model; the running ones keep
	// theirs until the next boot.
	ch, err = SetProfile(f, s, "vm1", "legacy", true)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Active || len(ch.Updated) != 2 || ch.Updated[0].Model != "virtio" || ch.NICs[0].Stale {
		t.Errorf("SetProfile legacy --update-nics: %+v", ch)
	}
	v = view(t, f, "vm1")
	for i := range v.Config {
		if !strings.HasSuffix(v.Config[i], " e1000") || !strings.HasSuffix(v.Live[i], " virtio") {
			t.Errorf("NIC %d: config %q, live %q; want e1000 persistent, virtio live", i, v.Config[i], v.Live[i])
		}
	}
	if _, err := SetProfile(f, s, "vm1", "fancy", false); err == nil {
		t.Error("unknown profile: no error")
	}
}

func TestSyncNIC(t *testing.T) {
	ctx := context.Background()
	s := testSpec(t)
	f := newFakeConn()
	f.addDomain(t, "vm1", true)
	added, err := AddNIC(ctx, f, s, LocalMACs{}, nil, NewNIC{Domain: "vm1", Network: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	// Running, the NIC has a tap on the bridge prod had before the spec
	// moved it.
	live := f.doms["vm1"].live.Devices.Interfaces
	live[len(live)-1].Source.Network.Bridge = "gbr-old"
	live[len(live)-1].Target = &libvirtxml.DomainInterfaceTarget{Dev: "vnet7"}
	snap, err := snapshot.Build(s, "hv1", nil, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var programmed []string
	program := func(tap string, n snapshot.Network) ([]string, error) {
		programmed = append(programmed, tap+" "+n.Bridge)
		return []string{"tap vnet7: vlan 100"}, nil
	}
	f.calls = nil
	got, err := SyncNIC(f, program, s, snap, "vm1", added.MAC)
	if err != nil {
		t.Fatal(err)
	}
	want := Synced{Tap: "vnet7", Bridge: "gbr-vmgroup", Changes: []string{"live interface moved from prod/gbr-old to prod/gbr-vmgroup", "tap vnet7: vlan 100"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SyncNIC (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"update vm1"}, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"vnet7 gbr-vmgroup"}, programmed); diff != "" {
		t.Errorf("taps programmed (-want +got):\n%s", diff)
	}
	if _, err := SyncNIC(f, program, s, snap, "vm1", "52:54:00:aa:99:99"); err == nil {
		t.Error("unknown NIC: no error")
	}
}
