package domains

import (
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/plugin/model"
)

// ErrNoInterface is returned (wrapped) when a domain XML has no <interface>
// with the MAC asked for.
var ErrNoInterface = errors.New("no such interface in the domain XML")

// WithNetworkUUID returns network XML with its <uuid> set to uuid. A
// redefinition must carry the UUID of the network it replaces, or libvirt
// refuses it as another network with the same name.
func WithNetworkUUID(networkXML, uuid string) (string, error) {
	var n libvirtxml.Network
	if err := n.Unmarshal(networkXML); err != nil {
		return "", fmt.Errorf("network XML: %w", err)
	}
	n.UUID = uuid
	return n.Marshal()
}

// InterfaceElement returns the <interface> with MAC mac of a domain XML.
// libvirt matches a device to detach by its MAC but wants a complete
// element, so the element comes from the domain's own definition.
func InterfaceElement(domainXML, mac string) (string, error) {
	i, err := findInterface(domainXML, mac)
	if err != nil {
		return "", err
	}
	return i.Marshal()
}

// InterfaceWithModel returns the <interface> with MAC mac of a domain XML,
// unchanged except for its model, for virDomainUpdateDeviceFlags (which
// replaces the whole device: anything left out would be lost).
func InterfaceWithModel(domainXML, mac, model string) (string, error) {
	i, err := findInterface(domainXML, mac)
	if err != nil {
		return "", err
	}
	i.Model = &libvirtxml.DomainInterfaceModel{Type: model}
	return i.Marshal()
}

func findInterface(domainXML, mac string) (*libvirtxml.DomainInterface, error) {
	want, err := NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	if dom.Devices != nil {
		for i := range dom.Devices.Interfaces {
			iface := &dom.Devices.Interfaces[i]
			if iface.MAC == nil {
				continue
			}
			if m, err := NormalizeMAC(iface.MAC.Address); err == nil && m == want {
				return iface, nil
			}
		}
	}
	return nil, fmt.Errorf("NIC %s: %w", want, ErrNoInterface)
}

// LiveInterfaceXML is the <interface> for a live update of NIC n of domain
// dom onto network: the spec's interface with the model and alias it runs
// with now, because a running NIC's model cannot change and the alias is how
// libvirt finds the device.
func LiveInterfaceXML(s *model.Spec, dom *Domain, n NIC, network string) (string, error) {
	profile := ""
	if dom.Meta != nil {
		profile = dom.Meta.Profile
	}
	iface, err := Interface(s, network, profile, n.MAC)
	if err != nil {
		return "", err
	}
	if n.Model != "" {
		iface.Model = &libvirtxml.DomainInterfaceModel{Type: n.Model}
	}
	if n.Alias != "" {
		iface.Alias = &libvirtxml.DomainAlias{Name: n.Alias}
	}
	out, err := iface.Marshal()
	if err != nil {
		return "", fmt.Errorf("NIC %s: %w", n.MAC, err)
	}
	return out, nil
}
