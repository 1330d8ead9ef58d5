package netsetup

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"syscall"
)

// SimKernel simulates the parts of the Linux kernel that netsetup drives:
// bonds (a slave must be down to be enslaved; the first slave gives its MAC to
// a bond whose MAC is random; released slaves are closed and get their MAC
// and MTU back; the last release gives the bond a new random MAC; delays
// are counted in miimon intervals, so they round down to a multiple of
// miimon and scale when it changes), bridges
// (a new port and a new bridge get the default PVID 1 untagged; an unpinned
// bridge takes the lowest port MAC), addresses and the default route (which
// needs an up device with a matching subnet and goes away with the device's
// last address or when the device goes down).
//
// It records every write as an ip/bridge line (Lines), counts them (Writes),
// and can fail the Nth write (FailAt) to test rollback. The planner also runs
// every plan against a SimKernel copy of the observed state to predict
// what each step does (for example the bond MAC that the bridge is pinned to).
type SimKernel struct {
	links  map[string]*simLink
	route  *Route
	next   int // next ifindex
	random int // counter for "random" MACs
	// Lines are the writes performed, as ip/bridge commands.
	Lines []string
	// Writes counts the writes attempted (failed ones included).
	Writes int
	// FailAt makes the FailAt-th write (1-based, counting from now) fail
	// with FailErr; 0 disables.
	FailAt  int
	FailErr error
	// NoVLANs simulates a kernel without bridge VLAN support.
	NoVLANs bool
	// NoBonds simulates a kernel without the bonding driver.
	NoBonds bool
}

type simLink struct {
	Link
	macPinned bool // bridge: address set by hand (addr_assign_type SET)
	macRandom bool // bond: address is random, the first slave replaces it
	primary   string
	origMTU   int // slave: MTU before enslaving
	noCarrier bool
}

// NewSimKernel returns a simulated kernel with the given physical adapters
// (kind device, up, carrier, MTU 1500); macs are assigned from the index.
func NewSimKernel(adapters ...string) *SimKernel {
	f := &SimKernel{links: map[string]*simLink{}, next: 2}
	for _, a := range adapters {
		f.AddDevice(a)
	}
	return f
}

// NewSimKernelFrom returns a simulated kernel in the state of snap.
func NewSimKernelFrom(snap *Snapshot) *SimKernel {
	f := &SimKernel{links: map[string]*simLink{}, next: 2, NoVLANs: snap.NoBridgeVLANs, NoBonds: snap.NoBonding}
	for _, l := range snap.Clone().Links {
		fl := &simLink{Link: l, origMTU: l.MTU}
		if l.Bond != nil {
			fl.primary = l.Bond.Primary
			fl.macRandom = true
			for _, o := range snap.Links {
				if o.Master == l.Name {
					fl.macRandom = false
				}
			}
		}
		if l.Kind == "bridge" {
			fl.macPinned = true
		}
		fl.noCarrier = !l.Carrier && l.Kind != "bond" && l.Kind != "bridge"
		if fl.PermMAC == "" {
			fl.PermMAC = l.MAC
		}
		f.links[l.Name] = fl
		if l.Index >= f.next {
			f.next = l.Index + 1
		}
	}
	if snap.DefaultRoute != nil {
		r := *snap.DefaultRoute
		f.route = &r
	}
	return f
}

// AddDevice adds a physical-looking adapter (not a write: test setup).
func (f *SimKernel) AddDevice(name string) {
	idx := f.next
	f.next++
	mac := fmt.Sprintf("52:54:00:00:00:%02x", idx)
	f.links[name] = &simLink{Link: Link{Name: name, Index: idx, Kind: "device", MTU: 1500, MAC: mac, PermMAC: mac, Up: true}, origMTU: 1500}
}

// SetCarrier pulls or plugs a simulated adapter's cable (not a write).
func (f *SimKernel) SetCarrier(name string, on bool) {
	if l := f.links[name]; l != nil {
		l.noCarrier = !on
	}
}

// SeedAddr puts an address on a link without counting a write (test setup).
func (f *SimKernel) SeedAddr(link, cidr string) {
	if l := f.links[link]; l != nil {
		l.Addrs = append(l.Addrs, cidr)
	}
}

// SeedRoute sets the default route without counting a write (test setup).
func (f *SimKernel) SeedRoute(r *Route) { f.route = r }

// Observe returns the simulated state.
func (f *SimKernel) Observe() (*Snapshot, error) {
	s := &Snapshot{NoBridgeVLANs: f.NoVLANs, NoBonding: f.NoBonds}
	for _, l := range f.links {
		c := l.Link
		c.VLANs = append([]VLAN(nil), l.VLANs...)
		c.Addrs = append([]string(nil), l.Addrs...)
		if l.Bond != nil {
			b := *l.Bond.clone()
			b.Primary = ""
			if p := f.links[l.primary]; p != nil && p.Master == l.Name {
				b.Primary = l.primary
			}
			c.Bond = &b
		}
		c.Carrier = f.carrier(l)
		c.OperState = "down"
		if c.Up && c.Carrier {
			c.OperState = "up"
		}
		if l.Kind == "bond" {
			c.ActiveSlave = f.activeSlave(l)
		}
		s.Links = append(s.Links, c)
	}
	if f.route != nil {
		r := *f.route
		s.DefaultRoute = &r
	}
	s.normalize()
	return s, nil
}

func (f *SimKernel) carrier(l *simLink) bool {
	switch l.Kind {
	case "bond", "bridge":
		for _, s := range f.links {
			if s.Master == l.Name && s.Up && f.carrier(s) {
				return true
			}
		}
		return false
	}
	return !l.noCarrier
}

func (f *SimKernel) activeSlave(b *simLink) string {
	if !b.Up {
		return ""
	}
	if p := f.links[b.primary]; p != nil && p.Master == b.Name && p.Up && !p.noCarrier {
		return p.Name
	}
	for _, s := range f.sortedSlaves(b.Name) {
		if s.Up && !s.noCarrier {
			return s.Name
		}
	}
	return ""
}

func (f *SimKernel) sortedSlaves(master string) []*simLink {
	var out []*simLink
	for _, l := range f.links {
		if l.Master == master {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func errno(op Op, e syscall.Errno, why string) error {
	return fmt.Errorf("%s: %s: %w", op, why, e)
}

// Do performs one simulated write.
func (f *SimKernel) Do(op Op) error {
	f.Writes++
	if f.FailAt > 0 {
		f.FailAt--
		if f.FailAt == 0 {
			err := f.FailErr
			if err == nil {
				err = errors.New("injected failure")
			}
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := f.do(op); err != nil {
		return err
	}
	f.Lines = append(f.Lines, op.String())
	return nil
}

func (f *SimKernel) do(op Op) error {
	l := f.links[op.Link]
	if op.Kind == OpRouteReplace {
		l = f.links[op.Route.Dev]
	}
	if l == nil && op.Kind != OpAddBond && op.Kind != OpAddBridge && op.Kind != OpRouteDel {
		return errno(op, syscall.ENODEV, "no such device")
	}
	switch op.Kind {
	case OpAddBond, OpAddBridge:
		if l != nil {
			return errno(op, syscall.EEXIST, "file exists")
		}
		idx := op.Index
		if idx == 0 {
			idx = f.next
		}
		for _, o := range f.links {
			if o.Index == idx {
				return errno(op, syscall.EBUSY, "ifindex in use")
			}
		}
		if idx >= f.next {
			f.next = idx + 1
		}
		nl := &simLink{Link: Link{Name: op.Link, Index: idx, MTU: 1500}}
		if op.MTU != 0 {
			nl.MTU = op.MTU
		}
		nl.MAC = op.MAC
		if nl.MAC == "" {
			nl.MAC = f.randomMAC()
			nl.macRandom = true
		}
		if op.Kind == OpAddBond {
			if f.NoBonds {
				return errno(op, syscall.EOPNOTSUPP, "unknown device type (no bonding driver)")
			}
			nl.Kind = "bond"
			b := *op.Bond.clone()
			if b.Miimon != 0 && b.ArpInterval != 0 {
				return errno(op, syscall.EINVAL, "ARP monitoring cannot be used with MII monitoring")
			}
			if err := simARPBond(op, &b); err != nil {
				return err
			}
			for _, d := range []*int{&b.PeerNotifyDelay, &b.Updelay, &b.Downdelay} {
				if *d != 0 && b.Miimon == 0 {
					return errno(op, syscall.EPERM, "bond delays need MII monitoring (miimon)")
				}
				if b.Miimon != 0 {
					*d -= *d % b.Miimon
				}
			}
			nl.primary = b.Primary
			nl.Bond = &b
			if nl.Bond.FailOverMAC == "" {
				nl.Bond.FailOverMAC = "none"
			}
		} else {
			if f.NoVLANs && op.On {
				return errno(op, syscall.EOPNOTSUPP, "no bridge VLAN support in this kernel")
			}
			nl.Kind = "bridge"
			nl.VLANFiltering = op.On
			nl.macPinned = op.MAC != ""
			nl.macRandom = false
			nl.VLANs = f.defaultVLANs()
		}
		nl.PermMAC = ""
		f.links[op.Link] = nl
	case OpDel:
		if l.Kind != "bond" && l.Kind != "bridge" {
			return errno(op, syscall.EOPNOTSUPP, "operation not supported")
		}
		for _, s := range f.sortedSlaves(l.Name) {
			f.release(s)
		}
		if l.Master != "" {
			f.release(l)
		}
		if f.route != nil && f.route.Dev == l.Name {
			f.route = nil
		}
		delete(f.links, l.Name)
	case OpSetBond:
		if l.Kind != "bond" {
			return errno(op, syscall.EOPNOTSUPP, "not a bond")
		}
		hasSlaves := len(f.sortedSlaves(l.Name)) > 0
		switch op.Option {
		case "mode":
			if l.Up || hasSlaves {
				return errno(op, syscall.EBUSY, "bond mode can only change while the bond is down and has no slaves")
			}
			l.Bond.Mode = op.Value
		case "fail_over_mac":
			if hasSlaves {
				return errno(op, syscall.EBUSY, "fail_over_mac can only change while the bond has no slaves")
			}
			l.Bond.FailOverMAC = op.Value
		case "miimon":
			// The kernel keeps the delays as counts of miimon intervals:
			// they scale with it.
			old, m := l.Bond.Miimon, atoi(op.Value)
			for _, d := range []*int{&l.Bond.PeerNotifyDelay, &l.Bond.Updelay, &l.Bond.Downdelay} {
				if old != 0 {
					*d = *d / old * m
				}
			}
			l.Bond.Miimon = m
			if m != 0 && l.Bond.ArpInterval != 0 {
				// MII monitoring replaces ARP monitoring, whose
				// validation goes with it.
				l.Bond.ArpInterval, l.Bond.ArpValidate = 0, "none"
			}
		case "arp_interval":
			v := atoi(op.Value)
			if v < 0 {
				return errno(op, syscall.EINVAL, "negative arp_interval")
			}
			l.Bond.ArpInterval = v
			if v != 0 && l.Bond.Miimon != 0 {
				// ARP monitoring replaces MII monitoring; the delays,
				// counted in miimon intervals, read 0 without it.
				l.Bond.Miimon = 0
				l.Bond.PeerNotifyDelay, l.Bond.Updelay, l.Bond.Downdelay = 0, 0, 0
			}
		case "arp_ip_target":
			b := *l.Bond
			b.ArpIPTargets = splitTargets(op.Value)
			if err := simARPBond(op, &b); err != nil {
				return err
			}
			l.Bond.ArpIPTargets = b.ArpIPTargets
		case "arp_validate":
			b := *l.Bond
			b.ArpValidate = op.Value
			if err := simARPBond(op, &b); err != nil {
				return err
			}
			l.Bond.ArpValidate = op.Value
		case "primary":
			l.primary = op.Value
		case "primary_reselect":
			l.Bond.PrimaryReselect = op.Value
		case "num_grat_arp":
			l.Bond.NumGratARP = atoi(op.Value)
		case "peer_notif_delay", "updelay", "downdelay":
			d := map[string]*int{"peer_notif_delay": &l.Bond.PeerNotifyDelay, "updelay": &l.Bond.Updelay, "downdelay": &l.Bond.Downdelay}[op.Option]
			if l.Bond.Miimon == 0 {
				return errno(op, syscall.EPERM, "MII monitoring is disabled")
			}
			// Rounded down to a multiple of miimon, as the kernel does.
			v := atoi(op.Value)
			*d = v - v%l.Bond.Miimon
		default:
			return errno(op, syscall.EINVAL, "unknown bond option")
		}
	case OpSetFiltering:
		if f.NoVLANs && op.On {
			return errno(op, syscall.EOPNOTSUPP, "no bridge VLAN support in this kernel")
		}
		if l.Kind != "bridge" {
			return errno(op, syscall.EOPNOTSUPP, "not a bridge")
		}
		l.VLANFiltering = op.On
	case OpSetMTU:
		l.MTU = op.MTU
		if l.Kind == "bond" {
			for _, s := range f.sortedSlaves(l.Name) {
				s.MTU = op.MTU
			}
		}
	case OpSetUp:
		l.Up = op.On
		if !op.On && f.route != nil && f.route.Dev == l.Name {
			f.route = nil
		}
	case OpSetMaster:
		return f.setMaster(op, l)
	case OpSetMAC:
		mac := op.MAC
		if op.MACFrom != "" {
			src := f.links[op.MACFrom]
			if src == nil {
				return errno(op, syscall.ENODEV, "no such device "+op.MACFrom)
			}
			mac = src.MAC
		}
		if _, err := net.ParseMAC(mac); err != nil {
			return errno(op, syscall.EINVAL, "bad MAC")
		}
		l.MAC = mac
		if l.Kind == "bridge" {
			l.macPinned = true
		}
		if l.Kind == "bond" {
			l.macRandom = false
			for _, s := range f.sortedSlaves(l.Name) {
				s.MAC = mac
			}
		}
		f.portMACChanged(l)
	case OpVLANAdd, OpVLANDel:
		if f.NoVLANs {
			return errno(op, syscall.EOPNOTSUPP, "no bridge VLAN support in this kernel")
		}
		if op.Self {
			if l.Kind != "bridge" {
				return errno(op, syscall.EOPNOTSUPP, "self VLANs need a bridge")
			}
		} else if m := f.links[l.Master]; m == nil || m.Kind != "bridge" {
			return errno(op, syscall.EOPNOTSUPP, "not a bridge port")
		}
		i := vlanIndex(l.VLANs, op.VLAN.VID)
		if op.Kind == OpVLANDel {
			if i < 0 {
				return errno(op, syscall.ENOENT, "no such VLAN")
			}
			l.VLANs = append(l.VLANs[:i], l.VLANs[i+1:]...)
			return nil
		}
		if op.VLAN.PVID {
			for j := range l.VLANs {
				l.VLANs[j].PVID = false
			}
		}
		if i < 0 {
			l.VLANs = append(l.VLANs, op.VLAN)
		} else {
			l.VLANs[i] = op.VLAN
		}
		sort.Slice(l.VLANs, func(a, b int) bool { return l.VLANs[a].VID < l.VLANs[b].VID })
	case OpAddrAdd:
		if _, _, err := net.ParseCIDR(op.Addr); err != nil {
			return errno(op, syscall.EINVAL, "bad address")
		}
		for _, a := range l.Addrs {
			if a == op.Addr {
				return errno(op, syscall.EEXIST, "address exists")
			}
		}
		// Kept in the order added: the first of a subnet is the primary.
		l.Addrs = append(l.Addrs, op.Addr)
	case OpAddrDel:
		i := -1
		for j, a := range l.Addrs {
			if a == op.Addr {
				i = j
			}
		}
		if i < 0 {
			return nil // as the netlink kernel: gone already is what the step wants
		}
		l.Addrs = append(l.Addrs[:i], l.Addrs[i+1:]...)
		// Deleting a primary IPv4 address deletes the secondaries of its
		// subnet (net.ipv4.conf.*.promote_secondaries=0, the kernel default).
		if primarySubnet(l.Addrs[:i], op.Addr) {
			_, sub, _ := net.ParseCIDR(op.Addr)
			keep := l.Addrs[:i:i]
			for _, a := range l.Addrs[i:] {
				if ip, n, err := net.ParseCIDR(a); err == nil && ip.To4() != nil && n.String() == sub.String() {
					continue
				}
				keep = append(keep, a)
			}
			l.Addrs = keep
		}
		if f.route != nil && f.route.Dev == l.Name && !f.reaches(l, f.route.Gateway) {
			f.route = nil
		}
	case OpRouteReplace:
		if !l.Up {
			return errno(op, syscall.ENETDOWN, "nexthop device is down")
		}
		if !f.reaches(l, op.Route.Gateway) {
			return errno(op, syscall.ENETUNREACH, "nexthop has invalid gateway")
		}
		r := *op.Route
		f.route = &r
	case OpRouteDel:
		if f.route == nil || *f.route != *op.Route {
			return errno(op, syscall.ESRCH, "no such process")
		}
		f.route = nil
	default:
		return errno(op, syscall.EINVAL, "unknown op")
	}
	return nil
}

// primarySubnet reports whether addr (IPv4) is the primary of its subnet,
// given the addresses added before it.
func primarySubnet(earlier []string, addr string) bool {
	ip, sub, err := net.ParseCIDR(addr)
	if err != nil || ip.To4() == nil {
		return false
	}
	for _, a := range earlier {
		if _, n, err := net.ParseCIDR(a); err == nil && n.String() == sub.String() {
			return false
		}
	}
	return true
}

func (f *SimKernel) reaches(l *simLink, gw string) bool {
	ip := net.ParseIP(gw)
	for _, a := range l.Addrs {
		if _, n, err := net.ParseCIDR(a); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

func (f *SimKernel) setMaster(op Op, l *simLink) error {
	if op.Master == "" {
		if l.Master != "" {
			f.release(l)
		}
		return nil
	}
	m := f.links[op.Master]
	if m == nil {
		return errno(op, syscall.ENODEV, "no such master "+op.Master)
	}
	if l.Master == op.Master {
		return nil
	}
	switch m.Kind {
	case "bond":
		if l.Up {
			return errno(op, syscall.EPERM, "device can not be enslaved while up")
		}
		if l.Master != "" {
			f.release(l)
		}
		if len(f.sortedSlaves(m.Name)) == 0 && m.macRandom {
			m.MAC = l.MAC
			m.macRandom = false
			f.portMACChanged(m)
		}
		l.Master = m.Name
		l.origMTU = l.MTU
		l.MTU = m.MTU
		l.MAC = m.MAC
		l.Up = true
	case "bridge":
		if l.Master != "" {
			f.release(l)
		}
		l.Master = m.Name
		l.VLANs = f.defaultVLANs()
		f.recalcBridgeMAC(m)
	default:
		return errno(op, syscall.EOPNOTSUPP, op.Master+" is not a bond or bridge")
	}
	return nil
}

// release takes l out of its master, as the kernel does.
func (f *SimKernel) release(l *simLink) {
	m := f.links[l.Master]
	l.Master = ""
	if m == nil {
		return
	}
	switch m.Kind {
	case "bond":
		l.Up = false
		l.MAC = l.PermMAC
		l.MTU = l.origMTU
		if len(f.sortedSlaves(m.Name)) == 0 {
			m.MAC = f.randomMAC()
			m.macRandom = true
			f.portMACChanged(m)
		}
	case "bridge":
		l.VLANs = nil
		f.recalcBridgeMAC(m)
	}
}

func (f *SimKernel) portMACChanged(l *simLink) {
	if m := f.links[l.Master]; m != nil && m.Kind == "bridge" {
		f.recalcBridgeMAC(m)
	}
}

func (f *SimKernel) recalcBridgeMAC(br *simLink) {
	if br.macPinned {
		return
	}
	lowest := ""
	for _, p := range f.sortedSlaves(br.Name) {
		if lowest == "" || p.MAC < lowest {
			lowest = p.MAC
		}
	}
	if lowest != "" {
		br.MAC = lowest
	}
}

func (f *SimKernel) randomMAC() string {
	f.random++
	return fmt.Sprintf("02:fa:ce:00:%02x:%02x", f.random>>8&0xff, f.random&0xff)
}

// defaultVLANs is what a new bridge or bridge port gets: the default PVID.
func (f *SimKernel) defaultVLANs() []VLAN {
	if f.NoVLANs {
		return nil
	}
	return []VLAN{{VID: 1, PVID: true, Untagged: true}}
}

func vlanIndex(vs []VLAN, vid uint16) int {
	for i, v := range vs {
		if v.VID == vid {
			return i
		}
	}
	return -1
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

// simARPBond checks the ARP settings of b as the kernel does: at most 16
// IPv4 targets, a known arp_validate mode; an empty mode is "none".
func simARPBond(op Op, b *BondConfig) error {
	if b.ArpValidate == "" {
		b.ArpValidate = "none"
	}
	if _, ok := arpValidateModes[b.ArpValidate]; !ok {
		return errno(op, syscall.EINVAL, "unknown arp_validate "+b.ArpValidate)
	}
	if len(b.ArpIPTargets) > 16 {
		return errno(op, syscall.EINVAL, "more than 16 ARP targets")
	}
	for _, t := range b.ArpIPTargets {
		if ip := net.ParseIP(t); ip == nil || ip.To4() == nil {
			return errno(op, syscall.EINVAL, "ARP target "+t+" is not IPv4")
		}
	}
	return nil
}
