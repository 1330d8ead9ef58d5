package domains

import (
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/plugin/model"
)

// NetworkOptions tune the libvirt network XML.
type NetworkOptions struct {
	// NativeVLAN makes a tagged network's XML carry <vlan><tag id=.../></vlan>
	// so that libvirt itself puts the VLAN on each tap. libvirt supports that
	// on plain Linux bridges from 11.0 on; older libvirt (Debian 12 has 9.0)
	// refuses such a network, so the default (false) leaves the tap VLAN to
	// gallium-net's hook.
	NativeVLAN bool
}

// NativeVLANMinVersion is the first libvirt version (major*1000000 +
// minor*1000 + release, as virConnectGetLibVersion returns it) that supports
// <vlan> on networks with a plain Linux bridge.
const NativeVLANMinVersion = 11_000_000

// NetworkOptionsFor returns the options that suit a libvirt of version
// libVersion (virConnectGetLibVersion's encoding).
func NetworkOptionsFor(libVersion uint32) NetworkOptions {
	return NetworkOptions{NativeVLAN: libVersion >= NativeVLANMinVersion}
}

// Network builds the libvirt network definition of spec network network on
// hypervisor hypervisor: forward mode bridge onto the bridge of the network's
// adapter group, named like the spec network.
func Network(s *model.Spec, network, hypervisor string, opt NetworkOptions) (*libvirtxml.Network, error) {
	if s == nil {
		return nil, errors.New("no cluster spec")
	}
	n := s.Network(network)
	if n == nil {
		return nil, fmt.Errorf("network %q is not in the cluster spec (known networks: %s); add it under networks: or use one of those", network, knownNetworks(s))
	}
	hv := s.Hypervisor(hypervisor)
	if hv == nil {
		return nil, fmt.Errorf("hypervisor %q is not in the cluster spec (known hypervisors: %s); pass --hypervisor with one of those", hypervisor, knownHypervisors(s))
	}
	g := s.Group(n.AdapterGroup)
	if g == nil {
		return nil, fmt.Errorf("network %q is on adapter group %q, which is not in the cluster spec; fix networks[%s].adapterGroup", network, n.AdapterGroup, network)
	}
	if len(g.Adapters[hypervisor]) == 0 {
		return nil, fmt.Errorf("network %q is on adapter group %q, which has no adapters on hypervisor %q; add adapters of %s to adapterGroups[%s].adapters, or do not define %s there", network, g.Name, hypervisor, hypervisor, g.Name, network)
	}
	if n.VLAN < 0 || n.VLAN > 4094 {
		return nil, fmt.Errorf("network %q has VLAN %d, outside 1-4094; fix networks[%s].vlan", network, n.VLAN, network)
	}
	def := &libvirtxml.Network{
		XMLName: xml.Name{Local: "network"},
		Name:    n.Name,
		Forward: &libvirtxml.NetworkForward{Mode: "bridge"},
		Bridge:  &libvirtxml.NetworkBridge{Name: model.BridgeName(g.Name)},
	}
	if opt.NativeVLAN && n.Tagged() {
		def.VLAN = &libvirtxml.NetworkVLAN{Tags: []libvirtxml.NetworkVLANTag{{ID: uint(n.VLAN)}}}
	}
	return def, nil
}

// NetworkXML returns the libvirt network XML of spec network network on
// hypervisor hypervisor, for virNetworkDefineXML:
//
//	<network>
//	  <name>prod</name>
//	  <forward mode="bridge"></forward>
//	  <bridge name="gbr-vmgroup"></bridge>
//	  <vlan><tag id="100"></tag></vlan>   (only with NativeVLAN, tagged networks)
//	</network>
func NetworkXML(s *model.Spec, network, hypervisor string, opt NetworkOptions) (string, error) {
	def, err := Network(s, network, hypervisor, opt)
	if err != nil {
		return "", err
	}
	out, err := def.Marshal()
	if err != nil {
		return "", fmt.Errorf("network %s: marshal XML: %w", network, err)
	}
	return out, nil
}

func knownNetworks(s *model.Spec) string {
	names := make([]string, 0, len(s.Networks))
	for _, n := range s.Networks {
		names = append(names, n.Name)
	}
	return knownList(names)
}

func knownHypervisors(s *model.Spec) string {
	return knownList(s.HypervisorNames())
}

func knownList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// NetworkDef is what gallium-net reads back from a libvirt network's XML to
// decide whether it owns the network and whether its definition drifted.
type NetworkDef struct {
	Name        string
	UUID        string
	ForwardMode string
	Bridge      string
	// VLAN is the single access tag of the network's <vlan>, 0 when it has
	// none. A <vlan> that is not a single plain tag (several tags, trunk,
	// native mode) sets VLANSpec instead and leaves VLAN 0.
	VLAN int
	// VLANSpec describes a <vlan> gallium-net never writes, "" otherwise.
	VLANSpec string
	// Extra names the elements present that gallium-net never writes into a
	// bridge network (ip, dns, portgroup, virtualport, ...), sorted.
	Extra []string
}

// Owned reports whether gallium-net owns the network: forward mode bridge
// onto a bridge whose name is one gallium-net derives.
func (d *NetworkDef) Owned() bool {
	return d.ForwardMode == "bridge" && model.Owned(d.Bridge)
}

// ParseNetworkXML reads the parts of a libvirt network XML (as from
// virNetworkGetXMLDesc) that gallium-net defines.
func ParseNetworkXML(s string) (*NetworkDef, error) {
	if len(s) > MaxDomainXMLBytes {
		return nil, fmt.Errorf("network XML is %d bytes, more than the %d-byte limit", len(s), MaxDomainXMLBytes)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(s); err != nil {
		return nil, fmt.Errorf("parse libvirt network XML: %w", err)
	}
	return networkDef(&n), nil
}

// networkDef reads a parsed libvirt network the way ParseNetworkXML does.
func networkDef(n *libvirtxml.Network) *NetworkDef {
	d := &NetworkDef{Name: n.Name, UUID: n.UUID}
	if n.Forward != nil {
		d.ForwardMode = n.Forward.Mode
		if d.ForwardMode == "" {
			d.ForwardMode = "nat" // libvirt's default for <forward/>
		}
		if n.Forward.Dev != "" || len(n.Forward.Interfaces) > 0 || len(n.Forward.PFs) > 0 || n.Forward.NAT != nil || n.Forward.Driver != nil || len(n.Forward.Addresses) > 0 {
			d.Extra = append(d.Extra, "forward device")
		}
	}
	if n.Bridge != nil {
		d.Bridge = n.Bridge.Name
	}
	if v := n.VLAN; v != nil {
		if len(v.Tags) == 1 && v.Trunk == "" && v.Tags[0].NativeMode == "" && v.Tags[0].ID > 0 && v.Tags[0].ID <= 4094 {
			d.VLAN = int(v.Tags[0].ID)
		} else {
			d.VLANSpec = describeVLAN(v)
		}
	}
	extra := []struct {
		name    string
		present bool
	}{
		{"ip", len(n.IPs) > 0},
		{"route", len(n.Routes) > 0},
		{"dns", n.DNS != nil},
		{"domain", n.Domain != nil},
		{"mac", n.MAC != nil},
		{"mtu", n.MTU != nil},
		{"bandwidth", n.Bandwidth != nil},
		{"port", n.PortOptions != nil},
		{"virtualport", n.VirtualPort != nil},
		{"portgroup", len(n.PortGroups) > 0},
	}
	for _, e := range extra {
		if e.present {
			d.Extra = append(d.Extra, e.name)
		}
	}
	slices.Sort(d.Extra)
	return d
}

func describeVLAN(v *libvirtxml.NetworkVLAN) string {
	var parts []string
	if v.Trunk != "" {
		parts = append(parts, "trunk="+v.Trunk)
	}
	for _, t := range v.Tags {
		p := "tag " + strconv.FormatUint(uint64(t.ID), 10)
		if t.NativeMode != "" {
			p += " (native " + t.NativeMode + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "empty <vlan>"
	}
	return strings.Join(parts, ", ")
}

// OwnedNetworkXML reports whether the libvirt network with this XML is owned
// by gallium-net (forward mode bridge onto a gallium-net bridge). Networks it
// does not own are never changed or removed.
func OwnedNetworkXML(s string) (bool, error) {
	d, err := ParseNetworkXML(s)
	if err != nil {
		return false, err
	}
	return d.Owned(), nil
}

// NetworkDrift compares the network XML gallium-net wants (from NetworkXML)
// with the one libvirt has (virNetworkGetXMLDesc) and describes each
// difference in words. UUIDs and what libvirt adds on its own are ignored.
func NetworkDrift(want, have string) (bool, []string, error) {
	w, err := ParseNetworkXML(want)
	if err != nil {
		return false, nil, fmt.Errorf("wanted definition: %w", err)
	}
	h, err := ParseNetworkXML(have)
	if err != nil {
		return false, nil, fmt.Errorf("libvirt's definition: %w", err)
	}
	var diffs []string
	if w.Name != h.Name {
		diffs = append(diffs, fmt.Sprintf("name is %q, want %q", h.Name, w.Name))
	}
	if w.ForwardMode != h.ForwardMode {
		diffs = append(diffs, fmt.Sprintf("forward mode is %s, want %s", orNone(h.ForwardMode), orNone(w.ForwardMode)))
	}
	if w.Bridge != h.Bridge {
		diffs = append(diffs, fmt.Sprintf("bridge is %s, want %s", orNone(h.Bridge), orNone(w.Bridge)))
	}
	if w.VLAN != h.VLAN || w.VLANSpec != h.VLANSpec {
		diffs = append(diffs, fmt.Sprintf("VLAN is %s, want %s", vlanWords(h), vlanWords(w)))
	}
	if !slices.Equal(w.Extra, h.Extra) {
		if add := missing(h.Extra, w.Extra); len(add) > 0 {
			diffs = append(diffs, "has "+strings.Join(add, ", ")+", which gallium-net does not define")
		}
		if lack := missing(w.Extra, h.Extra); len(lack) > 0 {
			diffs = append(diffs, "lacks "+strings.Join(lack, ", "))
		}
	}
	return len(diffs) > 0, diffs, nil
}

// missing returns the elements of a that are not in b.
func missing(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return strconv.Quote(s)
}

func vlanWords(d *NetworkDef) string {
	switch {
	case d.VLANSpec != "":
		return d.VLANSpec
	case d.VLAN != 0:
		return "tag " + strconv.Itoa(d.VLAN)
	}
	return "none (untagged, or set by the hook)"
}
