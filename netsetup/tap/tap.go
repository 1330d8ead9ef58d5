// Package tap programs the tap of each gallium-net VM NIC when a domain
// starts: its bridge, its MTU and its bridge VLAN (libvirt < 11.0 cannot put
// a VLAN on a tap of a plain Linux bridge). It is all that the libvirt hook
// links of netsetup, so it imports nothing of netsetup or plugin: the
// netlink binding and the standard library only (hooks/imports_test.go,
// netsetup/imports_test.go). netsetup does not import it either.
//
// The core is pure (Plan); Program reads the kernel through a Kernel,
// applies the plan and reads back.
package tap

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// ErrNotFound is returned (wrapped) by a Kernel for a link that does
// not exist.
var ErrNotFound = errors.New("link not found")

// VLAN is one bridge VLAN entry of a bridge port.
type VLAN struct {
	VID      int
	PVID     bool
	Untagged bool
}

func (v VLAN) String() string {
	s := fmt.Sprintf("vid %d", v.VID)
	if v.PVID {
		s += " pvid"
	}
	if v.Untagged {
		s += " untagged"
	}
	return s
}

// LinkState is what the hook needs to know of one kernel link.
type LinkState struct {
	Name   string
	Index  int
	MAC    net.HardwareAddr
	MTU    int
	Up     bool
	Master string // name of the bridge the link is a port of, or ""
	// Bridge is set when the link itself is a bridge.
	Bridge bool
	// VlanFiltering and DefaultPVID describe a bridge (Bridge == true).
	VlanFiltering bool
	DefaultPVID   int
	// VLANs are the bridge VLANs of the link as a bridge port. Only read
	// when its bridge filters VLANs; nil otherwise.
	VLANs []VLAN
}

// Kernel is the narrow kernel surface of tap programming, so that plans
// are tested with a fake and the hook never needs more than this.
type Kernel interface {
	// Link reads link name; a missing link is an error wrapping
	// ErrNotFound. withVLANs asks for the port's bridge VLANs.
	Link(name string, withVLANs bool) (LinkState, error)
	// ByMAC returns the name of the link whose MAC is mac, or "" when
	// none has it.
	ByMAC(mac net.HardwareAddr) (string, error)
	SetMaster(link, bridge string) error
	SetMTU(link string, mtu int) error
	VlanAdd(link string, v VLAN) error
	VlanDel(link string, vid int) error
}

// Config is how one VM NIC's tap should look.
type Config struct {
	Tap    string
	Bridge string
	// VLAN is the network's VID; 0 for an untagged network, whose taps keep
	// the bridge's default PVID.
	VLAN int
	// MTU of the tap; 0 leaves it alone.
	MTU int
}

// OpKind says what a Op changes.
type OpKind int

// The operations of a tap plan, in the order they must run: the port must be
// on the bridge before it has bridge VLANs, and the new PVID goes in before
// the old VLANs go so that the port never forwards untagged traffic on a VLAN
// it should not be on.
const (
	OpSetMaster OpKind = iota
	OpSetMTU
	OpVlanAdd
	OpVlanDel
)

// Op is one kernel write of a tap plan.
type Op struct {
	Kind   OpKind
	Link   string
	Bridge string
	MTU    int
	VLAN   VLAN
}

// String renders the op as the equivalent ip/bridge command line, for logs
// and for what `nic sync` reports.
func (o Op) String() string {
	switch o.Kind {
	case OpSetMaster:
		return fmt.Sprintf("ip link set dev %s master %s", o.Link, o.Bridge)
	case OpSetMTU:
		return fmt.Sprintf("ip link set dev %s mtu %d", o.Link, o.MTU)
	case OpVlanAdd:
		return fmt.Sprintf("bridge vlan add dev %s %s", o.Link, o.VLAN)
	case OpVlanDel:
		return fmt.Sprintf("bridge vlan del dev %s vid %d", o.Link, o.VLAN.VID)
	}
	return fmt.Sprintf("unknown tap op %d", o.Kind)
}

// Plan computes the writes that take tap (as read, with its VLANs when
// bridge filters VLANs) to cfg, given its bridge br as read. A converged tap
// gets no writes.
//
// VLANs are only touched when the bridge filters VLANs: on a bridge without
// filtering every port is on every VLAN and there is nothing to program. A
// tagged network's tap gets exactly one VLAN, the network's VID as PVID and
// untagged (so the guest sees plain frames); every other VID goes, VID 1
// included. An untagged network's tap gets the bridge's default PVID, so a
// tap that moved from a tagged network is returned to the native VLAN.
func Plan(tap, br LinkState, cfg Config) []Op {
	var ops []Op
	if tap.Master != cfg.Bridge {
		ops = append(ops, Op{Kind: OpSetMaster, Link: cfg.Tap, Bridge: cfg.Bridge})
		// A port that changes bridge starts from that bridge's default VLAN.
		tap.VLANs = nil
		if br.DefaultPVID > 0 {
			tap.VLANs = []VLAN{{VID: br.DefaultPVID, PVID: true, Untagged: true}}
		}
	}
	if cfg.MTU > 0 && tap.MTU != cfg.MTU {
		ops = append(ops, Op{Kind: OpSetMTU, Link: cfg.Tap, MTU: cfg.MTU})
	}
	if !br.VlanFiltering {
		return ops
	}
	want := VLAN{VID: cfg.VLAN, PVID: true, Untagged: true}
	if cfg.VLAN == 0 {
		if br.DefaultPVID == 0 {
			// default_pvid 0: the bridge gives new ports no VLAN, so an
			// untagged network's port has none either.
			for _, v := range tap.VLANs {
				ops = append(ops, Op{Kind: OpVlanDel, Link: cfg.Tap, VLAN: v})
			}
			return ops
		}
		want.VID = br.DefaultPVID
	}
	if !slices.Contains(tap.VLANs, want) {
		ops = append(ops, Op{Kind: OpVlanAdd, Link: cfg.Tap, VLAN: want})
	}
	for _, v := range tap.VLANs {
		if v.VID != want.VID {
			ops = append(ops, Op{Kind: OpVlanDel, Link: cfg.Tap, VLAN: v})
		}
	}
	return ops
}

// Result is what Program did to one tap.
type Result struct {
	Tap string
	// Ops are the writes made, in order; empty when the tap was right.
	Ops []Op
}

// Changed reports whether Program wrote anything.
func (r Result) Changed() bool { return len(r.Ops) > 0 }

// Summary lists the writes as command lines, "" when none.
func (r Result) Summary() string {
	s := make([]string, len(r.Ops))
	for i, o := range r.Ops {
		s[i] = o.String()
	}
	return strings.Join(s, "; ")
}

// Program brings tap cfg.Tap in line with cfg: reads it and its bridge,
// applies Plan, and reads back to verify. The bridge must exist.
func Program(k Kernel, cfg Config) (Result, error) {
	res := Result{Tap: cfg.Tap}
	br, err := k.Link(cfg.Bridge, false)
	if err != nil {
		return res, fmt.Errorf("tap %s: bridge %s: %w", cfg.Tap, cfg.Bridge, err)
	}
	if !br.Bridge {
		return res, fmt.Errorf("tap %s: %s is not a bridge", cfg.Tap, cfg.Bridge)
	}
	tap, err := k.Link(cfg.Tap, br.VlanFiltering)
	if err != nil {
		return res, fmt.Errorf("tap %s: %w", cfg.Tap, err)
	}
	// Plan, apply, read back; a second pass covers a port whose VLANs the
	// kernel set on enslaving differently from the bridge's default (a
	// racing writer, say). A third plan must be empty.
	for pass := 0; ; pass++ {
		ops := Plan(tap, br, cfg)
		if len(ops) == 0 {
			return res, nil
		}
		if pass == 2 {
			return res, fmt.Errorf("tap %s: still not as wanted after programming: %s", cfg.Tap, ops[0])
		}
		for _, op := range ops {
			if err := applyOp(k, op); err != nil {
				return res, fmt.Errorf("tap %s: %s: %w", cfg.Tap, op, err)
			}
			res.Ops = append(res.Ops, op)
		}
		if tap, err = k.Link(cfg.Tap, br.VlanFiltering); err != nil {
			return res, fmt.Errorf("tap %s: read back: %w", cfg.Tap, err)
		}
	}
}

func applyOp(k Kernel, op Op) error {
	switch op.Kind {
	case OpSetMaster:
		return k.SetMaster(op.Link, op.Bridge)
	case OpSetMTU:
		return k.SetMTU(op.Link, op.MTU)
	case OpVlanAdd:
		return k.VlanAdd(op.Link, op.VLAN)
	case OpVlanDel:
		return k.VlanDel(op.Link, op.VLAN.VID)
	}
	return fmt.Errorf("unknown tap op %d", op.Kind)
}

// NetworkReady checks that a network can carry VM NICs on this host: its
// bridge exists, is a bridge and is up, and for a tagged network (vlan > 0)
// the uplink is a port of the bridge carrying the VID. It returns a
// description of the first problem, or nil.
func NetworkReady(k Kernel, bridge, uplink string, vlan int) error {
	br, err := k.Link(bridge, false)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("bridge %s does not exist", bridge)
		}
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if !br.Bridge {
		return fmt.Errorf("%s is not a bridge", bridge)
	}
	if !br.Up {
		return fmt.Errorf("bridge %s is down", bridge)
	}
	if vlan == 0 {
		return nil
	}
	if !br.VlanFiltering {
		return fmt.Errorf("bridge %s does not filter VLANs, so VLAN %d cannot be isolated on it", bridge, vlan)
	}
	up, err := k.Link(uplink, true)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("uplink %s of bridge %s does not exist", uplink, bridge)
		}
		return fmt.Errorf("uplink %s: %w", uplink, err)
	}
	if up.Master != bridge {
		return fmt.Errorf("uplink %s is not a port of bridge %s", uplink, bridge)
	}
	for _, v := range up.VLANs {
		if v.VID == vlan {
			return nil
		}
	}
	return fmt.Errorf("VLAN %d is not on uplink %s of bridge %s", vlan, uplink, bridge)
}

// MAC is the MAC libvirt gives the tap of a guest NIC with MAC mac: the
// same address with the first byte 0xFE (so the bridge never takes the
// guest's address as its own). It returns nil for a malformed mac.
func MAC(mac string) net.HardwareAddr {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil
	}
	out := slices.Clone(hw)
	out[0] = 0xfe
	return out
}
