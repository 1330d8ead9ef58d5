// Package model is gallium-net's model of a cluster network: the spec types
// of the cluster YAML, defaults, validation, derived kernel names and MAC
// rules. It does no netlink and no libvirt: everything here is pure and
// testable without root.
//
// It links no YAML parser: strict loading of a spec file lives in
// plugin/specfile. The libvirt hook links this package (through domains and
// netsetup) and reads only JSON, so a YAML parser here would run its package
// initialisation on every VM start.
package model

import (
	"net/netip"
	"strings"
)

// Spec is one whole cluster description, as read from the cluster YAML. Every
// hypervisor reads the same spec and realises its own part of it.
type Spec struct {
	Cluster          Cluster           `yaml:"cluster" json:"cluster"`
	Hypervisors      []Hypervisor      `yaml:"hypervisors" json:"hypervisors"`
	AdapterGroups    []AdapterGroup    `yaml:"adapterGroups" json:"adapterGroups"`
	Networks         []Network         `yaml:"networks" json:"networks"`
	HardwareProfiles []HardwareProfile `yaml:"hardwareProfiles,omitempty" json:"hardwareProfiles,omitempty"`
}

// Cluster holds the cluster-wide settings.
type Cluster struct {
	Name string `yaml:"name" json:"name"`
	// Subnet is the management subnet in CIDR form (192.168.1.0/24).
	Subnet string `yaml:"subnet" json:"subnet"`
	// VIP is the floating virtual IP, a bare address inside Subnet.
	VIP string `yaml:"vip" json:"vip"`
	// Gateway is the optional default gateway for the management IPs.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Evaluation allows single-adapter hypervisors (not for production).
	Evaluation bool `yaml:"evaluation,omitempty" json:"evaluation,omitempty"`
	// MACPrefix is the prefix of allocated VM MACs, 1 to 5 bytes ("52:54:00").
	MACPrefix string `yaml:"macPrefix,omitempty" json:"macPrefix,omitempty"`
	// DefaultProfile is the hardware profile of a VM that names none.
	DefaultProfile string `yaml:"defaultProfile,omitempty" json:"defaultProfile,omitempty"`
	// MTU of bonds and bridges unless a group sets its own (default 1500).
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// Hypervisor is one host of the cluster.
type Hypervisor struct {
	Name string `yaml:"name" json:"name"`
	// ManagementIP is the host's static management address in CIDR form.
	ManagementIP string    `yaml:"managementIP" json:"managementIP"`
	Adapters     []Adapter `yaml:"adapters" json:"adapters"`
}

// Adapter is a physical network adapter of one hypervisor.
type Adapter struct {
	Name string `yaml:"name" json:"name"`
	// SpeedMbps is the link speed; 0 means "read it from the host".
	SpeedMbps int `yaml:"speedMbps,omitempty" json:"speedMbps,omitempty"`
	// MAC is the adapter's permanent (factory) MAC address and PCIPath its
	// PCI address (0000:3b:00.0); both optional. With either, gallium-net
	// recognises the adapter after the kernel gave it another name (a
	// firmware or kernel update changes predictable names) and says so.
	MAC     string `yaml:"mac,omitempty" json:"mac,omitempty"`
	PCIPath string `yaml:"pciPath,omitempty" json:"pciPath,omitempty"`
}

// AdapterGroup is a set of adapters with active/failover redundancy, realised
// on each hypervisor as an active-backup bond with a VLAN-filtering bridge on
// top.
type AdapterGroup struct {
	Name string `yaml:"name" json:"name"`
	// Infrastructure marks the group that carries cluster communication,
	// storage replication and the management IP (untagged).
	Infrastructure bool `yaml:"infrastructure,omitempty" json:"infrastructure,omitempty"`
	// Adapters lists, per hypervisor name, the adapters in this group.
	Adapters map[string][]string `yaml:"adapters" json:"adapters"`
	Bond     BondTuning          `yaml:"bond,omitempty" json:"bond,omitempty"`
	// MTU of the bond and bridge; 0 means the cluster MTU.
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// BondTuning holds the optional active-backup bond settings of a group.
type BondTuning struct {
	// Miimon is the MII link monitoring interval in milliseconds (default 100).
	Miimon int `yaml:"miimon,omitempty" json:"miimon,omitempty"`
	// Primary is the preferred active adapter; default: the group's first
	// adapter on each hypervisor. When the named adapter is not in the group
	// on a hypervisor, that hypervisor uses its first adapter.
	Primary string `yaml:"primary,omitempty" json:"primary,omitempty"`
	// PrimaryReselect is the kernel's primary_reselect policy: always,
	// better or failure (default always).
	PrimaryReselect string `yaml:"primaryReselect,omitempty" json:"primaryReselect,omitempty"`
	// NumGratARP is how many gratuitous ARPs/unsolicited NAs are sent after a
	// failover (default 1).
	NumGratARP int `yaml:"numGratArp,omitempty" json:"numGratArp,omitempty"`
	// PeerNotifyDelayMs is the delay between those notifications, a multiple
	// of Miimon (default 0).
	PeerNotifyDelayMs int `yaml:"peerNotifyDelayMs,omitempty" json:"peerNotifyDelayMs,omitempty"`
	// UpdelayMs is how long an adapter's link must have been up before the
	// bond uses it (the kernel's updelay), a multiple of Miimon. It keeps a
	// failback from sending traffic to a switch port that has carrier but
	// does not forward yet. A pointer, because 0 (use an adapter as soon as
	// its link is up) is a choice the spec must be able to make, while
	// leaving it out means DefaultUpdelayMs.
	UpdelayMs *int `yaml:"updelayMs,omitempty" json:"updelayMs,omitempty"`
	// DowndelayMs is how long the active adapter's link must have been down
	// before the bond fails over (the kernel's downdelay), a multiple of
	// Miimon (default 0: fail over at once).
	DowndelayMs int `yaml:"downdelayMs,omitempty" json:"downdelayMs,omitempty"`
	// ArpIntervalMs turns on ARP monitoring (the kernel's arp_interval):
	// every interval the bond sends an ARP request to each of its targets
	// and counts an adapter as up only while answers (validated per
	// ArpValidate) come back. Unlike miimon, which sees only the carrier,
	// it fails over when the far side stops forwarding while the link
	// stays up. 0 (the default) is off. The kernel runs one monitor per
	// bond, so with it Miimon, UpdelayMs, DowndelayMs and
	// PeerNotifyDelayMs (all miimon-based) stay unset and the bond is
	// built with miimon 0.
	ArpIntervalMs int `yaml:"arpIntervalMs,omitempty" json:"arpIntervalMs,omitempty"`
	// ArpIPTargets are the IPv4 addresses the bond ARPs for (the kernel's
	// arp_ip_target, at most MaxARPTargets). Default on the infrastructure
	// group: the other hypervisors' management IPs (ARPTargetsOn); other
	// groups must name theirs. A hypervisor never ARPs for its own
	// management IP: it is left out there.
	ArpIPTargets []string `yaml:"arpIPTargets,omitempty" json:"arpIPTargets,omitempty"`
	// ArpValidate is the kernel's arp_validate (ARPValidateModes); default
	// DefaultArpValidate on the infrastructure group and
	// DefaultArpValidateNoIP on the others, which have no IP to validate
	// answers against.
	ArpValidate string `yaml:"arpValidate,omitempty" json:"arpValidate,omitempty"`
}

// ARPMonitor reports whether the bond uses ARP monitoring instead of MII
// monitoring.
func (b BondTuning) ARPMonitor() bool { return b.ArpIntervalMs > 0 }

// Updelay returns UpdelayMs, or the default for the bond's miimon (0 under
// ARP monitoring) when the spec leaves it out (SetDefaults fills it in; this covers a spec that was
// not defaulted).
func (b BondTuning) Updelay() int {
	if b.UpdelayMs != nil {
		return *b.UpdelayMs
	}
	if b.ARPMonitor() {
		return 0 // updelay is miimon-based: none with ARP monitoring
	}
	miimon := b.Miimon
	if miimon == 0 {
		miimon = DefaultMiimon
	}
	return DefaultUpdelay(miimon)
}

// Network is a logical network on one adapter group: VLAN-tagged (1-4094)
// or untagged (VLAN 0).
type Network struct {
	Name         string `yaml:"name" json:"name"`
	AdapterGroup string `yaml:"adapterGroup" json:"adapterGroup"`
	// VLAN is the 802.1Q VID; 0 means untagged (the group's native VLAN).
	VLAN int `yaml:"vlan,omitempty" json:"vlan,omitempty"`
	// MTU of the VM NICs on this network; 0 means the group's MTU.
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// Tagged reports whether the network carries an 802.1Q tag on the uplink.
func (n Network) Tagged() bool { return n.VLAN != 0 }

// HardwareProfile is a VM hardware profile; gallium-net uses its NIC model.
type HardwareProfile struct {
	Name     string `yaml:"name" json:"name"`
	NICModel string `yaml:"nicModel" json:"nicModel"`
}

// Hypervisor returns the hypervisor named name, or nil.
func (s *Spec) Hypervisor(name string) *Hypervisor {
	for i := range s.Hypervisors {
		if s.Hypervisors[i].Name == name {
			return &s.Hypervisors[i]
		}
	}
	return nil
}

// Group returns the adapter group named name, or nil.
func (s *Spec) Group(name string) *AdapterGroup {
	for i := range s.AdapterGroups {
		if s.AdapterGroups[i].Name == name {
			return &s.AdapterGroups[i]
		}
	}
	return nil
}

// Network returns the network named name, or nil.
func (s *Spec) Network(name string) *Network {
	for i := range s.Networks {
		if s.Networks[i].Name == name {
			return &s.Networks[i]
		}
	}
	return nil
}

// Profile returns the hardware profile named name, or nil.
func (s *Spec) Profile(name string) *HardwareProfile {
	for i := range s.HardwareProfiles {
		if s.HardwareProfiles[i].Name == name {
			return &s.HardwareProfiles[i]
		}
	}
	return nil
}

// InfrastructureGroup returns the (first) infrastructure group, or nil.
func (s *Spec) InfrastructureGroup() *AdapterGroup {
	for i := range s.AdapterGroups {
		if s.AdapterGroups[i].Infrastructure {
			return &s.AdapterGroups[i]
		}
	}
	return nil
}

// Adapter returns the adapter named name on this hypervisor, or nil.
func (h *Hypervisor) Adapter(name string) *Adapter {
	for i := range h.Adapters {
		if h.Adapters[i].Name == name {
			return &h.Adapters[i]
		}
	}
	return nil
}

// HypervisorNames returns the names of the spec's hypervisors, in spec
// order: the one list every "use one of" message and completion shows.
func (s *Spec) HypervisorNames() []string {
	names := make([]string, 0, len(s.Hypervisors))
	for _, h := range s.Hypervisors {
		names = append(names, h.Name)
	}
	return names
}

// GroupsOn returns the adapter groups that have adapters on hypervisor hv,
// in spec order.
func (s *Spec) GroupsOn(hv string) []*AdapterGroup {
	var out []*AdapterGroup
	for i := range s.AdapterGroups {
		if len(s.AdapterGroups[i].Adapters[hv]) > 0 {
			out = append(out, &s.AdapterGroups[i])
		}
	}
	return out
}

// NetworksOn returns the networks of adapter group group, in spec order.
func (s *Spec) NetworksOn(group string) []*Network {
	var out []*Network
	for i := range s.Networks {
		if s.Networks[i].AdapterGroup == group {
			out = append(out, &s.Networks[i])
		}
	}
	return out
}

// PrimaryOn returns the primary adapter of group g on hypervisor hv: the
// tuned primary when it is in the group there, else the first adapter.
func (g *AdapterGroup) PrimaryOn(hv string) string {
	ads := g.Adapters[hv]
	if len(ads) == 0 {
		return ""
	}
	for _, a := range ads {
		if a == g.Bond.Primary {
			return a
		}
	}
	return ads[0]
}

// GroupMTU returns the effective MTU of group g.
func (s *Spec) GroupMTU(g *AdapterGroup) int {
	if g.MTU != 0 {
		return g.MTU
	}
	if s.Cluster.MTU != 0 {
		return s.Cluster.MTU
	}
	return DefaultMTU
}

// NetworkMTU returns the effective MTU of network n.
func (s *Spec) NetworkMTU(n *Network) int {
	if n.MTU != 0 {
		return n.MTU
	}
	if g := s.Group(n.AdapterGroup); g != nil {
		return s.GroupMTU(g)
	}
	return DefaultMTU
}

// ARPTargetsOn returns the ARP targets of group g's bond on hypervisor hv,
// as bare IPv4 addresses: the group's arpIPTargets, or on the
// infrastructure group when it names none the other hypervisors'
// management IPs (in spec order, at most MaxARPTargets); hv's own
// management IP is left out either way (a host does not answer its own
// ARP requests). Nil when the group has no ARP monitoring.
func (s *Spec) ARPTargetsOn(g *AdapterGroup, hv string) []string {
	if !g.Bond.ARPMonitor() {
		return nil
	}
	own := ""
	if h := s.Hypervisor(hv); h != nil {
		own = bareIP(h.ManagementIP)
	}
	var out []string
	if len(g.Bond.ArpIPTargets) > 0 {
		for _, t := range g.Bond.ArpIPTargets {
			if t = bareIP(t); t != own {
				out = append(out, t)
			}
		}
		return out
	}
	if !g.Infrastructure {
		return nil
	}
	for _, h := range s.Hypervisors {
		if ip := bareIP(h.ManagementIP); h.Name != hv && ip != "" && ip != own && len(out) < MaxARPTargets {
			out = append(out, ip)
		}
	}
	return out
}

// bareIP returns the canonical address of an IP or CIDR ("" when neither).
func bareIP(s string) string {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return ""
}
