package domains

import (
	"encoding/xml"
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/plugin/model"
)

// Interface builds the domain <interface> of a VM NIC with MAC mac on spec
// network network, its model taken from hardware profile profile ("" means
// the cluster's default profile).
func Interface(s *model.Spec, network, profile, mac string) (*libvirtxml.DomainInterface, error) {
	if s == nil {
		return nil, errors.New("no cluster spec")
	}
	n := s.Network(network)
	if n == nil {
		return nil, fmt.Errorf("network %q is not in the cluster spec (known networks: %s); add it under networks: or use one of those", network, knownNetworks(s))
	}
	p, err := ResolveProfile(s, profile)
	if err != nil {
		return nil, err
	}
	if p.NICModel == "" {
		return nil, fmt.Errorf("hardware profile %q has no nicModel; set hardwareProfiles[%s].nicModel (virtio, e1000, ...)", p.Name, p.Name)
	}
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("NIC on network %s: %w", network, err)
	}
	iface := &libvirtxml.DomainInterface{
		XMLName: xml.Name{Local: "interface"},
		MAC:     &libvirtxml.DomainInterfaceMAC{Address: norm},
		Source:  &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Name}},
		Model:   &libvirtxml.DomainInterfaceModel{Type: p.NICModel},
	}
	if mtu := s.NetworkMTU(n); mtu != model.DefaultMTU && mtu > 0 {
		iface.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(mtu)}
	}
	return iface, nil
}

// InterfaceXML returns the domain <interface> XML of a VM NIC, for
// virDomainAttachDeviceFlags:
//
//	<interface type="network">
//	  <mac address="52:54:00:12:34:56"></mac>
//	  <source network="prod"></source>
//	  <model type="virtio"></model>
//	  <mtu size="9000"></mtu>   (only when the network's MTU is not 1500)
//	</interface>
func InterfaceXML(s *model.Spec, network, profile, mac string) (string, error) {
	iface, err := Interface(s, network, profile, mac)
	if err != nil {
		return "", err
	}
	out, err := iface.Marshal()
	if err != nil {
		return "", fmt.Errorf("NIC %s: marshal XML: %w", mac, err)
	}
	return out, nil
}

// ResolveProfile returns the hardware profile named name, or the cluster's
// default profile (cluster.defaultProfile of the defaulted spec) when name is
// "". An unknown name is an error that lists the
// known profiles.
func ResolveProfile(s *model.Spec, name string) (*model.HardwareProfile, error) {
	if name == "" {
		name = s.Cluster.DefaultProfile // filled by model.SetDefaults
	}
	p := s.Profile(name)
	if p == nil {
		names := make([]string, 0, len(s.HardwareProfiles))
		for _, hp := range s.HardwareProfiles {
			names = append(names, hp.Name)
		}
		return nil, fmt.Errorf("hardware profile %q is not in the cluster spec (known profiles: %s); add it under hardwareProfiles: or use one of those", name, knownList(names))
	}
	return p, nil
}
