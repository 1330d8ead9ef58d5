// Package netsetup realises a hypervisor's part of the cluster spec as host
// networking: an active-backup bond per adapter group, a VLAN-filtering
// bridge on top of it, the networks' VLANs on the bond's bridge port, and the
// management IP untagged on the infrastructure bridge.
//
// It works in three pure steps around two narrow I/O points: Desired derives
// the wanted state from the spec, Kernel.Observe reads what the host has,
// MakePlan diffs them into an ordered list of steps that each print as an
// `ip`/`bridge` command, and Apply runs the steps through Kernel.Do with an
// undo list. The only implementation of Kernel that talks to the kernel is
// the netlink one (netlink.go); SimKernel simulates the kernel's behaviour
// so that plans, apply and rollback are tested without root, and the planner
// itself uses it to predict what each step does.
//
// netsetup's side jobs have packages of their own below it: netsetup/tap
// (the hook's tap programming), netsetup/confirm (commit-confirm of an
// apply), netsetup/probe (verify-topology's probe frames) and
// netsetup/announce (failover announcements, `host watch`). netsetup
// imports none of them: tap, probe and announce import nothing of netsetup
// either, and confirm builds on it (netsetup/imports_test.go keeps this).
//
// Decisions (where DESIGN.md is silent):
//   - Inside a bridge the native (untagged) VLAN is VID 1, the bridge's
//     default PVID (NativeVID), so a tagged network cannot use VLAN 1. The
//     uplink (bond port) carries VID 1 as PVID untagged only when the group
//     has an untagged network or carries the management IP; the bridge
//     itself has VID 1 only where the management IP lives.
//   - The bond's MAC is its first adapter's (fail_over_mac none); the bridge
//     is pinned to it when created, so VM taps never change it.
//   - gallium-net manages gb-*/gbr-* links (model.Owned) and the spec's
//     adapters, nothing else. Deleting an owned link (its group left the
//     spec, or it must be re-created) is a disruptive step.
//   - Managed addresses are the permanent global ones. An adapter that
//     becomes a slave loses its addresses, last: after the management IP is
//     on the bridge and the default route moved. On gallium's own links old
//     addresses go before new ones (the kernel drops secondaries with their
//     primary). Only the IPv4 default route of the main table is managed,
//     and only when cluster.gateway is set.
//   - Commit-confirm covers plans that touch the infrastructure bond,
//     bridge or adapters, the link that has the management IP now, or the
//     default route (Plan.ChangesManagement; netsetup/confirm arms the
//     rollback). State lives under /var/lib/gallium-net/confirm.
//   - The kernel sends a bond's gratuitous ARPs only for addresses on the
//     bond itself; the management IP is on the bridge above it and the VMs
//     behind it, so after a failback to the primary the switch may keep
//     sending to the old port until it relearns (lab: from none to every
//     probe lost for a second). Watch (`gallium-net host watch`, a service)
//     announces the bridge's IPs and the VMs' MACs out of the new adapter
//     after every change of active adapter (netsetup/announce).
//   - Bonds wait updelay (spec bond.updelayMs, default 1000 ms, see
//     model.DefaultUpdelayMs) before using an adapter whose link came
//     back: a plugged cable has carrier before the switch port forwards,
//     and a failback into that port lost nearly every probe for up to a
//     second in the lab; with the default none. downdelay (bond.downdelayMs)
//     defaults to 0, so a failover is immediate. Both change in place.
//     The kernel counts both (and peer_notif_delay) in miimon intervals,
//     so a miimon change scales them: the planner diffs the bond options
//     one at a time against the simulated result of the previous write and
//     sets the delays again after a miimon change; Desired refuses delays
//     that are not multiples of miimon, which the kernel would round down
//     and the host would never converge to.
//   - A group's bond.arpIntervalMs switches its bond from MII to ARP
//     monitoring (arp_interval, arp_ip_target, arp_validate): the kernel
//     runs one monitor, and the switch is made in place on the live bond,
//     in the order the kernel needs: to ARP, the miimon-based delays go
//     to 0 while miimon still runs (the kernel keeps them as hidden counts
//     that would come back with miimon), then the targets and
//     arp_validate, then arp_interval, which makes the kernel stop miimon;
//     back to MII, miimon first (the kernel stops the ARP monitor and
//     resets arp_validate to none), then the delays, and the targets are
//     cleared last, when no monitor uses them. The infrastructure group's
//     default targets are the other hypervisors' management IPs, so the
//     desired bond differs per host (model.Spec.ARPTargetsOn).
package netsetup

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// NativeVID is the bridge VLAN that carries a group's untagged (native)
// traffic: the bridge's default PVID. An untagged network, the management IP
// and the taps of VMs on untagged networks all use it inside the bridge.
const NativeVID = 1

// BondMode is the only bond mode gallium-net creates.
const BondMode = "active-backup"

// VLAN is one bridge VLAN entry of a port (or of the bridge itself).
type VLAN struct {
	VID      uint16 `json:"vid" yaml:"vid"`
	PVID     bool   `json:"pvid,omitempty" yaml:"pvid,omitempty"`
	Untagged bool   `json:"untagged,omitempty" yaml:"untagged,omitempty"`
}

func (v VLAN) String() string {
	s := fmt.Sprint(v.VID)
	if v.PVID {
		s += " pvid"
	}
	if v.Untagged {
		s += " untagged"
	}
	return s
}

// BondConfig is the part of a bond's configuration that gallium-net manages.
type BondConfig struct {
	Mode            string `json:"mode" yaml:"mode"`
	Miimon          int    `json:"miimon" yaml:"miimon"`
	Primary         string `json:"primary,omitempty" yaml:"primary,omitempty"`
	PrimaryReselect string `json:"primaryReselect" yaml:"primaryReselect"`
	NumGratARP      int    `json:"numGratArp" yaml:"numGratArp"`
	PeerNotifyDelay int    `json:"peerNotifyDelay" yaml:"peerNotifyDelay"`
	// Updelay and Downdelay are in ms, multiples of Miimon (the kernel
	// keeps them as counts of miimon intervals, so a miimon change scales
	// them: the planner sets them again after one).
	Updelay     int    `json:"updelay" yaml:"updelay"`
	Downdelay   int    `json:"downdelay" yaml:"downdelay"`
	FailOverMAC string `json:"failOverMac" yaml:"failOverMac"`
	// ArpInterval (ms) is the ARP monitor's interval, 0 when the bond uses
	// MII monitoring; the kernel runs one of the two (Miimon is 0 while
	// ArpInterval is not). ArpIPTargets are its IPv4 targets and
	// ArpValidate its arp_validate mode ("none" when off).
	ArpInterval  int      `json:"arpInterval,omitempty" yaml:"arpInterval,omitempty"`
	ArpIPTargets []string `json:"arpIpTargets,omitempty" yaml:"arpIpTargets,omitempty"`
	ArpValidate  string   `json:"arpValidate,omitempty" yaml:"arpValidate,omitempty"`
}

// clone returns a deep copy.
func (b *BondConfig) clone() *BondConfig {
	c := *b
	c.ArpIPTargets = append([]string(nil), b.ArpIPTargets...)
	return &c
}

// Route is an IPv4 default route.
type Route struct {
	Gateway string `json:"gateway" yaml:"gateway"`
	Dev     string `json:"dev" yaml:"dev"`
}

func (r *Route) equal(o *Route) bool {
	if r == nil || o == nil {
		return r == nil && o == nil
	}
	return *r == *o
}

// Link is one kernel link as observed (or as snapshotted for a rollback).
type Link struct {
	Name  string `json:"name" yaml:"name"`
	Index int    `json:"index" yaml:"index"`
	// Kind is the kernel's link kind: bond, bridge, veth, dummy, or device
	// for a physical NIC.
	Kind   string `json:"kind" yaml:"kind"`
	MTU    int    `json:"mtu" yaml:"mtu"`
	MAC    string `json:"mac,omitempty" yaml:"mac,omitempty"`
	Up     bool   `json:"up" yaml:"up"`
	Master string `json:"master,omitempty" yaml:"master,omitempty"`
	// Bond is set for bonds.
	Bond *BondConfig `json:"bond,omitempty" yaml:"bond,omitempty"`
	// VLANFiltering is the bridge option (bridges only).
	VLANFiltering bool `json:"vlanFiltering,omitempty" yaml:"vlanFiltering,omitempty"`
	// VLANs are the bridge VLANs of a bridge port, or of a bridge itself.
	VLANs []VLAN `json:"vlans,omitempty" yaml:"vlans,omitempty"`
	// Addrs are the permanent global addresses, CIDR form, sorted.
	Addrs []string `json:"addrs,omitempty" yaml:"addrs,omitempty"`

	// Read-only facts, not restored by a rollback.
	PermMAC     string `json:"permMac,omitempty" yaml:"permMac,omitempty"`
	Carrier     bool   `json:"carrier" yaml:"carrier"`
	OperState   string `json:"operState,omitempty" yaml:"operState,omitempty"`
	ActiveSlave string `json:"activeSlave,omitempty" yaml:"activeSlave,omitempty"`
}

// Snapshot is the observed networking of a host (or the part of it that
// gallium-net may change), the input of MakePlan and what a commit-confirm
// rollback restores.
type Snapshot struct {
	Links []Link `json:"links" yaml:"links"`
	// DefaultRoute is the IPv4 default route of the main table, nil when
	// there is none.
	DefaultRoute *Route `json:"defaultRoute,omitempty" yaml:"defaultRoute,omitempty"`
	// NoBridgeVLANs is set when the kernel has no bridge VLAN support
	// (CONFIG_BRIDGE_VLAN_FILTERING off).
	NoBridgeVLANs bool `json:"noBridgeVlans,omitempty" yaml:"noBridgeVlans,omitempty"`
	// NoBonding is set when the kernel cannot create a bond (no bonding
	// driver, built in or as a module).
	NoBonding bool `json:"noBonding,omitempty" yaml:"noBonding,omitempty"`
	// KeepAddrs are, per link, IPs another daemon manages there (the VIP,
	// HostState.KeepAddrsByLink), recorded with a snapshot saved for a
	// rollback: restoring it neither removes nor re-adds them, since the
	// VIP may have moved to or from this host in the meantime.
	KeepAddrs map[string][]string `json:"keepAddrs,omitempty" yaml:"keepAddrs,omitempty"`
}

// Link returns the link named name, or nil.
func (s *Snapshot) Link(name string) *Link {
	for i := range s.Links {
		if s.Links[i].Name == name {
			return &s.Links[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (s *Snapshot) Clone() *Snapshot {
	out := &Snapshot{Links: make([]Link, len(s.Links)), NoBridgeVLANs: s.NoBridgeVLANs, NoBonding: s.NoBonding}
	if s.KeepAddrs != nil {
		out.KeepAddrs = map[string][]string{}
		for l, ips := range s.KeepAddrs {
			out.KeepAddrs[l] = append([]string(nil), ips...)
		}
	}
	for i, l := range s.Links {
		l.VLANs = append([]VLAN(nil), l.VLANs...)
		l.Addrs = append([]string(nil), l.Addrs...)
		if l.Bond != nil {
			l.Bond = l.Bond.clone()
		}
		out.Links[i] = l
	}
	if s.DefaultRoute != nil {
		r := *s.DefaultRoute
		out.DefaultRoute = &r
	}
	return out
}

// Subset returns the links named in names that exist, plus every link
// gallium-net owns and every link enslaved to one of those: the part of a
// host that an apply may change, and so what a rollback restores.
func (s *Snapshot) Subset(names []string) *Snapshot {
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	for _, l := range s.Links {
		if model.Owned(l.Name) {
			keep[l.Name] = true
		}
	}
	for _, l := range s.Links {
		if l.Master != "" && model.Owned(l.Master) {
			keep[l.Name] = true
		}
	}
	out := &Snapshot{NoBridgeVLANs: s.NoBridgeVLANs, NoBonding: s.NoBonding}
	for _, l := range s.Clone().Links {
		if keep[l.Name] {
			out.Links = append(out.Links, l)
		}
	}
	if s.DefaultRoute != nil {
		r := *s.DefaultRoute
		out.DefaultRoute = &r
	}
	return out
}

// normalize sorts everything that has no meaningful order, so that two
// snapshots of the same state compare equal. Addresses keep the kernel's
// order: the first of a subnet is its primary, and deleting a primary
// deletes its secondaries, which the planner's simulation must know
// (Restorable sorts them for comparing).
func (s *Snapshot) normalize() {
	sort.Slice(s.Links, func(i, j int) bool { return s.Links[i].Name < s.Links[j].Name })
	for i := range s.Links {
		l := &s.Links[i]
		sort.Slice(l.VLANs, func(a, b int) bool { return l.VLANs[a].VID < l.VLANs[b].VID })
		if len(l.VLANs) == 0 {
			l.VLANs = nil
		}
		if len(l.Addrs) == 0 {
			l.Addrs = nil
		}
	}
}

// Restorable returns the snapshot without the read-only facts (carrier,
// operstate, active slave), for comparing a host before and after a change.
func (s *Snapshot) Restorable() *Snapshot {
	out := s.Clone()
	for i := range out.Links {
		l := &out.Links[i]
		l.Carrier, l.OperState, l.ActiveSlave = false, "", ""
		sort.Strings(l.Addrs)
	}
	out.normalize()
	return out
}

// HostState is the desired networking of one hypervisor, derived from the
// cluster spec by Desired.
type HostState struct {
	Hypervisor string       `json:"hypervisor" yaml:"hypervisor"`
	Groups     []GroupState `json:"groups" yaml:"groups"`
	// ManagementIP (CIDR) lives untagged on ManagementBridge.
	ManagementIP     string `json:"managementIP" yaml:"managementIP"`
	ManagementBridge string `json:"managementBridge,omitempty" yaml:"managementBridge,omitempty"`
	// VIP is the cluster's floating IP (no prefix), which keepalived adds
	// to and removes from ManagementBridge of whichever hypervisor holds
	// it: gallium-net never removes or adds it.
	VIP string `json:"vip,omitempty" yaml:"vip,omitempty"`
	// DefaultRoute is set when the cluster has a gateway.
	DefaultRoute *Route `json:"defaultRoute,omitempty" yaml:"defaultRoute,omitempty"`
}

// GroupState is the desired bond and bridge of one adapter group.
type GroupState struct {
	Name           string     `json:"name" yaml:"name"`
	Infrastructure bool       `json:"infrastructure,omitempty" yaml:"infrastructure,omitempty"`
	Bond           string     `json:"bond" yaml:"bond"`
	Bridge         string     `json:"bridge" yaml:"bridge"`
	Adapters       []string   `json:"adapters" yaml:"adapters"`
	BondConfig     BondConfig `json:"bondConfig" yaml:"bondConfig"`
	MTU            int        `json:"mtu" yaml:"mtu"`
	// PortVLANs are the VLANs of the bond's bridge port: the tagged
	// networks' VIDs, plus NativeVID as PVID untagged when the group has an
	// untagged network or carries the management IP.
	PortVLANs []VLAN `json:"portVlans" yaml:"portVlans"`
	// BridgeVLANs are the bridge's own VLANs (NativeVID where the
	// management IP lives, none otherwise).
	BridgeVLANs []VLAN `json:"bridgeVlans" yaml:"bridgeVlans"`
	// Addrs are the bridge's addresses (the management IP on the
	// infrastructure bridge).
	Addrs []string `json:"addrs,omitempty" yaml:"addrs,omitempty"`
}

// Group returns the group named name, or nil.
func (h *HostState) Group(name string) *GroupState {
	for i := range h.Groups {
		if h.Groups[i].Name == name {
			return &h.Groups[i]
		}
	}
	return nil
}

// Adapters returns every adapter of every group on this host.
func (h *HostState) Adapters() []string {
	var out []string
	for _, g := range h.Groups {
		out = append(out, g.Adapters...)
	}
	return out
}

// KeepAddrsByLink are the IPs another daemon manages, by link: the VIP on
// the management bridge (nil when the cluster has no VIP).
func (h *HostState) KeepAddrsByLink() map[string][]string {
	if h.VIP == "" || h.ManagementBridge == "" {
		return nil
	}
	return map[string][]string{h.ManagementBridge: {h.VIP}}
}

// ManagementLinks names the links whose change may cut the host off: the
// infrastructure bond, bridge and adapters.
func (h *HostState) ManagementLinks() []string {
	var out []string
	for _, g := range h.Groups {
		if g.Bridge == h.ManagementBridge {
			out = append(out, g.Bond, g.Bridge)
			out = append(out, g.Adapters...)
		}
	}
	return out
}

// Desired derives hypervisor hv's host networking from a spec that
// specfile.Load (or model.SetDefaults) has defaulted and model.Validate has
// found without errors. It is pure, and it checks none of validation's rules
// again: a spec that was not validated gives a meaningless state, not an
// error. Its only error is a hypervisor the spec does not have.
func Desired(spec *model.Spec, hypervisor string) (*HostState, error) {
	hv := spec.Hypervisor(hypervisor)
	if hv == nil {
		return nil, fmt.Errorf("hypervisor %q is not in the cluster spec (known: %s)", hypervisor, strings.Join(spec.HypervisorNames(), ", "))
	}
	mgmt := hv.ManagementIP
	if ip, ipnet, err := net.ParseCIDR(mgmt); err == nil {
		mgmt = (&net.IPNet{IP: ip, Mask: ipnet.Mask}).String()
	}
	hs := &HostState{Hypervisor: hv.Name, ManagementIP: mgmt}
	infra := spec.InfrastructureGroup()
	for _, g := range spec.GroupsOn(hv.Name) {
		gs := GroupState{
			Name:           g.Name,
			Infrastructure: g == infra,
			Bond:           model.BondName(g.Name),
			Bridge:         model.BridgeName(g.Name),
			Adapters:       append([]string(nil), g.Adapters[hv.Name]...),
			MTU:            spec.GroupMTU(g),
			BondConfig: BondConfig{
				Mode:            BondMode,
				Miimon:          g.Bond.Miimon,
				Primary:         g.PrimaryOn(hv.Name),
				PrimaryReselect: g.Bond.PrimaryReselect,
				NumGratARP:      g.Bond.NumGratARP,
				PeerNotifyDelay: g.Bond.PeerNotifyDelayMs,
				Updelay:         g.Bond.Updelay(),
				Downdelay:       g.Bond.DowndelayMs,
				FailOverMAC:     "none",
				ArpInterval:     g.Bond.ArpIntervalMs,
				ArpIPTargets:    spec.ARPTargetsOn(g, hv.Name),
				ArpValidate:     "none",
			},
		}
		if g.Bond.ARPMonitor() {
			gs.BondConfig.ArpValidate = g.Bond.ArpValidate
		}
		native := gs.Infrastructure
		for _, n := range spec.NetworksOn(g.Name) {
			if !n.Tagged() {
				native = true
				continue
			}
			gs.PortVLANs = append(gs.PortVLANs, VLAN{VID: uint16(n.VLAN)})
		}
		if native {
			gs.PortVLANs = append(gs.PortVLANs, VLAN{VID: NativeVID, PVID: true, Untagged: true})
		}
		sort.Slice(gs.PortVLANs, func(i, j int) bool { return gs.PortVLANs[i].VID < gs.PortVLANs[j].VID })
		if gs.Infrastructure {
			gs.BridgeVLANs = []VLAN{{VID: NativeVID, PVID: true, Untagged: true}}
			gs.Addrs = []string{mgmt}
			hs.ManagementBridge = gs.Bridge
			if v := strings.TrimSpace(spec.Cluster.VIP); v != "" {
				// The validator's reading of the VIP, kept canonical so
				// that the planner recognises it on the bridge.
				hs.VIP = v
				if vip, err := netip.ParseAddr(v); err == nil {
					hs.VIP = vip.String()
				}
			}
			if spec.Cluster.Gateway != "" {
				hs.DefaultRoute = &Route{Gateway: spec.Cluster.Gateway, Dev: gs.Bridge}
			}
		}
		hs.Groups = append(hs.Groups, gs)
	}
	return hs, nil
}
