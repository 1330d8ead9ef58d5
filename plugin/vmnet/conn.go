package vmnet

import "errors"

// ErrNotFound is returned (wrapped) by a Conn for a network or domain that
// does not exist.
var ErrNotFound = errors.New("not found")

// Scope says which definitions of a domain a device or metadata change
// applies to: the persistent one, the running one, or both.
type Scope struct{ Config, Live bool }

// NetworkState is the run state of a libvirt network.
type NetworkState struct {
	Active, Autostart bool
}

// Conn is the part of a libvirt connection the use cases need. Objects are
// named, not handles, so that an implementation owns the lookups and frees.
type Conn interface {
	// LibVersion is libvirt's version as major*1000000+minor*1000+micro.
	LibVersion() (uint32, error)

	// NetworkNames lists every network, defined or running.
	NetworkNames() ([]string, error)
	// NetworkXML is a network's persistent (inactive) definition.
	NetworkXML(name string) (string, error)
	// DefineNetwork defines a network, or redefines the one with the same
	// name and UUID.
	DefineNetwork(xml string) error
	NetworkState(name string) (NetworkState, error)
	// NetworkPorts counts the ports (NICs) that use a running network.
	NetworkPorts(name string) (int, error)
	StartNetwork(name string) error
	StopNetwork(name string) error
	SetNetworkAutostart(name string, on bool) error

	// DomainNames lists every domain, defined or running.
	DomainNames() ([]string, error)
	// DomainActive reports whether a domain runs.
	DomainActive(name string) (bool, error)
	// DomainXML is a domain's persistent definition, or with live its
	// running one.
	DomainXML(name string, live bool) (string, error)
	// SetMetadata writes gallium-net's metadata element (domains.Metadata's
	// XML) in domains.MetadataNamespace.
	SetMetadata(domain, xml string, scope Scope) error
	AttachDevice(domain, xml string, scope Scope) error
	DetachDevice(domain, xml string, scope Scope) error
	// UpdateDevice replaces the device of the same identity (for a NIC: its
	// MAC) with xml.
	UpdateDevice(domain, xml string, scope Scope) error
}
