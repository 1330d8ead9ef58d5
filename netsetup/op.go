package netsetup

import (
	"fmt"
	"strings"
)

// OpKind is one kind of kernel write.
type OpKind string

// The kernel writes gallium-net makes. Each is one netlink request (the bond
// creation with a non-zero peer_notif_delay is two).
const (
	OpAddBond      OpKind = "add-bond"
	OpAddBridge    OpKind = "add-bridge"
	OpDel          OpKind = "del"
	OpSetBond      OpKind = "set-bond"      // one bond option: Option=Value
	OpSetFiltering OpKind = "set-filtering" // bridge vlan_filtering
	OpSetMTU       OpKind = "set-mtu"
	OpSetUp        OpKind = "set-up"     // Up says up or down
	OpSetMaster    OpKind = "set-master" // Master "" means nomaster
	OpSetMAC       OpKind = "set-mac"    // MAC, or the MAC of MACFrom at the time of the write
	OpVLANAdd      OpKind = "vlan-add"   // add or change flags
	OpVLANDel      OpKind = "vlan-del"
	OpAddrAdd      OpKind = "addr-add"
	OpAddrDel      OpKind = "addr-del"
	OpRouteReplace OpKind = "route-replace" // default route
	OpRouteDel     OpKind = "route-del"     // default route
)

// Op is one kernel write, as data: the planner emits them, Kernel.Do
// performs them, and String prints the equivalent ip/bridge command.
type Op struct {
	Kind OpKind `json:"kind" yaml:"kind"`
	Link string `json:"link" yaml:"link"`
	// Index asks for this ifindex when (re)creating a link (0: any), so a
	// rollback that re-creates a link gives it back its old index.
	Index int `json:"index,omitempty" yaml:"index,omitempty"`
	MTU   int `json:"mtu,omitempty" yaml:"mtu,omitempty"`
	// Bond is the whole configuration of a new bond.
	Bond   *BondConfig `json:"bond,omitempty" yaml:"bond,omitempty"`
	Option string      `json:"option,omitempty" yaml:"option,omitempty"`
	Value  string      `json:"value,omitempty" yaml:"value,omitempty"`
	On     bool        `json:"on,omitempty" yaml:"on,omitempty"`
	Master string      `json:"master,omitempty" yaml:"master,omitempty"`
	MAC    string      `json:"mac,omitempty" yaml:"mac,omitempty"`
	// MACFrom names the link whose MAC is copied when the op runs.
	MACFrom string `json:"macFrom,omitempty" yaml:"macFrom,omitempty"`
	VLAN    VLAN   `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	Self    bool   `json:"self,omitempty" yaml:"self,omitempty"`
	Addr    string `json:"addr,omitempty" yaml:"addr,omitempty"`
	Route   *Route `json:"route,omitempty" yaml:"route,omitempty"`
}

// String prints the op as the ip/bridge command an operator would type.
func (o Op) String() string {
	switch o.Kind {
	case OpAddBond:
		var b strings.Builder
		fmt.Fprintf(&b, "ip link add %s%s", o.Link, o.indexArg())
		if o.MTU != 0 {
			fmt.Fprintf(&b, " mtu %d", o.MTU)
		}
		if o.MAC != "" {
			fmt.Fprintf(&b, " address %s", o.MAC)
		}
		c := o.Bond
		fmt.Fprintf(&b, " type bond mode %s", c.Mode)
		if c.Miimon != 0 || c.ArpInterval == 0 {
			fmt.Fprintf(&b, " miimon %d", c.Miimon)
		}
		if c.ArpInterval != 0 {
			fmt.Fprintf(&b, " arp_interval %d", c.ArpInterval)
			if len(c.ArpIPTargets) > 0 {
				fmt.Fprintf(&b, " arp_ip_target %s", joinTargets(c.ArpIPTargets))
			}
			if c.ArpValidate != "" && c.ArpValidate != "none" {
				fmt.Fprintf(&b, " arp_validate %s", c.ArpValidate)
			}
		}
		if c.Primary != "" {
			fmt.Fprintf(&b, " primary %s", c.Primary)
		}
		fmt.Fprintf(&b, " primary_reselect %s num_grat_arp %d", c.PrimaryReselect, c.NumGratARP)
		if c.PeerNotifyDelay != 0 {
			fmt.Fprintf(&b, " peer_notif_delay %d", c.PeerNotifyDelay)
		}
		if c.Updelay != 0 {
			fmt.Fprintf(&b, " updelay %d", c.Updelay)
		}
		if c.Downdelay != 0 {
			fmt.Fprintf(&b, " downdelay %d", c.Downdelay)
		}
		if c.FailOverMAC != "" && c.FailOverMAC != "none" {
			fmt.Fprintf(&b, " fail_over_mac %s", c.FailOverMAC)
		}
		return b.String()
	case OpAddBridge:
		s := fmt.Sprintf("ip link add %s%s", o.Link, o.indexArg())
		if o.MTU != 0 {
			s += fmt.Sprintf(" mtu %d", o.MTU)
		}
		if o.MAC != "" {
			s += " address " + o.MAC
		}
		return s + " type bridge vlan_filtering " + boolNum(o.On)
	case OpDel:
		return "ip link del " + o.Link
	case OpSetBond:
		v := o.Value
		if v == "" {
			v = `""` // arp_ip_target "": no targets
		}
		return fmt.Sprintf("ip link set %s type bond %s %s", o.Link, o.Option, v)
	case OpSetFiltering:
		return fmt.Sprintf("ip link set %s type bridge vlan_filtering %s", o.Link, boolNum(o.On))
	case OpSetMTU:
		return fmt.Sprintf("ip link set %s mtu %d", o.Link, o.MTU)
	case OpSetUp:
		if o.On {
			return fmt.Sprintf("ip link set %s up", o.Link)
		}
		return fmt.Sprintf("ip link set %s down", o.Link)
	case OpSetMaster:
		if o.Master == "" {
			return fmt.Sprintf("ip link set %s nomaster", o.Link)
		}
		return fmt.Sprintf("ip link set %s master %s", o.Link, o.Master)
	case OpSetMAC:
		mac := o.MAC
		if mac == "" {
			mac = "$(cat /sys/class/net/" + o.MACFrom + "/address)"
		}
		s := fmt.Sprintf("ip link set %s address %s", o.Link, mac)
		if o.MACFrom != "" {
			s += "  # the MAC of " + o.MACFrom
		}
		return s
	case OpVLANAdd:
		s := fmt.Sprintf("bridge vlan add dev %s vid %d", o.Link, o.VLAN.VID)
		if o.VLAN.PVID {
			s += " pvid"
		}
		if o.VLAN.Untagged {
			s += " untagged"
		}
		if o.Self {
			s += " self"
		}
		return s
	case OpVLANDel:
		s := fmt.Sprintf("bridge vlan del dev %s vid %d", o.Link, o.VLAN.VID)
		if o.Self {
			s += " self"
		}
		return s
	case OpAddrAdd:
		return fmt.Sprintf("ip addr add %s dev %s", o.Addr, o.Link)
	case OpAddrDel:
		return fmt.Sprintf("ip addr del %s dev %s", o.Addr, o.Link)
	case OpRouteReplace:
		return fmt.Sprintf("ip route replace default via %s dev %s", o.Route.Gateway, o.Route.Dev)
	case OpRouteDel:
		return fmt.Sprintf("ip route del default via %s dev %s", o.Route.Gateway, o.Route.Dev)
	}
	return fmt.Sprintf("# unknown op %q on %s", o.Kind, o.Link)
}

func (o Op) indexArg() string {
	if o.Index != 0 {
		return fmt.Sprintf(" index %d", o.Index)
	}
	return ""
}

func boolNum(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Kernel is everything netsetup needs from the kernel: one read of the whole
// state and one write at a time. The netlink implementation is NewNetlink;
// SimKernel simulates it.
type Kernel interface {
	// Observe reads every link, its bond/bridge settings, bridge VLANs,
	// addresses, and the IPv4 default route.
	Observe() (*Snapshot, error)
	// Do performs one write.
	Do(op Op) error
}

// Counter wraps a Kernel and counts its writes, to prove that a converged
// host gets none.
type Counter struct {
	Kernel
	Writes int
	Reads  int
}

// Do counts and forwards one write.
func (c *Counter) Do(op Op) error {
	c.Writes++
	return c.Kernel.Do(op)
}

// Observe counts and forwards one read.
func (c *Counter) Observe() (*Snapshot, error) {
	c.Reads++
	return c.Kernel.Observe()
}
