package domains

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// NetworkHookData is what libvirt's network hook reads on stdin:
// <hookData><network>...</network>[<networkport>...</networkport>]</hookData>.
type NetworkHookData struct {
	// Network is the libvirt network the operation is about.
	Network NetworkDef
	// Port is the network port of port-created and port-deleted; nil for
	// the network-wide operations (start, started, stopped, updated).
	Port *NetworkPort
}

// NetworkPort is a libvirt network port: one VM NIC plugged into a network.
type NetworkPort struct {
	UUID      string
	OwnerName string // the domain's name
	OwnerUUID string // the domain's UUID
	MAC       string // lower case
	// PlugType is how the port is plugged: "bridge" or "network" for a
	// tap on a bridge (Bridge names it), "direct", "hostdev-pci".
	PlugType string
	Bridge   string
	// VLAN is the port's single access tag (native VLAN support), 0 when
	// it has none.
	VLAN int
}

// ParseNetworkHook parses a network hook's stdin. The size cap of
// MaxDomainXMLBytes applies.
func ParseNetworkHook(data []byte) (*NetworkHookData, error) {
	if len(data) > MaxDomainXMLBytes {
		return nil, fmt.Errorf("network hook data is %d bytes, more than the %d-byte limit", len(data), MaxDomainXMLBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("network hook data is empty")
	}
	var w struct {
		XMLName xml.Name                `xml:"hookData"`
		Network *libvirtxml.Network     `xml:"network"`
		Port    *libvirtxml.NetworkPort `xml:"networkport"`
	}
	if err := xml.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("network hook data: malformed XML (want <hookData><network>...): %w", err)
	}
	if w.Network == nil {
		return nil, errors.New("network hook data: no <network> in <hookData>")
	}
	// The same reading as drift detection's, without a second parse.
	h := &NetworkHookData{Network: *networkDef(w.Network)}
	if p := w.Port; p != nil {
		port := &NetworkPort{UUID: p.UUID}
		if p.Owner != nil {
			port.OwnerName, port.OwnerUUID = p.Owner.Name, p.Owner.UUID
		}
		if p.MAC != nil {
			port.MAC = strings.ToLower(p.MAC.Address)
		}
		if pl := p.Plug; pl != nil {
			switch {
			case pl.Bridge != nil:
				port.PlugType, port.Bridge = "bridge", pl.Bridge.Bridge
			case pl.Network != nil:
				port.PlugType, port.Bridge = "network", pl.Network.Bridge
			case pl.Direct != nil:
				port.PlugType = "direct"
			case pl.HostDevPCI != nil:
				port.PlugType = "hostdev-pci"
			}
		}
		if v := p.VLAN; v != nil && len(v.Tags) == 1 && v.Trunk == "" && v.Tags[0].NativeMode == "" {
			port.VLAN = int(v.Tags[0].ID)
		}
		h.Port = port
	}
	return h, nil
}
