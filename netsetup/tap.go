package netsetup

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Tap programming: what the libvirt hook does to each gallium-net VM NIC's
// tap when a domain starts (libvirt < 11.0 cannot put a VLAN on a tap of a
// plain Linux bridge). The core is pure (TapPlan); TapProgram reads the
// kernel through a TapKernel, applies the plan and reads back.

// ErrTapNotFound is returned (wrapped) by a TapKernel for a link that does
// not exist.
var ErrTapNotFound = errors.New("link not found")

// TapVLAN is one bridge VLAN entry of a bridge port.
type TapVLAN struct {
	VID      int
	PVID     bool
	Untagged bool
}

func (v TapVLAN) String() string {
	s := fmt.Sprintf("vid %d", v.VID)
	if v.PVID {
		s += " pvid"
	}
	if v.Untagged {
		s += " untagged"
	}
	return s
}

// TapLinkState is what the hook needs to know of one kernel link.
type TapLinkState struct {
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
	VLANs []TapVLAN
}

// TapKernel is the narrow kernel surface of tap programming, so that plans
// are tested with a fake and the hook never needs more than this.
type TapKernel interface {
	// TapLink reads link name; a missing link is an error wrapping
	// ErrTapNotFound. withVLANs asks for the port's bridge VLANs.
	TapLink(name string, withVLANs bool) (TapLinkState, error)
	// TapByMAC returns the name of the link whose MAC is mac, or "" when
	// none has it.
	TapByMAC(mac net.HardwareAddr) (string, error)
	TapSetMaster(link, bridge string) error
	TapSetMTU(link string, mtu int) error
	TapVlanAdd(link string, v TapVLAN) error
	TapVlanDel(link string, vid int) error
}

// TapConfig is how one VM NIC's tap should look.
type TapConfig struct {
	Tap    string
	Bridge string
	// VLAN is the network's VID; 0 for an untagged network, whose taps keep
	// the bridge's default PVID.
	VLAN int
	// MTU of the tap; 0 leaves it alone.
	MTU int
}

// TapOpKind says what a TapOp changes.
type TapOpKind int

// The operations of a tap plan, in the order they must run: the port must be
// on the bridge before it has bridge VLANs, and the new PVID goes in before
// the old VLANs go so that the port never forwards untagged traffic on a VLAN
// it should not be on.
const (
	TapOpSetMaster TapOpKind = iota
	TapOpSetMTU
	TapOpVlanAdd
	TapOpVlanDel
)

// TapOp is one kernel write of a tap plan.
type TapOp struct {
	Kind   TapOpKind
	Link   string
	Bridge string
	MTU    int
	VLAN   TapVLAN
}

// String renders the op as the equivalent ip/bridge command line, for logs
// and for what `nic sync` reports.
func (o TapOp) String() string {
	switch o.Kind {
	case TapOpSetMaster:
		return fmt.Sprintf("ip link set dev %s master %s", o.Link, o.Bridge)
	case TapOpSetMTU:
		return fmt.Sprintf("ip link set dev %s mtu %d", o.Link, o.MTU)
	case TapOpVlanAdd:
		return fmt.Sprintf("bridge vlan add dev %s %s", o.Link, o.VLAN)
	case TapOpVlanDel:
		return fmt.Sprintf("bridge vlan del dev %s vid %d", o.Link, o.VLAN.VID)
	}
	return fmt.Sprintf("unknown tap op %d", o.Kind)
}

// TapPlan computes the writes that take tap (as read, with its VLANs when
// bridge filters VLANs) to cfg, given its bridge br as read. A converged tap
// gets no writes.
//
// VLANs are only touched when the bridge filters VLANs: on a bridge without
// filtering every port is on every VLAN and there is nothing to program. A
// tagged network's tap gets exactly one VLAN, the network's VID as PVID and
// untagged (so the guest sees plain frames); every other VID goes, VID 1
// included. An untagged network's tap gets the bridge's default PVID, so a
// tap that moved from a tagged network is returned to the native VLAN.
func TapPlan(tap, br TapLinkState, cfg TapConfig) []TapOp {
	var ops []TapOp
	if tap.Master != cfg.Bridge {
		ops = append(ops, TapOp{Kind: TapOpSetMaster, Link: cfg.Tap, Bridge: cfg.Bridge})
		// A port that changes bridge starts from that bridge's default VLAN.
		tap.VLANs = nil
		if br.DefaultPVID > 0 {
			tap.VLANs = []TapVLAN{{VID: br.DefaultPVID, PVID: true, Untagged: true}}
		}
	}
	if cfg.MTU > 0 && tap.MTU != cfg.MTU {
		ops = append(ops, TapOp{Kind: TapOpSetMTU, Link: cfg.Tap, MTU: cfg.MTU})
	}
	if !br.VlanFiltering {
		return ops
	}
	want := TapVLAN{VID: cfg.VLAN, PVID: true, Untagged: true}
	if cfg.VLAN == 0 {
		if br.DefaultPVID == 0 {
			// default_pvid 0: the bridge gives new ports no VLAN, so an
			// untagged network's port has none either.
			for _, v := range tap.VLANs {
				ops = append(ops, TapOp{Kind: TapOpVlanDel, Link: cfg.Tap, VLAN: v})
			}
			return ops
		}
		want.VID = br.DefaultPVID
	}
	if !slices.Contains(tap.VLANs, want) {
		ops = append(ops, TapOp{Kind: TapOpVlanAdd, Link: cfg.Tap, VLAN: want})
	}
	for _, v := range tap.VLANs {
		if v.VID != want.VID {
			ops = append(ops, TapOp{Kind: TapOpVlanDel, Link: cfg.Tap, VLAN: v})
		}
	}
	return ops
}

// TapResult is what TapProgram did to one tap.
type TapResult struct {
	Tap string
	// Ops are the writes made, in order; empty when the tap was right.
	Ops []TapOp
}

// Changed reports whether TapProgram wrote anything.
func (r TapResult) Changed() bool { return len(r.Ops) > 0 }

// Summary lists the writes as command lines, "" when none.
func (r TapResult) Summary() string {
	s := make([]string, len(r.Ops))
	for i, o := range r.Ops {
		s[i] = o.String()
	}
	return strings.Join(s, "; ")
}

// TapProgram brings tap cfg.Tap in line with cfg: reads it and its bridge,
// applies TapPlan, and reads back to verify. The bridge must exist.
func TapProgram(k TapKernel, cfg TapConfig) (TapResult, error) {
	res := TapResult{Tap: cfg.Tap}
	br, err := k.TapLink(cfg.Bridge, false)
	if err != nil {
		return res, fmt.Errorf("tap %s: bridge %s: %w", cfg.Tap, cfg.Bridge, err)
	}
	if !br.Bridge {
		return res, fmt.Errorf("tap %s: %s is not a bridge", cfg.Tap, cfg.Bridge)
	}
	tap, err := k.TapLink(cfg.Tap, br.VlanFiltering)
	if err != nil {
		return res, fmt.Errorf("tap %s: %w", cfg.Tap, err)
	}
	// Plan, apply, read back; a second pass covers a port whose VLANs the
	// kernel set on enslaving differently from the bridge's default (a
	// racing writer, say). A third plan must be empty.
	for pass := 0; ; pass++ {
		ops := TapPlan(tap, br, cfg)
		if len(ops) == 0 {
			return res, nil
		}
		if pass == 2 {
			return res, fmt.Errorf("tap %s: still not as wanted after programming: %s", cfg.Tap, ops[0])
		}
		for _, op := range ops {
			if err := applyTapOp(k, op); err != nil {
				return res, fmt.Errorf("tap %s: %s: %w", cfg.Tap, op, err)
			}
			res.Ops = append(res.Ops, op)
		}
		if tap, err = k.TapLink(cfg.Tap, br.VlanFiltering); err != nil {
			return res, fmt.Errorf("tap %s: read back: %w", cfg.Tap, err)
		}
	}
}

func applyTapOp(k TapKernel, op TapOp) error {
	switch op.Kind {
	case TapOpSetMaster:
		return k.TapSetMaster(op.Link, op.Bridge)
	case TapOpSetMTU:
		return k.TapSetMTU(op.Link, op.MTU)
	case TapOpVlanAdd:
		return k.TapVlanAdd(op.Link, op.VLAN)
	case TapOpVlanDel:
		return k.TapVlanDel(op.Link, op.VLAN.VID)
	}
	return fmt.Errorf("unknown tap op %d", op.Kind)
}

// TapNetworkReady checks that a network can carry VM NICs on this host: its
// bridge exists, is a bridge and is up, and for a tagged network (vlan > 0)
// the uplink is a port of the bridge carrying the VID. It returns a
// description of the first problem, or nil.
func TapNetworkReady(k TapKernel, bridge, uplink string, vlan int) error {
	br, err := k.TapLink(bridge, false)
	if err != nil {
		if errors.Is(err, ErrTapNotFound) {
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
	up, err := k.TapLink(uplink, true)
	if err != nil {
		if errors.Is(err, ErrTapNotFound) {
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

// TapMAC is the MAC libvirt gives the tap of a guest NIC with MAC mac: the
// same address with the first byte 0xFE (so the bridge never takes the
// guest's address as its own). It returns nil for a malformed mac.
func TapMAC(mac string) net.HardwareAddr {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil
	}
	out := slices.Clone(hw)
	out[0] = 0xfe
	return out
}
