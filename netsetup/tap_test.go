package netsetup

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

// fakeTapKernel is an in-memory TapKernel that behaves like the kernel's
// bridge: a new port gets the bridge's default PVID when it filters VLANs.
type fakeTapKernel struct {
	links  map[string]*TapLinkState
	writes []string
	failOn string // an op prefix that fails
}

func newFakeTapKernel(links ...TapLinkState) *fakeTapKernel {
	k := &fakeTapKernel{links: map[string]*TapLinkState{}}
	for i := range links {
		l := links[i]
		l.VLANs = slices.Clone(l.VLANs)
		k.links[l.Name] = &l
	}
	return k
}

func (k *fakeTapKernel) TapLink(name string, withVLANs bool) (TapLinkState, error) {
	l, ok := k.links[name]
	if !ok {
		return TapLinkState{}, fmt.Errorf("%s: %w", name, ErrTapNotFound)
	}
	c := *l
	c.VLANs = nil
	if withVLANs {
		c.VLANs = slices.Clone(l.VLANs)
	}
	return c, nil
}

func (k *fakeTapKernel) TapByMAC(mac net.HardwareAddr) (string, error) {
	for n, l := range k.links {
		if bytes.Equal(l.MAC, mac) {
			return n, nil
		}
	}
	return "", nil
}

func (k *fakeTapKernel) record(s string) error {
	if k.failOn != "" && strings.HasPrefix(s, k.failOn) {
		return fmt.Errorf("injected failure")
	}
	k.writes = append(k.writes, s)
	return nil
}

func (k *fakeTapKernel) TapSetMaster(link, bridge string) error {
	if err := k.record("master " + link + " " + bridge); err != nil {
		return err
	}
	l, b := k.links[link], k.links[bridge]
	if l == nil || b == nil {
		return ErrTapNotFound
	}
	l.Master = bridge
	l.VLANs = nil
	if b.VlanFiltering && b.DefaultPVID > 0 {
		l.VLANs = []TapVLAN{{VID: b.DefaultPVID, PVID: true, Untagged: true}}
	}
	return nil
}

func (k *fakeTapKernel) TapSetMTU(link string, mtu int) error {
	if err := k.record(fmt.Sprintf("mtu %s %d", link, mtu)); err != nil {
		return err
	}
	k.links[link].MTU = mtu
	return nil
}

func (k *fakeTapKernel) TapVlanAdd(link string, v TapVLAN) error {
	if err := k.record(fmt.Sprintf("vlan add %s %s", link, v)); err != nil {
		return err
	}
	l := k.links[link]
	l.VLANs = slices.DeleteFunc(l.VLANs, func(x TapVLAN) bool { return x.VID == v.VID })
	if v.PVID { // only one PVID per port, as in the kernel
		for i := range l.VLANs {
			l.VLANs[i].PVID = false
		}
	}
	l.VLANs = append(l.VLANs, v)
	return nil
}

func (k *fakeTapKernel) TapVlanDel(link string, vid int) error {
	if err := k.record(fmt.Sprintf("vlan del %s %d", link, vid)); err != nil {
		return err
	}
	l := k.links[link]
	l.VLANs = slices.DeleteFunc(l.VLANs, func(x TapVLAN) bool { return x.VID == vid })
	return nil
}

var (
	filteringBridge = TapLinkState{Name: "gbr-vm", Bridge: true, Up: true, VlanFiltering: true, DefaultPVID: 1, MTU: 9000}
	plainBridge     = TapLinkState{Name: "gbr-vm", Bridge: true, Up: true, MTU: 1500}
)

func TestTapProgram(t *testing.T) {
	tests := []struct {
		name   string
		bridge TapLinkState
		tap    TapLinkState
		cfg    TapConfig
		writes []string
		vlans  []TapVLAN
	}{
		{
			name:   "new tap on tagged network: enslave, mtu, pvid, drop vid 1",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 1500},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 100, MTU: 9000},
			writes: []string{"master vnet0 gbr-vm", "mtu vnet0 9000", "vlan add vnet0 vid 100 pvid untagged", "vlan del vnet0 1"},
			vlans:  []TapVLAN{{VID: 100, PVID: true, Untagged: true}},
		},
		{
			name:   "libvirt already enslaved the tap: only the VLAN",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []TapVLAN{{VID: 1, PVID: true, Untagged: true}}},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 200, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 200 pvid untagged", "vlan del vnet0 1"},
			vlans:  []TapVLAN{{VID: 200, PVID: true, Untagged: true}},
		},
		{
			name:   "converged tap: no writes",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []TapVLAN{{VID: 100, PVID: true, Untagged: true}}},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 100, MTU: 9000},
			vlans:  []TapVLAN{{VID: 100, PVID: true, Untagged: true}},
		},
		{
			name:   "network changed VLAN: new PVID first, then the old VID goes",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []TapVLAN{{VID: 100, PVID: true, Untagged: true}, {VID: 7}}},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 300, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 300 pvid untagged", "vlan del vnet0 100", "vlan del vnet0 7"},
			vlans:  []TapVLAN{{VID: 300, PVID: true, Untagged: true}},
		},
		{
			name:   "moved to an untagged network: back to the default PVID",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []TapVLAN{{VID: 100, PVID: true, Untagged: true}}},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 0, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 1 pvid untagged", "vlan del vnet0 100"},
			vlans:  []TapVLAN{{VID: 1, PVID: true, Untagged: true}},
		},
		{
			name:   "untagged network on a new tap: enslaving gives the default PVID",
			bridge: filteringBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 9000},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", MTU: 9000},
			writes: []string{"master vnet0 gbr-vm"},
			vlans:  []TapVLAN{{VID: 1, PVID: true, Untagged: true}},
		},
		{
			name:   "bridge without VLAN filtering: no VLAN writes at all",
			bridge: plainBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 1400},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", MTU: 1500},
			writes: []string{"master vnet0 gbr-vm", "mtu vnet0 1500"},
		},
		{
			name:   "MTU 0 leaves the tap's MTU alone",
			bridge: plainBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 1400, Master: "gbr-vm"},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm"},
		},
		{
			name:   "tap on another bridge is moved",
			bridge: plainBridge,
			tap:    TapLinkState{Name: "vnet0", MTU: 1500, Master: "virbr0"},
			cfg:    TapConfig{Tap: "vnet0", Bridge: "gbr-vm", MTU: 1500},
			writes: []string{"master vnet0 gbr-vm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeTapKernel(tt.bridge, tt.tap, TapLinkState{Name: "virbr0", Bridge: true})
			res, err := TapProgram(k, tt.cfg)
			if err != nil {
				t.Fatalf("TapProgram: %v", err)
			}
			if !slices.Equal(k.writes, tt.writes) {
				t.Errorf("writes:\n got %q\nwant %q", k.writes, tt.writes)
			}
			if res.Changed() != (len(tt.writes) > 0) {
				t.Errorf("Changed() = %v with writes %q", res.Changed(), k.writes)
			}
			got := k.links[tt.cfg.Tap]
			if got.Master != tt.cfg.Bridge {
				t.Errorf("tap master = %q, want %q", got.Master, tt.cfg.Bridge)
			}
			if tt.bridge.VlanFiltering && !slices.Equal(got.VLANs, tt.vlans) {
				t.Errorf("tap VLANs = %v, want %v", got.VLANs, tt.vlans)
			}
			// Programming again is a no-op: idempotence.
			k.writes = nil
			if res, err := TapProgram(k, tt.cfg); err != nil || res.Changed() {
				t.Errorf("second TapProgram: changed=%v writes=%q err=%v", res.Changed(), k.writes, err)
			}
		})
	}
}

func TestTapProgramErrors(t *testing.T) {
	tests := []struct {
		name    string
		links   []TapLinkState
		failOn  string
		cfg     TapConfig
		wantErr string
	}{
		{"missing bridge", []TapLinkState{{Name: "vnet0"}}, "", TapConfig{Tap: "vnet0", Bridge: "gbr-vm"}, "tap vnet0: bridge gbr-vm: gbr-vm: link not found"},
		{"missing tap", []TapLinkState{plainBridge}, "", TapConfig{Tap: "vnet9", Bridge: "gbr-vm"}, "tap vnet9: vnet9: link not found"},
		{"bridge is no bridge", []TapLinkState{{Name: "gbr-vm"}, {Name: "vnet0"}}, "", TapConfig{Tap: "vnet0", Bridge: "gbr-vm"}, "gbr-vm is not a bridge"},
		{"kernel refuses", []TapLinkState{filteringBridge, {Name: "vnet0"}}, "vlan add", TapConfig{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 5}, "tap vnet0: bridge vlan add dev vnet0 vid 5 pvid untagged: injected failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeTapKernel(tt.links...)
			k.failOn = tt.failOn
			_, err := TapProgram(k, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestTapNetworkReady(t *testing.T) {
	uplink := TapLinkState{Name: "gb-vm", Master: "gbr-vm", VLANs: []TapVLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 100}}}
	down := plainBridge
	down.Up = false
	tests := []struct {
		name    string
		links   []TapLinkState
		vlan    int
		wantErr string // "" means ready
	}{
		{"untagged on plain bridge", []TapLinkState{plainBridge}, 0, ""},
		{"tagged with VID on uplink", []TapLinkState{filteringBridge, uplink}, 100, ""},
		{"bridge missing", nil, 0, "bridge gbr-vm does not exist"},
		{"bridge down", []TapLinkState{down}, 0, "bridge gbr-vm is down"},
		{"not a bridge", []TapLinkState{{Name: "gbr-vm", Up: true}}, 0, "gbr-vm is not a bridge"},
		{"tagged on plain bridge", []TapLinkState{plainBridge}, 100, "does not filter VLANs"},
		{"VID missing on uplink", []TapLinkState{filteringBridge, uplink}, 200, "VLAN 200 is not on uplink gb-vm of bridge gbr-vm"},
		{"uplink missing", []TapLinkState{filteringBridge}, 100, "uplink gb-vm of bridge gbr-vm does not exist"},
		{"uplink elsewhere", []TapLinkState{filteringBridge, {Name: "gb-vm"}}, 100, "uplink gb-vm is not a port of bridge gbr-vm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TapNetworkReady(newFakeTapKernel(tt.links...), "gbr-vm", "gb-vm", tt.vlan)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestTapMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:12:34:56":       "fe:54:00:12:34:56",
		"02:AB:CD:EF:00:01":       "fe:ab:cd:ef:00:01",
		"nonsense":                "",
		"00:11:22:33:44:55:66:77": "",
	} {
		got := TapMAC(in)
		if (got == nil && want != "") || (got != nil && got.String() != want) {
			t.Errorf("TapMAC(%q) = %v, want %q", in, got, want)
		}
	}
}
