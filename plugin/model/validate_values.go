package model

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Value validators, one per kind of value (in the style of incus
// shared/validate): each returns nil for a good value, or an error whose
// text says what is wrong and what to write instead. The spec rules in
// validate_*.go call them and add the path.

// Limits of the values the spec may hold.
const (
	MinVLAN = 1
	// NativeVLAN is the bridge VLAN of a group's untagged traffic (the
	// bridge's default PVID), so no tagged network may use it.
	NativeVLAN     = 1
	MaxVLAN        = 4094
	MinMTU         = 68   // the IPv4 minimum; the kernel refuses less
	MaxMTU         = 9216 // the largest jumbo frame common switches carry
	MinMiimon      = 1
	MaxMiimon      = 10000 // ms; slower than 10 s is no link monitoring at all
	MaxNumGratARP  = 255   // the kernel's limit for num_grat_arp
	MinARPInterval = 1
	MaxARPInterval = 10000 // ms, as for miimon
	// MaxARPTargets is the kernel's BOND_MAX_ARP_TARGETS.
	MaxARPTargets = 16
	// MaxPeerNotifyDelayMs caps a bond's peer notification delay (5 min).
	MaxPeerNotifyDelayMs = 300000
	// MaxBondDelayMs caps a bond's updelay and downdelay (5 min): longer
	// leaves a group without its adapter for no gain.
	MaxBondDelayMs = 300000
	// InfraMinSpeedMbps is the least link speed of an infrastructure adapter
	// in production (10 Gbps).
	InfraMinSpeedMbps = 10000
	// VMMinSpeedMbps is the least link speed expected of a VM adapter in
	// production (1 Gbps); slower is a warning.
	VMMinSpeedMbps = 1000
	// ProductionMinAdapters is the least number of adapters of a production
	// hypervisor: 2 for the infrastructure group and 2 for a VM group.
	ProductionMinAdapters = 4
	// MaxNameLen is the longest name of a group, network or profile.
	MaxNameLen = 63
)

// NICModels are the VM NIC models a hardware profile may name (QEMU's names
// as libvirt's <model type=.../> takes them).
var NICModels = []string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "igb", "ne2k_pci", "pcnet"}

// PrimaryReselectPolicies are the kernel bond's primary_reselect values.
var PrimaryReselectPolicies = []string{"always", "better", "failure"}

// IsVLAN checks an 802.1Q VLAN ID of a tagged network.
func IsVLAN(vid int) error {
	if vid < MinVLAN || vid > MaxVLAN {
		return fmt.Errorf("VLAN %d is out of range: use a VLAN ID from %d to %d, or leave vlan out for an untagged network", vid, MinVLAN, MaxVLAN)
	}
	return nil
}

// IsMTU checks an MTU in bytes.
func IsMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("MTU %d is out of range: use %d to %d (1500 is standard, 9000 for jumbo frames), or leave it out for the default", mtu, MinMTU, MaxMTU)
	}
	return nil
}

// IsNICModel checks a VM NIC model name.
func IsNICModel(model string) error {
	if slices.Contains(NICModels, model) {
		return nil
	}
	if model == "" {
		return fmt.Errorf("no NIC model given: set nicModel to one of %s", strings.Join(NICModels, ", "))
	}
	for _, m := range NICModels {
		if strings.EqualFold(m, model) || strings.EqualFold(strings.ReplaceAll(m, "_", "-"), model) {
			return fmt.Errorf("unknown NIC model %s: write %q (names are lower case)", show(model), m)
		}
	}
	return fmt.Errorf("unknown NIC model %s: use one of %s", show(model), strings.Join(NICModels, ", "))
}

// IsInterfaceName checks a kernel network interface name (model.ValidIfName).
func IsInterfaceName(name string) error {
	if why := ValidIfName(name); why != "" {
		return fmt.Errorf("interface name %s %s: use the name the kernel shows (ip link), at most %d bytes, without '/', ':' or spaces", show(name), why, MaxIfNameLen)
	}
	return nil
}

// IsClusterName checks the cluster name. It must work as a DNS label,
// because gallium-net derives other identifiers from it (the VRRP router ID
// of the VIP, keepalived instance names): 1-63 lower-case letters, digits
// and '-', starting and ending with a letter or digit.
func IsClusterName(name string) error {
	const fix = "use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit (for example \"lab\" or \"prod-1\")"
	if name == "" {
		return fmt.Errorf("the cluster has no name: %s", fix)
	}
	if len(name) > 63 {
		return fmt.Errorf("cluster name %s is longer than 63 characters: %s", show(name), fix)
	}
	if !isLabel(name, false) {
		return fmt.Errorf("cluster name %s is not usable as a DNS label: %s", show(name), fix)
	}
	return nil
}

// IsHostname checks a hypervisor name: a host name of dot-separated labels
// of letters, digits and '-' (the host's own hostname is the usual choice).
func IsHostname(name string) error {
	const fix = "use the host's name: letters, digits and '-', in dot-separated parts of at most 63 characters (for example \"hv1\" or \"hv1.example.com\")"
	if name == "" {
		return fmt.Errorf("has no name: %s", fix)
	}
	if len(name) > 253 {
		return fmt.Errorf("name %s is longer than 253 characters: %s", show(name), fix)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || !isLabel(label, true) {
			return fmt.Errorf("name %s is not a valid host name: %s", show(name), fix)
		}
	}
	return nil
}

// isLabel reports whether s is a DNS label: letters (lower case only unless
// upper), digits and '-', not starting or ending with '-'.
func isLabel(s string, upper bool) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		case upper && c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

// IsObjectName checks the name of an adapter group, network or hardware
// profile: 1-63 letters, digits, '-', '_' and '.', starting with a letter or
// digit. These names end up in kernel interface names, libvirt object names
// and file names, so they stay plain.
func IsObjectName(name string) error {
	const fix = "use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"
	if name == "" {
		return fmt.Errorf("has no name: %s", fix)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("name %s is longer than %d characters: %s", show(name), MaxNameLen, fix)
	}
	c := name[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') || !plainName(name) {
		return fmt.Errorf("name %s has characters that are not allowed: %s", show(name), fix)
	}
	return nil
}

// IsMiimon checks a bond's MII monitoring interval in milliseconds.
func IsMiimon(ms int) error {
	if ms < MinMiimon || ms > MaxMiimon {
		return fmt.Errorf("miimon %d is out of range: use %d to %d milliseconds (100 is usual), or leave it out for the default %d", ms, MinMiimon, MaxMiimon, DefaultMiimon)
	}
	return nil
}

// ARPValidateModes are the kernel bond's arp_validate values.
var ARPValidateModes = []string{"none", "active", "backup", "all", "filter", "filter_active", "filter_backup"}

// IsARPInterval checks a bond's ARP monitoring interval in milliseconds
// (0, off, is not checked here).
func IsARPInterval(ms int) error {
	if ms < MinARPInterval || ms > MaxARPInterval {
		return fmt.Errorf("arpIntervalMs %d is out of range: use %d to %d milliseconds (100 is usual), or leave it out (0) for MII monitoring", ms, MinARPInterval, MaxARPInterval)
	}
	return nil
}

// IsARPValidate checks a bond's arp_validate mode.
func IsARPValidate(mode string) error {
	if slices.Contains(ARPValidateModes, mode) {
		return nil
	}
	return fmt.Errorf("unknown arpValidate %s: use one of %s", show(mode), strings.Join(ARPValidateModes, ", "))
}

// ARPValidateNeedsIP reports whether arp_validate mode checks ARP answers
// against an IP of the bond (every mode but none and filter), which a bond
// without an IP can never pass.
func ARPValidateNeedsIP(mode string) bool {
	return mode != "none" && mode != "filter" && mode != ""
}

// ParseARPTarget parses an ARP target: a unicast IPv4 address, as the
// kernel's arp_ip_target takes it.
func ParseARPTarget(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("ARP target %s is not an IPv4 address: the kernel ARPs for IPv4 addresses only; write one such as 192.168.1.102 (no prefix length)", show(s))
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("ARP target %s is not a unicast address another host can answer for: use the IPv4 address of a host or router on the bond's network", a)
	}
	return a, nil
}

// IsPrimaryReselect checks a bond's primary_reselect policy.
func IsPrimaryReselect(policy string) error {
	if slices.Contains(PrimaryReselectPolicies, policy) {
		return nil
	}
	return fmt.Errorf("unknown primaryReselect %s: use one of %s", show(policy), strings.Join(PrimaryReselectPolicies, ", "))
}

// IsNumGratARP checks how many gratuitous ARPs a bond sends on failover.
func IsNumGratARP(n int) error {
	if n < 0 || n > MaxNumGratARP {
		return fmt.Errorf("numGratArp %d is out of range: use 0 to %d (1 is usual)", n, MaxNumGratARP)
	}
	return nil
}

// IsPeerNotifyDelay checks a bond's peer notification delay: not negative
// and, as the kernel requires, a multiple of miimon.
func IsPeerNotifyDelay(ms, miimon int) error {
	if ms < 0 {
		return fmt.Errorf("peerNotifyDelayMs %d is negative: use 0 or a multiple of miimon", ms)
	}
	if ms > MaxPeerNotifyDelayMs {
		return fmt.Errorf("peerNotifyDelayMs %d is more than %d (5 minutes): use 0 or a multiple of miimon up to that", ms, MaxPeerNotifyDelayMs)
	}
	if miimon > 0 && ms%miimon != 0 {
		lo := ms - ms%miimon
		return fmt.Errorf("peerNotifyDelayMs %d is not a multiple of miimon (%d), which the kernel requires: use %d or %d", ms, miimon, lo, lo+miimon)
	}
	return nil
}

// IsBondDelay checks a bond's updelay or downdelay (key names the spec
// field): 0 to MaxBondDelayMs and, as the kernel requires (it counts them
// in miimon intervals and rounds other values down), a multiple of miimon.
// A miimon of 0 (itself invalid) skips the multiple check.
func IsBondDelay(key string, ms, miimon int) error {
	if ms < 0 {
		return fmt.Errorf("%s %d is negative: use 0 or a multiple of miimon", key, ms)
	}
	if ms > MaxBondDelayMs {
		return fmt.Errorf("%s %d is more than %d (5 minutes): use 0 or a multiple of miimon up to that", key, ms, MaxBondDelayMs)
	}
	if miimon > 0 && ms%miimon != 0 {
		lo := ms - ms%miimon
		return fmt.Errorf("%s %d is not a multiple of miimon (%d), which the kernel requires (it would round it down to %d): use %d or %d", key, ms, miimon, lo, lo, lo+miimon)
	}
	return nil
}

// IsSpeed checks an adapter's link speed in Mbps (0: not given).
func IsSpeed(mbps int) error {
	if mbps < 0 {
		return fmt.Errorf("speedMbps %d is negative: give the link speed in Mbps (10000 for 10 Gbps), or leave it out to read it from the host", mbps)
	}
	return nil
}

// IsAdapterMAC checks an adapter's permanent MAC: six colon-separated
// octets, unicast.
func IsAdapterMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || !strings.Contains(mac, ":") {
		return fmt.Errorf("mac %q is not a MAC address: write it as ip link shows it (permaddr, or link/ether of an adapter in no bond), for example 52:54:00:12:34:56", mac)
	}
	if hw[0]&1 == 1 {
		return fmt.Errorf("mac %s is a multicast address: an adapter's permanent MAC is unicast; check 'ip link show' (permaddr)", mac)
	}
	return nil
}

var pciPathRE = regexp.MustCompile(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)

// IsPCIPath checks an adapter's PCI address: domain:bus:slot.function.
func IsPCIPath(p string) error {
	if !pciPathRE.MatchString(p) {
		return fmt.Errorf("pciPath %q is not a PCI address: write it as 'ethtool -i NIC' (bus-info) shows it, for example 0000:3b:00.0", p)
	}
	return nil
}
