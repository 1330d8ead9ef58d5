package vmnet

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/domains"
)

func TestNetworksToDefine(t *testing.T) {
	s := testSpec(t)
	for _, c := range []struct {
		hv, name string
		want     []string
		wantErr  string
	}{
		{hv: "hv1", want: []string{"flat", "prod", "san"}},
		{hv: "hv2", want: []string{"flat", "prod"}},
		{hv: "hv1", name: "san", want: []string{"san"}},
		{hv: "hv2", name: "san", wantErr: "adapter group storage, which has no adapters on hypervisor hv2"},
		{hv: "hv1", name: "nope", wantErr: "network nope is not in the cluster spec"},
	} {
		got, err := NetworksToDefine(s, c.hv, c.name)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("NetworksToDefine(%s, %q) err = %v, want %q", c.hv, c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("NetworksToDefine(%s, %q) (-want +got):\n%s", c.hv, c.name, diff)
		}
	}
}

func TestDefineNetworks(t *testing.T) {
	s := testSpec(t)
	f := newFakeConn()
	opt := domains.NetworkOptions{}
	names := NetworksOn(s, "hv1")

	// A fresh host: every network defined, started, autostarted.
	got, err := DefineNetworks(f, s, "hv1", names, opt)
	if err != nil {
		t.Fatal(err)
	}
	want := []NetworkResult{
		{Name: "flat", Action: "defined", Bridge: "gbr-vmgroup", Details: []string{"started", "autostart on"}},
		{Name: "prod", Action: "defined", Bridge: "gbr-vmgroup", VLAN: 100, Details: []string{"started", "autostart on"}},
		{Name: "san", Action: "defined", Bridge: "gbr-storage", VLAN: 200, Details: []string{"started", "autostart on"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first define (-want +got):\n%s", diff)
	}

	// Converged: nothing to do, and nothing done.
	f.calls = nil
	got, err = DefineNetworks(f, s, "hv1", names, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Action != "unchanged" || len(r.Details) > 0 {
			t.Errorf("converged host: %+v, want unchanged", r)
		}
	}
	if len(f.calls) > 0 {
		t.Errorf("converged host got changes: %q", f.calls)
	}

	// Stopped by hand: started again, not redefined.
	f.nets["flat"].state.Active = false
	f.calls = nil
	r, err := DefineNetwork(f, s, "hv1", "flat", opt)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(NetworkResult{Name: "flat", Action: "fixed", Bridge: "gbr-vmgroup", Details: []string{"started"}}, r); diff != "" {
		t.Errorf("stopped network (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"start flat"}, f.calls); diff != "" {
		t.Errorf("stopped network: calls (-want +got):\n%s", diff)
	}
}

func TestDefineNetworkDrift(t *testing.T) {
	s := testSpec(t)
	f := newFakeConn()
	// A native VLAN (libvirt >= 11.0) puts the tag in the network XML.
	opt := domains.NetworkOptions{NativeVLAN: true}
	if _, err := DefineNetworks(f, s, "hv1", []string{"prod", "san"}, opt); err != nil {
		t.Fatal(err)
	}
	uuid := f.nets["prod"].uuid()
	// The spec moves prod to another VLAN and san to another group's
	// bridge; san has two NICs plugged in.
	s.Network("prod").VLAN = 101
	s.Network("san").AdapterGroup = "vmgroup"
	f.nets["san"].ports = 2
	f.calls = nil
	got, err := DefineNetworks(f, s, "hv1", []string{"prod", "san"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		// The drift wording is domains.NetworkDrift's; here only that
		// there is some.
		if len(got[i].Details) == 0 {
			t.Fatalf("%s: no drift reported: %+v", got[i].Name, got[i])
		}
		got[i].Details = got[i].Details[1:]
	}
	want := []NetworkResult{
		{Name: "prod", Action: "updated", Bridge: "gbr-vmgroup", VLAN: 101, Details: []string{"restarted"}},
		{Name: "san", Action: "updated", Bridge: "gbr-vmgroup", VLAN: 200, Details: []string{"2 NICs in use: new definition applies when the network restarts; run 'gallium-net nic sync --all' to update them now"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("drifted networks (-want +got):\n%s", diff)
	}
	// Redefined in place (same UUID); the busy network is not restarted.
	if diff := cmp.Diff([]string{"define prod", "stop prod", "start prod", "define san"}, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if f.nets["prod"].uuid() != uuid {
		t.Errorf("prod's UUID changed from %s to %s", uuid, f.nets["prod"].uuid())
	}
	rows, err := ListNetworks(f, s, "hv1", opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name != "flat" && r.Spec != "in line" {
			t.Errorf("%s after the redefinition: %q, want in line", r.Name, r.Spec)
		}
	}
}

// A network of the spec's name that gallium-net does not own (libvirt's NAT
// network, another team's bridge) is an error and is left exactly as it is;
// the other networks are still defined.
func TestDefineNetworkForeignUntouched(t *testing.T) {
	s := testSpec(t)
	f := newFakeConn()
	foreign := `<network><name>prod</name><uuid>11111111-2222-3333-4444-555555555555</uuid><forward mode="nat"></forward><bridge name="virbr0"></bridge></network>`
	f.nets["prod"] = &fakeNet{xml: foreign}
	got, err := DefineNetworks(f, s, "hv1", NetworksOn(s, "hv1"), domains.NetworkOptions{})
	if err == nil || !strings.Contains(err.Error(), "libvirt network prod exists and is not gallium-net's (forward nat, bridge virbr0)") {
		t.Fatalf("err = %v, want the foreign network refused", err)
	}
	var defined []string
	for _, r := range got {
		defined = append(defined, r.Name)
	}
	if diff := cmp.Diff([]string{"flat", "san"}, defined); diff != "" {
		t.Errorf("defined (-want +got):\n%s", diff)
	}
	for _, c := range f.calls {
		if strings.HasSuffix(c, " prod") {
			t.Errorf("the foreign network was touched: %s", c)
		}
	}
	if f.nets["prod"].xml != foreign || f.nets["prod"].state != (NetworkState{}) {
		t.Errorf("the foreign network changed: %+v", f.nets["prod"])
	}
	rows, err := ListNetworks(f, s, "hv1", domains.NetworkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []NetworkRow{
		{Name: "flat", Owned: true, Active: true, Autostart: true, Bridge: "gbr-vmgroup", Spec: "in line"},
		{Name: "prod", Bridge: "virbr0", VLAN: 100, Spec: "name clash: a network gallium-net does not own"},
		{Name: "san", Owned: true, Active: true, Autostart: true, Bridge: "gbr-storage", VLAN: 200, Spec: "in line"},
	}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("ListNetworks (-want +got):\n%s", diff)
	}
}

func TestListNetworksMissingAndOthers(t *testing.T) {
	s := testSpec(t)
	f := newFakeConn()
	f.nets["default"] = &fakeNet{xml: `<network><name>default</name><forward mode="nat"></forward><bridge name="virbr0"></bridge></network>`, state: NetworkState{Active: true}}
	rows, err := ListNetworks(f, s, "hv2", domains.NetworkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []NetworkRow{
		{Name: "default", Active: true, Bridge: "virbr0", Spec: "not in spec"},
		{Name: "flat", Owned: true, Bridge: "gbr-vmgroup", Spec: "missing: run 'gallium-net network define flat'"},
		{Name: "prod", Owned: true, Bridge: "gbr-vmgroup", VLAN: 100, Spec: "missing: run 'gallium-net network define prod'"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("ListNetworks (-want +got):\n%s", diff)
	}
}
