package model

import (
	"fmt"
	"net/netip"
	"strings"
)

// Rules on the cluster section: name, management subnet and addresses, MAC
// prefix, MTU.

// checkClusterName: the cluster has a name usable as a DNS label.
func checkClusterName(v *validator) {
	if err := IsClusterName(v.s.Cluster.Name); err != nil {
		v.errorf("cluster.name", "%v", err)
	}
}

// prefix is a parsed subnet with the addresses it reserves.
type prefix struct {
	netip.Prefix
}

// network is the subnet's network address (all host bits zero).
func (p prefix) network() netip.Addr { return p.Masked().Addr() }

// broadcast is the IPv4 subnet's broadcast address (all host bits one);
// IPv6 has none (invalid Addr).
func (p prefix) broadcast() netip.Addr {
	if !p.Addr().Is4() {
		return netip.Addr{}
	}
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		a[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	return netip.AddrFrom4(a)
}

// checkSubnet: cluster.subnet is a network in CIDR form with room for hosts.
func checkSubnet(v *validator) {
	const path = "cluster.subnet"
	raw := v.s.Cluster.Subnet
	if raw == "" {
		v.errorf(path, "no management subnet given: set cluster.subnet to the management network in CIDR form (for example 192.168.1.0/24)")
		return
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(raw))
	if err != nil {
		if a, aerr := netip.ParseAddr(raw); aerr == nil {
			v.errorf(path, "%s is an address, not a subnet: add the prefix length, for example %s/24", show(raw), a)
		} else {
			v.errorf(path, "%s is not a subnet in CIDR form: write the management network and prefix length, for example 192.168.1.0/24", show(raw))
		}
		return
	}
	if p.Addr().Is4In6() {
		v.errorf(path, "%s is an IPv4-mapped IPv6 subnet: write it as IPv4 (for example 192.168.1.0/24)", show(raw))
		return
	}
	if p.Masked() != p {
		v.errorf(path, "%s has host bits set: write the network address, %s", show(raw), p.Masked())
		return
	}
	if p.Addr().Is6() {
		v.errorf(path, "%s: %s", show(raw), ipv6Unsupported)
		v.subnet6 = true
		return
	}
	if need := v.managementAddrs(); usable(p.Bits()) < need {
		v.errorf(path, "subnet %s is too small: it has %d usable address(es) and the cluster needs %d (%s): use a prefix of at most /%d",
			p, usable(p.Bits()), need, v.managementUsers(), largestPrefix(need))
		return
	}
	v.subnet, v.subnetOK = prefix{p}, true
}

// ipv6Unsupported is why an IPv6 management address is refused: validate
// accepted one, and the host then never converged (issue 13). Each part
// named here is missing, so the message says what would have to exist
// rather than only "IPv6 is not supported".
const ipv6Unsupported = "IPv6 management is not supported: host apply observes and " +
	"manages only the IPv4 default route (an IPv6 gateway is re-added on every apply and the host never converges), " +
	"host watch announces a failover with gratuitous ARP only (no unsolicited neighbour advertisements), " +
	"and the keepalived configuration holds an IPv4 VIP only; " +
	"use an IPv4 management subnet, VIP and gateway (VM networks are bridged and carry IPv6 unaffected)"

// ipv6Refusal is the message for an IPv6 address: in full, unless the
// subnet's finding already says it all.
func (v *validator) ipv6Refusal() string {
	if v.subnet6 {
		return "IPv6 management is not supported (see cluster.subnet): use an IPv4 address"
	}
	return ipv6Unsupported
}

// managementAddrs is how many host addresses the management subnet must
// hold: one per hypervisor, the VIP and, when set, the gateway.
func (v *validator) managementAddrs() int {
	n := len(v.s.Hypervisors) + 1
	if strings.TrimSpace(v.s.Cluster.Gateway) != "" {
		n++
	}
	return max(n, 2) // even an empty spec needs a hypervisor and the VIP
}

// managementUsers says what managementAddrs counted, for the message.
func (v *validator) managementUsers() string {
	s := fmt.Sprintf("%d hypervisor(s) and the VIP", len(v.s.Hypervisors))
	if strings.TrimSpace(v.s.Cluster.Gateway) != "" {
		s = fmt.Sprintf("%d hypervisor(s), the VIP and the gateway", len(v.s.Hypervisors))
	}
	return s
}

// usable is the number of host addresses of an IPv4 prefix of this length:
// all but the network and broadcast addresses. /31 and /32 have none for a
// subnet shared by several hosts (RFC 3021 point-to-point links aside).
func usable(bits int) int {
	if bits > 30 {
		return 0
	}
	return 1<<(32-bits) - 2
}

// largestPrefix is the longest IPv4 prefix with at least need usable
// addresses.
func largestPrefix(need int) int {
	bits := 30
	for bits > 0 && usable(bits) < need {
		bits--
	}
	return bits
}

// addrOwner describes who already uses an address, for distinctness
// checks: the management IPs, the VIP and the gateway are all distinct.
func (v *validator) claim(a netip.Addr, path, who string) {
	if v.addrs == nil {
		v.addrs = map[netip.Addr]string{}
	}
	if prev, taken := v.addrs[a]; taken {
		v.errorf(path, "%s is also %s: the management IPs, the VIP and the gateway must all be different; give %s another address", a, prev, who)
		return
	}
	v.addrs[a] = who
}

// checkInSubnet reports an address outside the subnet or on its network or
// broadcast address; what names the address in messages.
func (v *validator) checkInSubnet(a netip.Addr, path, what string) bool {
	if !v.subnetOK {
		return true // reported by checkSubnet
	}
	switch {
	case !v.subnet.Contains(a):
		v.errorf(path, "%s %s is outside the management subnet %s: use an address inside it (or fix cluster.subnet)", what, a, v.subnet.Prefix)
	case a == v.subnet.network():
		v.errorf(path, "%s %s is the network address of %s, which no host can use: pick another address in the subnet", what, a, v.subnet.Prefix)
	case a == v.subnet.broadcast():
		v.errorf(path, "%s %s is the broadcast address of %s, which no host can use: pick another address in the subnet", what, a, v.subnet.Prefix)
	default:
		return true
	}
	return false
}

// parseBareAddr parses an address that must be given without a prefix
// length (VIP, gateway).
func (v *validator) parseBareAddr(raw, path, what, example string) (netip.Addr, bool) {
	raw = strings.TrimSpace(raw)
	a, err := netip.ParseAddr(raw)
	if err != nil {
		if p, perr := netip.ParsePrefix(raw); perr == nil {
			v.errorf(path, "%s %s has a prefix length: write the bare address, %s", what, show(raw), p.Addr())
		} else {
			v.errorf(path, "%s %s is not an IP address: write a bare address inside cluster.subnet, for example %s", what, show(raw), example)
		}
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		v.errorf(path, "%s %s has a zone (%%%s): write the address without it", what, show(raw), a.Zone())
		return netip.Addr{}, false
	}
	if a.Is6() && !a.Is4In6() {
		v.errorf(path, "%s %s: %s", what, show(raw), v.ipv6Refusal())
		return netip.Addr{}, false
	}
	return a, true
}

// checkManagementIPs: every hypervisor has a management IP in CIDR form,
// inside the subnet, with the subnet's prefix length, and distinct.
func checkManagementIPs(v *validator) {
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if !v.firstHV(h) {
			continue
		}
		path := hvPath(h, i) + ".managementIP"
		raw := strings.TrimSpace(h.ManagementIP)
		example := "192.168.1.101/24"
		if v.subnetOK {
			example = fmt.Sprintf("%s/%d", v.subnet.network().Next(), v.subnet.Bits())
		}
		if raw == "" {
			v.errorf(path, "no management IP given: every hypervisor needs its static management address in CIDR form, for example %s", example)
			continue
		}
		p, err := netip.ParsePrefix(raw)
		if err != nil {
			if a, aerr := netip.ParseAddr(raw); aerr == nil && a.Zone() == "" {
				bits := "the subnet's prefix length"
				if v.subnetOK {
					bits = fmt.Sprintf("/%d", v.subnet.Bits())
				}
				v.errorf(path, "management IP %s has no prefix length: add %s (for example %s)", show(raw), bits, example)
			} else {
				v.errorf(path, "management IP %s is not an address in CIDR form: write it like %s", show(raw), example)
			}
			continue
		}
		a := p.Addr()
		if a.Is6() && !a.Is4In6() {
			v.errorf(path, "management IP %s: %s", show(raw), v.ipv6Refusal())
			continue
		}
		if v.subnetOK && v.subnet.Contains(a) && p.Bits() != v.subnet.Bits() {
			v.errorf(path, "management IP %s has prefix length /%d but the management subnet %s has /%d: write %s/%d", show(raw), p.Bits(), v.subnet.Prefix, v.subnet.Bits(), a, v.subnet.Bits())
		}
		if v.checkInSubnet(a, path, "management IP") {
			v.claim(a, path, "the management IP of "+hvLabel(h, i))
		}
	}
}

// checkVIP: the cluster's virtual IP is a bare address inside the subnet,
// distinct from the management IPs.
func checkVIP(v *validator) {
	const path = "cluster.vip"
	if strings.TrimSpace(v.s.Cluster.VIP) == "" {
		v.errorf(path, "no virtual IP given: set cluster.vip to a free address of the management subnet; it floats between the hypervisors")
		return
	}
	a, ok := v.parseBareAddr(v.s.Cluster.VIP, path, "VIP", "192.168.1.100")
	if ok && v.checkInSubnet(a, path, "VIP") {
		v.claim(a, path, "the cluster VIP")
	}
}

// checkGateway: the optional gateway is a bare address inside the subnet,
// distinct from the management IPs and the VIP.
func checkGateway(v *validator) {
	const path = "cluster.gateway"
	if strings.TrimSpace(v.s.Cluster.Gateway) == "" {
		return
	}
	a, ok := v.parseBareAddr(v.s.Cluster.Gateway, path, "gateway", "192.168.1.1")
	if ok && v.checkInSubnet(a, path, "gateway") {
		v.claim(a, path, "the gateway")
	}
}

// checkMACPrefix: the MAC prefix parses, 1-5 bytes, unicast, not 0xFE.
func checkMACPrefix(v *validator) {
	if v.s.Cluster.MACPrefix == "" {
		return // the default applies
	}
	if _, err := ParseMACPrefix(v.s.Cluster.MACPrefix); err != nil {
		v.errorf("cluster.macPrefix", "%v", err)
	}
}

// checkClusterMTU: the cluster MTU is in range (0: the default).
func checkClusterMTU(v *validator) {
	if mtu := v.s.Cluster.MTU; mtu != 0 {
		if err := IsMTU(mtu); err != nil {
			v.errorf("cluster.mtu", "%v", err)
		}
	}
}
