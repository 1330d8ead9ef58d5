package netsetup

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifla_bond attributes that netlink v1.3.1 does not name.
const iflaBondPeerNotifDelay = 28

// Netlink is the Kernel that talks to the running kernel through netlink,
// in the network namespace of the calling OS thread (tests lock the thread
// into a fresh namespace).
type Netlink struct{}

// NewNetlink returns the netlink Kernel.
func NewNetlink() *Netlink { return &Netlink{} }

// Observe reads links, bond and bridge settings, bridge VLANs, addresses and
// the IPv4 default route. The kernel answers with several dumps; when the
// host changes between them (a dump interrupted by a concurrent change,
// IPv6 autoconfiguration, a link that vanished) it reads again, so the
// snapshot is consistent.
func (n *Netlink) Observe() (*Snapshot, error) {
	var err error
	for attempt := 1; attempt <= 20; attempt++ {
		var s *Snapshot
		s, err = n.observe()
		if err == nil {
			return s, nil
		}
		var notFound netlink.LinkNotFoundError
		if !errors.Is(err, netlink.ErrDumpInterrupted) && !errors.Is(err, unix.ENODEV) && !errors.As(err, &notFound) {
			return nil, err
		}
		time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
	}
	return nil, fmt.Errorf("the host's networking kept changing while it was read: %w", err)
}

func (n *Netlink) observe() (*Snapshot, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	s := &Snapshot{}
	vlans, err := netlink.BridgeVlanList()
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		// A kernel without bridge VLAN filtering has no VLANs to list.
		vlans, err = nil, nil
		s.NoBridgeVLANs = true
	}
	if err != nil {
		return nil, fmt.Errorf("list bridge VLANs: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		out := Link{
			Name:      a.Name,
			Index:     a.Index,
			Kind:      l.Type(),
			MTU:       a.MTU,
			MAC:       a.HardwareAddr.String(),
			Up:        a.Flags&net.FlagUp != 0,
			Master:    names[a.MasterIndex],
			Carrier:   a.RawFlags&unix.IFF_LOWER_UP != 0,
			OperState: a.OperState.String(),
		}
		if bs, ok := a.Slave.(*netlink.BondSlave); ok && bs.PermHardwareAddr != nil {
			out.PermMAC = bs.PermHardwareAddr.String()
		}
		switch l := l.(type) {
		case *netlink.Bond:
			cfg := &BondConfig{
				Mode:            l.Mode.String(),
				Miimon:          l.Miimon,
				PrimaryReselect: l.PrimaryReselect.String(),
				NumGratARP:      l.NumPeerNotif,
				Updelay:         l.UpDelay,
				Downdelay:       l.DownDelay,
				FailOverMAC:     l.FailOverMac.String(),
				ArpInterval:     max(l.ArpInterval, 0),
				ArpValidate:     arpValidateName(uint32(max(int(l.ArpValidate), 0))),
			}
			for _, ip := range l.ArpIpTargets {
				cfg.ArpIPTargets = append(cfg.ArpIPTargets, ip.String())
			}
			if l.Primary > 0 {
				cfg.Primary = names[l.Primary]
			}
			if d, err := peerNotifDelay(a.Index); err == nil {
				cfg.PeerNotifyDelay = d
			} else {
				return nil, fmt.Errorf("bond %s: read peer_notif_delay: %w", a.Name, err)
			}
			out.Bond = cfg
			if l.ActiveSlave > 0 {
				out.ActiveSlave = names[l.ActiveSlave]
			}
		case *netlink.Bridge:
			out.VLANFiltering = l.VlanFiltering != nil && *l.VlanFiltering
			if l.VlanDefaultPVID == nil {
				// The kernel reports the default PVID only when built with
				// bridge VLAN support (vlan_filtering it always reports);
				// without it there are no VLANs.
				s.NoBridgeVLANs = true
			}
		}
		for _, v := range vlans[int32(a.Index)] {
			out.VLANs = append(out.VLANs, VLAN{VID: v.Vid, PVID: v.PortVID(), Untagged: v.EngressUntag()})
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("%s: list addresses: %w", a.Name, err)
		}
		for _, ad := range addrs {
			// Only what an operator configures: global, permanent.
			if ad.Scope != unix.RT_SCOPE_UNIVERSE || ad.Flags&unix.IFA_F_PERMANENT == 0 {
				continue
			}
			out.Addrs = append(out.Addrs, ad.IPNet.String())
		}
		s.Links = append(s.Links, out)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Gw == nil || (r.Dst != nil && !isDefault(r.Dst)) {
			continue
		}
		s.DefaultRoute = &Route{Gateway: r.Gw.String(), Dev: names[r.LinkIndex]}
		break
	}
	hasBridge, hasBond := false, false
	for _, l := range s.Links {
		hasBridge = hasBridge || l.Kind == "bridge"
		hasBond = hasBond || l.Kind == "bond"
	}
	if !hasBridge && !bridgeVLANSupport() {
		s.NoBridgeVLANs = true
	}
	if !hasBond && !bondingSupport() {
		s.NoBonding = true
	}
	s.normalize()
	return s, nil
}

var (
	bridgeVLANOnce, bondingOnce sync.Once
	bridgeVLANs, bonding        bool
)

// bridgeVLANSupport reports whether the kernel has bridge VLAN filtering,
// by creating a filtering bridge in a throwaway network namespace (no write
// to the host's own). It is asked only when the host has no bridge to look
// at, and answered once per process.
func bridgeVLANSupport() bool {
	bridgeVLANOnce.Do(func() {
		on := true
		a := netlink.NewLinkAttrs()
		a.Name = "gn-probe"
		bridgeVLANs = canCreate(&netlink.Bridge{LinkAttrs: a, VlanFiltering: &on})
	})
	return bridgeVLANs
}

// bondingSupport reports whether the kernel can create a bond (the bonding
// driver built in, or a module it loads on demand), as bridgeVLANSupport
// does; asked only when the host has no bond to look at. Without it a plan
// was printed and only its first step failed at apply time.
func bondingSupport() bool {
	bondingOnce.Do(func() {
		a := netlink.NewLinkAttrs()
		a.Name = "gn-probe"
		b := netlink.NewLinkBond(a)
		b.Mode = netlink.BOND_MODE_ACTIVE_BACKUP
		bonding = canCreate(b)
	})
	return bonding
}

// canCreate adds link in a throwaway network namespace and reports whether
// the kernel knows its kind: false only for EOPNOTSUPP (an unknown kind or
// option); when the probe itself fails it assumes a normal kernel.
func canCreate(link netlink.Link) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return true
	}
	defer orig.Close()
	tmp, err := netns.New()
	if err != nil {
		return true
	}
	defer tmp.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("netsetup: cannot return to the original network namespace: " + err.Error())
		}
	}()
	return !errors.Is(netlink.LinkAdd(link), unix.EOPNOTSUPP)
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// peerNotifDelay reads IFLA_BOND_PEER_NOTIF_DELAY, which netlink v1.3.1
// does not parse.
func peerNotifDelay(index int) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_LINKINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, err
			}
			isBond := false
			for _, info := range infos {
				if info.Attr.Type == nl.IFLA_INFO_KIND {
					isBond = strings.TrimRight(string(info.Value), "\x00") == "bond"
				}
			}
			if !isBond {
				// Attribute 28 means something else for other kinds.
				return 0, nil
			}
			for _, info := range infos {
				if info.Attr.Type != nl.IFLA_INFO_DATA {
					continue
				}
				data, err := nl.ParseRouteAttr(info.Value)
				if err != nil {
					return 0, err
				}
				for _, d := range data {
					if d.Attr.Type == iflaBondPeerNotifDelay && len(d.Value) >= 4 {
						return int(nl.NativeEndian().Uint32(d.Value)), nil
					}
				}
			}
		}
	}
	return 0, nil
}

// bondChange sets one IFLA_BOND_* attribute on an existing bond: an
// in-place change that keeps the bond (and its ifindex).
func bondChange(index int, attr uint16, value []byte) error {
	return bondModify(index, func(data *nl.RtAttr) { data.AddRtAttr(int(attr), value) })
}

// bondChangeTargets replaces the ARP targets of an existing bond with ips
// (none: clears them) in one IFLA_BOND_ARP_IP_TARGET list.
func bondChangeTargets(index int, ips []net.IP) error {
	return bondModify(index, func(data *nl.RtAttr) {
		list := data.AddRtAttr(nl.IFLA_BOND_ARP_IP_TARGET, nil)
		for i, ip := range ips {
			list.AddRtAttr(i, []byte(ip.To4()))
		}
	})
}

// bondModify sends one RTM_NEWLINK for the existing bond index with the
// IFLA_INFO_DATA attributes fill adds.
func bondModify(index int, fill func(data *nl.RtAttr)) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bond"))
	fill(info.AddRtAttr(nl.IFLA_INFO_DATA, nil))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// parseTargets parses ARP targets (IPv4 only, as the kernel takes them).
func parseTargets(ts []string) ([]net.IP, error) {
	var out []net.IP
	for _, t := range ts {
		ip := net.ParseIP(t).To4()
		if ip == nil {
			return nil, fmt.Errorf("ARP target %q is not an IPv4 address", t)
		}
		out = append(out, ip)
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func linkAttrs(name string, index, mtu int, mac string) (netlink.LinkAttrs, error) {
	a := netlink.NewLinkAttrs()
	a.Name, a.Index, a.MTU = name, index, mtu
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return a, err
		}
		a.HardwareAddr = hw
	}
	return a, nil
}

// Do performs one write.
func (n *Netlink) Do(op Op) error {
	if err := n.do(op); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (n *Netlink) byName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

func (n *Netlink) do(op Op) error {
	switch op.Kind {
	case OpAddBond:
		a, err := linkAttrs(op.Link, op.Index, op.MTU, op.MAC)
		if err != nil {
			return err
		}
		c := op.Bond
		b := netlink.NewLinkBond(a)
		b.Mode = netlink.StringToBondMode(c.Mode)
		b.Miimon = c.Miimon
		if c.Primary != "" {
			if p, err := netlink.LinkByName(c.Primary); err == nil {
				b.Primary = p.Attrs().Index
			}
		}
		if v, ok := netlink.StringToBondPrimaryReselectMap[c.PrimaryReselect]; ok {
			b.PrimaryReselect = v
		}
		if v, ok := netlink.StringToBondFailOverMacMap[c.FailOverMAC]; ok {
			b.FailOverMac = v
		}
		b.NumPeerNotif = c.NumGratARP
		if c.Miimon != 0 {
			// The kernel applies miimon before the delays of the same
			// message, which it checks against miimon; without miimon
			// it refuses them even as 0, so they are not sent.
			b.UpDelay, b.DownDelay = c.Updelay, c.Downdelay
		}
		if c.ArpInterval != 0 {
			// Applied after miimon (0 here: the kernel refuses both in
			// one message), targets and arp_validate after the interval.
			b.ArpInterval = c.ArpInterval
			ips, err := parseTargets(c.ArpIPTargets)
			if err != nil {
				return err
			}
			b.ArpIpTargets = ips
			v, ok := arpValidateModes[orNone(c.ArpValidate)]
			if !ok {
				return fmt.Errorf("arp_validate %q: use one of none, active, backup, all, filter, filter_active, filter_backup", c.ArpValidate)
			}
			b.ArpValidate = netlink.BondArpValidate(v)
		}
		if err := netlink.LinkAdd(b); err != nil {
			return err
		}
		if c.PeerNotifyDelay != 0 {
			return bondChange(b.Index, iflaBondPeerNotifDelay, nl.Uint32Attr(uint32(c.PeerNotifyDelay)))
		}
		return nil
	case OpAddBridge:
		a, err := linkAttrs(op.Link, op.Index, op.MTU, op.MAC)
		if err != nil {
			return err
		}
		br := &netlink.Bridge{LinkAttrs: a}
		if op.On {
			// Only sent when wanted: a kernel without VLAN filtering
			// refuses the attribute even as 0.
			on := true
			br.VlanFiltering = &on
		}
		return netlink.LinkAdd(br)
	case OpRouteReplace:
		l, err := n.byName(op.Route.Dev)
		if err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(op.Route.Gateway), Table: unix.RT_TABLE_MAIN})
	case OpRouteDel:
		l, err := n.byName(op.Route.Dev)
		if err != nil {
			return err
		}
		return netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(op.Route.Gateway), Table: unix.RT_TABLE_MAIN})
	}
	l, err := n.byName(op.Link)
	if err != nil {
		return err
	}
	switch op.Kind {
	case OpDel:
		return netlink.LinkDel(l)
	case OpSetBond:
		return setBondOption(l.Attrs().Index, op.Option, op.Value)
	case OpSetFiltering:
		return netlink.BridgeSetVlanFiltering(l, op.On)
	case OpSetMTU:
		return netlink.LinkSetMTU(l, op.MTU)
	case OpSetUp:
		if op.On {
			return netlink.LinkSetUp(l)
		}
		return netlink.LinkSetDown(l)
	case OpSetMaster:
		if op.Master == "" {
			return netlink.LinkSetNoMaster(l)
		}
		m, err := n.byName(op.Master)
		if err != nil {
			return err
		}
		return netlink.LinkSetMasterByIndex(l, m.Attrs().Index)
	case OpSetMAC:
		mac := op.MAC
		if op.MACFrom != "" {
			src, err := n.byName(op.MACFrom)
			if err != nil {
				return err
			}
			mac = src.Attrs().HardwareAddr.String()
		}
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return err
		}
		return netlink.LinkSetHardwareAddr(l, hw)
	case OpVLANAdd:
		return netlink.BridgeVlanAdd(l, op.VLAN.VID, op.VLAN.PVID, op.VLAN.Untagged, op.Self, false)
	case OpVLANDel:
		return netlink.BridgeVlanDel(l, op.VLAN.VID, false, false, op.Self, false)
	case OpAddrAdd, OpAddrDel:
		a, err := netlink.ParseAddr(op.Addr)
		if err != nil {
			return err
		}
		if op.Kind == OpAddrAdd {
			return netlink.AddrAdd(l, a)
		}
		// Gone already is what the step wants: the OS's network manager,
		// told by 'host takeover' to let go of the adapter, may drop the
		// address it had put there while the plan runs.
		if err := netlink.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return err
		}
		return nil
	}
	return fmt.Errorf("unknown op %q", op.Kind)
}

func setBondOption(index int, opt, value string) error {
	num := func() (int, error) {
		v, err := strconv.Atoi(value)
		if err != nil {
			return 0, fmt.Errorf("bond option %s: %q is not a number", opt, value)
		}
		return v, nil
	}
	switch opt {
	case "mode":
		return bondChange(index, nl.IFLA_BOND_MODE, nl.Uint8Attr(uint8(netlink.StringToBondMode(value))))
	case "miimon":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, nl.IFLA_BOND_MIIMON, nl.Uint32Attr(uint32(v)))
	case "primary":
		p, err := netlink.LinkByName(value)
		if err != nil {
			return fmt.Errorf("primary %s: %w", value, err)
		}
		return bondChange(index, nl.IFLA_BOND_PRIMARY, nl.Uint32Attr(uint32(p.Attrs().Index)))
	case "primary_reselect":
		v, ok := netlink.StringToBondPrimaryReselectMap[value]
		if !ok {
			return fmt.Errorf("primary_reselect %q: use always, better or failure", value)
		}
		return bondChange(index, nl.IFLA_BOND_PRIMARY_RESELECT, nl.Uint8Attr(uint8(v)))
	case "fail_over_mac":
		v, ok := netlink.StringToBondFailOverMacMap[value]
		if !ok {
			return fmt.Errorf("fail_over_mac %q: use none, active or follow", value)
		}
		return bondChange(index, nl.IFLA_BOND_FAIL_OVER_MAC, nl.Uint8Attr(uint8(v)))
	case "num_grat_arp":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, nl.IFLA_BOND_NUM_PEER_NOTIF, nl.Uint8Attr(uint8(v)))
	case "peer_notif_delay":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, iflaBondPeerNotifDelay, nl.Uint32Attr(uint32(v)))
	case "updelay":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, nl.IFLA_BOND_UPDELAY, nl.Uint32Attr(uint32(v)))
	case "downdelay":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, nl.IFLA_BOND_DOWNDELAY, nl.Uint32Attr(uint32(v)))
	case "arp_interval":
		v, err := num()
		if err != nil {
			return err
		}
		return bondChange(index, nl.IFLA_BOND_ARP_INTERVAL, nl.Uint32Attr(uint32(v)))
	case "arp_validate":
		v, ok := arpValidateModes[orNone(value)]
		if !ok {
			return fmt.Errorf("arp_validate %q: use one of none, active, backup, all, filter, filter_active, filter_backup", value)
		}
		return bondChange(index, nl.IFLA_BOND_ARP_VALIDATE, nl.Uint32Attr(v))
	case "arp_ip_target":
		// One nested list replaces every target (an empty one clears
		// them), as in the kernel's bond_changelink.
		ips, err := parseTargets(splitTargets(value))
		if err != nil {
			return err
		}
		return bondChangeTargets(index, ips)
	}
	return errors.New("unknown bond option " + opt)
}
