package vmnet

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/boltstore"
)

func openLedgerStore(t *testing.T) *store.Store {
	t.Helper()
	b, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(b)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// The policy follows the store: local until a spec is pushed, the ledger
// after.
func TestMACsFor(t *testing.T) {
	ctx := context.Background()
	st := openLedgerStore(t)
	macs, local, err := MACsFor(ctx, st, nil)
	if err != nil || !local {
		t.Fatalf("empty store: %T, local %v, %v; want the local policy", macs, local, err)
	}
	if _, ok := macs.(LocalMACs); !ok {
		t.Errorf("empty store: %T, want LocalMACs", macs)
	}
	if _, err := st.PushSpec(ctx, store.PushRequest{YAML: clusterYAML}); err != nil {
		t.Fatal(err)
	}
	macs, local, err = MACsFor(ctx, st, nil)
	if err != nil || local {
		t.Fatalf("pushed spec: %T, local %v, %v; want the ledger", macs, local, err)
	}
	if _, ok := macs.(Ledger); !ok {
		t.Errorf("pushed spec: %T, want Ledger", macs)
	}
}

func TestLedgerNewMACAndRelease(t *testing.T) {
	ctx := context.Background()
	st := openLedgerStore(t)
	if _, err := st.PushSpec(ctx, store.PushRequest{YAML: clusterYAML}); err != nil {
		t.Fatal(err)
	}
	s := testSpec(t)
	l := Ledger{Store: st}
	rec := store.NIC{DomainUUID: "u1", Domain: "vm1", Network: "prod", Hypervisor: "hv1"}

	// Allocated: under the spec's prefix, recorded for the domain.
	mac, _, err := l.NewMAC(ctx, s, "", nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mac, "52:54:00:aa:") {
		t.Errorf("allocated %s, want one under 52:54:00:aa", mac)
	}
	// The operator's MAC, in dashes: claimed under its canonical form; a
	// second domain cannot have it; undo gives it back.
	want, undo, err := l.NewMAC(ctx, s, "52-54-00-AA-10-01", nil, rec)
	if err != nil || want != "52:54:00:aa:10:01" {
		t.Fatalf("--mac: %s, %v", want, err)
	}
	other := rec
	other.DomainUUID, other.Domain = "u2", "vm2"
	if _, _, err := l.NewMAC(ctx, s, "52:54:00:aa:10:01", nil, other); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a MAC the ledger gives to another domain: err = %v, want ErrConflict", err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.NewMAC(ctx, s, "52:54:00:aa:10:01", nil, other); err != nil {
		t.Errorf("the MAC after undo: %v", err)
	}
	// Release by MAC: the ledger forgets it; releasing again is no error.
	if err := l.Release(ctx, mac); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, mac); err != nil {
		t.Errorf("second release: %v", err)
	}
	nics, err := st.NICs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, n := range nics {
		held = append(held, n.Domain+" "+n.MAC)
	}
	if diff := cmp.Diff([]string{"vm2 52:54:00:aa:10:01"}, held); diff != "" {
		t.Errorf("ledger after release (-want +got):\n%s", diff)
	}
	// A MAC already on this host is refused before the ledger is asked.
	if _, _, err := l.NewMAC(ctx, s, "52:54:00:aa:20:02", map[string]bool{"52:54:00:aa:20:02": true}, rec); err == nil || !strings.Contains(err.Error(), "already used by a NIC on this host") {
		t.Errorf("a MAC used on this host: err = %v", err)
	}
}

// Adopting existing NICs: a NIC on a bridge is named by it, adopting again
// changes nothing, and a MAC the ledger gives to another NIC is a conflict
// that skips that NIC only.
func TestAdoptNICs(t *testing.T) {
	ctx := context.Background()
	st := openLedgerStore(t)
	if _, err := st.PushSpec(ctx, store.PushRequest{YAML: clusterYAML}); err != nil {
		t.Fatal(err)
	}
	f := newFakeConn()
	f.addDomain(t, "vm1", false, "52:54:00:aa:30:01")
	f.addDomain(t, "vm2", true, "52:54:00:aa:30:02")
	// vm2 runs with its NIC on a bridge rather than a libvirt network.
	src := f.doms["vm2"].live.Devices.Interfaces[0].Source
	src.Network, src.Bridge = nil, &libvirtxml.DomainInterfaceSourceBridge{Bridge: "br0"}
	host, err := HostNICs(f)
	if err != nil {
		t.Fatal(err)
	}
	wantHost := []HostNIC{
		{Domain: "vm1", UUID: "00000001-0000-0000-0000-000000000000", MAC: "52:54:00:aa:30:01", Network: "default"},
		{Domain: "vm2", UUID: "00000002-0000-0000-0000-000000000000", MAC: "52:54:00:aa:30:02", Network: "bridge:br0"},
	}
	if diff := cmp.Diff(wantHost, host); diff != "" {
		t.Fatalf("HostNICs (-want +got):\n%s", diff)
	}
	// Another hypervisor already holds vm2's MAC.
	if _, _, err := st.ImportNIC(ctx, store.NIC{DomainUUID: "elsewhere", Key: "net0", MAC: "52:54:00:aa:30:02", Network: "prod", Hypervisor: "hv2"}); err != nil {
		t.Fatal(err)
	}
	outcome := func(as []Adoption) []string {
		var out []string
		for _, a := range as {
			switch {
			case a.Conflict != nil:
				out = append(out, a.NIC.MAC+" conflict")
			case a.Imported:
				out = append(out, a.NIC.MAC+" imported")
			default:
				out = append(out, a.NIC.MAC+" kept")
			}
		}
		return out
	}
	got, err := AdoptNICs(ctx, st, host, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"52:54:00:aa:30:01 imported", "52:54:00:aa:30:02 conflict"}, outcome(got)); diff != "" {
		t.Errorf("first adoption (-want +got):\n%s", diff)
	}
	if got, err = AdoptNICs(ctx, st, host, "hv1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"52:54:00:aa:30:01 kept", "52:54:00:aa:30:02 conflict"}, outcome(got)); diff != "" {
		t.Errorf("second adoption (-want +got):\n%s", diff)
	}
}
