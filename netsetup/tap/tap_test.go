package tap

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

// fakeTapKernel is an in-memory Kernel that behaves like the kernel's
// bridge: a new port gets the bridge's default PVID when it filters VLANs.
type fakeTapKernel struct {
	links  map[string]*LinkState
	writes []string
	failOn string // an op prefix that fails
}

func newFakeTapKernel(links ...LinkState) *fakeTapKernel {
	k := &fakeTapKernel{links: map[string]*LinkState{}}
	for i := range links {
		l := links[i]
		l.VLANs = slices.Clone(l.VLANs)
		k.links[l.Name] = &l
	}
	return k
}

func (k *fakeTapKernel) Link(name string, withVLANs bool) (LinkState, error) {
	l, ok := k.links[name]
	if !ok {
		return LinkState{}, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	c := *l
	c.VLANs = nil
	if withVLANs {
		c.VLANs = slices.Clone(l.VLANs)
	}
	return c, nil
}

func (k *fakeTapKernel) ByMAC(mac net.HardwareAddr) (string, error) {
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

func (k *fakeTapKernel) SetMaster(link, bridge string) error {
	if err := k.record("master " + link + " " + bridge); err != nil {
		return err
	}
	l, b := k.links[link], k.links[bridge]
	if l == nil || b == nil {
		return ErrNotFound
	}
	l.Master = bridge
	l.VLANs = nil
	if b.VlanFiltering && b.DefaultPVID > 0 {
		l.VLANs = []VLAN{{VID: b.DefaultPVID, PVID: true, Untagged: true}}
	}
	return nil
}

func (k *fakeTapKernel) SetMTU(link string, mtu int) error {
	if err := k.record(fmt.Sprintf("mtu %s %d", link, mtu)); err != nil {
		return err
	}
	k.links[link].MTU = mtu
	return nil
}

func (k *fakeTapKernel) VlanAdd(link string, v VLAN) error {
	if err := k.record(fmt.Sprintf("vlan add %s %s", link, v)); err != nil {
		return err
	}
	l := k.links[link]
	l.VLANs = slices.DeleteFunc(l.VLANs, func(x VLAN) bool { return x.VID == v.VID })
	if v.PVID { // only one PVID per port, as in the kernel
		for i := range l.VLANs {
			l.VLANs[i].PVID = false
		}
	}
	l.VLANs = append(l.VLANs, v)
	return nil
}

func (k *fakeTapKernel) VlanDel(link string, vid int) error {
	if err := k.record(fmt.Sprintf("vlan del %s %d", link, vid)); err != nil {
		return err
	}
	l := k.links[link]
	l.VLANs = slices.DeleteFunc(l.VLANs, func(x VLAN) bool { return x.VID == vid })
	return nil
}

var (
	filteringBridge = LinkState{Name: "gbr-vm", Bridge: true, Up: true, VlanFiltering: true, DefaultPVID: 1, MTU: 9000}
	plainBridge     = LinkState{Name: "gbr-vm", Bridge: true, Up: true, MTU: 1500}
)

func TestTapProgram(t *testing.T) {
	tests := []struct {
		name   string
		bridge LinkState
		tap    LinkState
		cfg    Config
		writes []string
		vlans  []VLAN
	}{
		{
			name:   "new tap on tagged network: enslave, mtu, pvid, drop vid 1",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 1500},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 100, MTU: 9000},
			writes: []string{"master vnet0 gbr-vm", "mtu vnet0 9000", "vlan add vnet0 vid 100 pvid untagged", "vlan del vnet0 1"},
			vlans:  []VLAN{{VID: 100, PVID: true, Untagged: true}},
		},
		{
			name:   "libvirt already enslaved the tap: only the VLAN",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []VLAN{{VID: 1, PVID: true, Untagged: true}}},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 200, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 200 pvid untagged", "vlan del vnet0 1"},
			vlans:  []VLAN{{VID: 200, PVID: true, Untagged: true}},
		},
		{
			name:   "converged tap: no writes",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []VLAN{{VID: 100, PVID: true, Untagged: true}}},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 100, MTU: 9000},
			vlans:  []VLAN{{VID: 100, PVID: true, Untagged: true}},
		},
		{
			name:   "network changed VLAN: new PVID first, then the old VID goes",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []VLAN{{VID: 100, PVID: true, Untagged: true}, {VID: 7}}},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 300, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 300 pvid untagged", "vlan del vnet0 100", "vlan del vnet0 7"},
			vlans:  []VLAN{{VID: 300, PVID: true, Untagged: true}},
		},
		{
			name:   "moved to an untagged network: back to the default PVID",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 9000, Master: "gbr-vm", VLANs: []VLAN{{VID: 100, PVID: true, Untagged: true}}},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 0, MTU: 9000},
			writes: []string{"vlan add vnet0 vid 1 pvid untagged", "vlan del vnet0 100"},
			vlans:  []VLAN{{VID: 1, PVID: true, Untagged: true}},
		},
		{
			name:   "untagged network on a new tap: enslaving gives the default PVID",
			bridge: filteringBridge,
			tap:    LinkState{Name: "vnet0", MTU: 9000},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", MTU: 9000},
			writes: []string{"master vnet0 gbr-vm"},
			vlans:  []VLAN{{VID: 1, PVID: true, Untagged: true}},
		},
		{
			name:   "bridge without VLAN filtering: no VLAN writes at all",
			bridge: plainBridge,
			tap:    LinkState{Name: "vnet0", MTU: 1400},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", MTU: 1500},
			writes: []string{"master vnet0 gbr-vm", "mtu vnet0 1500"},
		},
		{
			name:   "MTU 0 leaves the tap's MTU alone",
			bridge: plainBridge,
			tap:    LinkState{Name: "vnet0", MTU: 1400, Master: "gbr-vm"},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm"},
		},
		{
			name:   "tap on another bridge is moved",
			bridge: plainBridge,
			tap:    LinkState{Name: "vnet0", MTU: 1500, Master: "virbr0"},
			cfg:    Config{Tap: "vnet0", Bridge: "gbr-vm", MTU: 1500},
			writes: []string{"master vnet0 gbr-vm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeTapKernel(tt.bridge, tt.tap, LinkState{Name: "virbr0", Bridge: true})
			res, err := Program(k, tt.cfg)
			if err != nil {
				t.Fatalf("Program: %v", err)
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
			if res, err := Program(k, tt.cfg); err != nil || res.Changed() {
				t.Errorf("second Program: changed=%v writes=%q err=%v", res.Changed(), k.writes, err)
			}
		})
	}
}

func TestTapProgramErrors(t *testing.T) {
	tests := []struct {
		name    string
		links   []LinkState
		failOn  string
		cfg     Config
		wantErr string
	}{
		{"missing bridge", []LinkState{{Name: "vnet0"}}, "", Config{Tap: "vnet0", Bridge: "gbr-vm"}, "tap vnet0: bridge gbr-vm: gbr-vm: link not found"},
		{"missing tap", []LinkState{plainBridge}, "", Config{Tap: "vnet9", Bridge: "gbr-vm"}, "tap vnet9: vnet9: link not found"},
		{"bridge is no bridge", []LinkState{{Name: "gbr-vm"}, {Name: "vnet0"}}, "", Config{Tap: "vnet0", Bridge: "gbr-vm"}, "gbr-vm is not a bridge"},
		{"kernel refuses", []LinkState{filteringBridge, {Name: "vnet0"}}, "vlan add", Config{Tap: "vnet0", Bridge: "gbr-vm", VLAN: 5}, "tap vnet0: bridge vlan add dev vnet0 vid 5 pvid untagged: injected failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeTapKernel(tt.links...)
			k.failOn = tt.failOn
			_, err := Program(k, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestTapNetworkReady(t *testing.T) {
	uplink := LinkState{Name: "gb-vm", Master: "gbr-vm", VLANs: []VLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 100}}}
	down := plainBridge
	down.Up = false
	tests := []struct {
		name    string
		links   []LinkState
		vlan    int
		wantErr string // "" means ready
	}{
		{"untagged on plain bridge", []LinkState{plainBridge}, 0, ""},
		{"tagged with VID on uplink", []LinkState{filteringBridge, uplink}, 100, ""},
		{"bridge missing", nil, 0, "bridge gbr-vm does not exist"},
		{"bridge down", []LinkState{down}, 0, "bridge gbr-vm is down"},
		{"not a bridge", []LinkState{{Name: "gbr-vm", Up: true}}, 0, "gbr-vm is not a bridge"},
		{"tagged on plain bridge", []LinkState{plainBridge}, 100, "does not filter VLANs"},
		{"VID missing on uplink", []LinkState{filteringBridge, uplink}, 200, "VLAN 200 is not on uplink gb-vm of bridge gbr-vm"},
		{"uplink missing", []LinkState{filteringBridge}, 100, "uplink gb-vm of bridge gbr-vm does not exist"},
		{"uplink elsewhere", []LinkState{filteringBridge, {Name: "gb-vm"}}, 100, "uplink gb-vm is not a port of bridge gbr-vm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NetworkReady(newFakeTapKernel(tt.links...), "gbr-vm", "gb-vm", tt.vlan)
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
		got := MAC(in)
		if (got == nil && want != "") || (got != nil && got.String() != want) {
			t.Errorf("MAC(%q) = %v, want %q", in, got, want)
		}
	}
}
