// Package libvirtconn adapts a libvirt.org/go/libvirt connection to
// vmnet.Conn. It is the one package under plugin/ that links the cgo
// binding, so that the CLI and the agent share one adapter while vmnet's
// use cases stay testable without libvirt.
package libvirtconn

import (
	"errors"
	"fmt"

	"libvirt.org/go/libvirt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// Conn is a libvirt connection as a vmnet.Conn.
type Conn struct {
	c *libvirt.Connect
}

var _ vmnet.Conn = (*Conn)(nil)

// Open connects to uri ("qemu:///system", "test:///default", ...).
func Open(uri string) (*Conn, error) {
	c, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s: %w; is libvirtd (or virtqemud) running? try 'virsh -c %s version'", uri, err, uri)
	}
	return &Conn{c: c}, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	_, err := c.c.Close()
	return err
}

// Libvirt is the underlying connection, for calls vmnet.Conn leaves out.
func (c *Conn) Libvirt() *libvirt.Connect { return c.c }

// notFound maps libvirt's no-such-object errors to vmnet.ErrNotFound, so
// that the use cases need not know libvirt's error codes.
func notFound(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && (le.Code == libvirt.ERR_NO_NETWORK || le.Code == libvirt.ERR_NO_DOMAIN) {
		return fmt.Errorf("%w: %w", vmnet.ErrNotFound, err)
	}
	return err
}

func (c *Conn) LibVersion() (uint32, error) { return c.c.GetLibVersion() }

func (c *Conn) NetworkNames() ([]string, error) {
	nets, err := c.c.ListAllNetworks(0)
	if err != nil {
		return nil, err
	}
	return names(nets)
}

// named is what names needs of a listed libvirt object.
type named interface {
	GetName() (string, error)
	Free() error
}

// names returns the names of listed objects and frees them all.
func names[T any, P interface {
	*T
	named
}](objs []T) ([]string, error) {
	var out []string
	var errs []error
	for i := range objs {
		o := P(&objs[i])
		n, err := o.GetName()
		if err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, n)
		}
		_ = o.Free()
	}
	return out, errors.Join(errs...)
}

// network runs f on network name, freeing the handle after.
func (c *Conn) network(name string, f func(*libvirt.Network) error) error {
	n, err := c.c.LookupNetworkByName(name)
	if err != nil {
		return notFound(err)
	}
	defer func() { _ = n.Free() }()
	return f(n)
}

func (c *Conn) NetworkXML(name string) (x string, err error) {
	err = c.network(name, func(n *libvirt.Network) error {
		x, err = n.GetXMLDesc(libvirt.NETWORK_XML_INACTIVE)
		// A driver without the flag (the test driver) keeps one definition
		// per network, so the plain one is the persistent one.
		var le libvirt.Error
		if errors.As(err, &le) && le.Code == libvirt.ERR_INVALID_ARG {
			x, err = n.GetXMLDesc(0)
		}
		return err
	})
	return x, err
}

func (c *Conn) DefineNetwork(xml string) error {
	n, err := c.c.NetworkDefineXML(xml)
	if err != nil {
		return err
	}
	return n.Free()
}

func (c *Conn) NetworkState(name string) (st vmnet.NetworkState, err error) {
	err = c.network(name, func(n *libvirt.Network) error {
		if st.Active, err = n.IsActive(); err != nil {
			return err
		}
		st.Autostart, err = n.GetAutostart()
		return err
	})
	return st, err
}

func (c *Conn) NetworkPorts(name string) (count int, err error) {
	err = c.network(name, func(n *libvirt.Network) error {
		ports, err := n.ListAllPorts(0)
		for i := range ports {
			_ = ports[i].Free()
		}
		count = len(ports)
		return err
	})
	return count, err
}

func (c *Conn) StartNetwork(name string) error {
	return c.network(name, func(n *libvirt.Network) error { return n.Create() })
}

func (c *Conn) StopNetwork(name string) error {
	return c.network(name, func(n *libvirt.Network) error { return n.Destroy() })
}

func (c *Conn) SetNetworkAutostart(name string, on bool) error {
	return c.network(name, func(n *libvirt.Network) error { return n.SetAutostart(on) })
}

func (c *Conn) DomainNames() ([]string, error) {
	doms, err := c.c.ListAllDomains(0)
	if err != nil {
		return nil, err
	}
	return names(doms)
}

// domain runs f on domain name, freeing the handle after.
func (c *Conn) domain(name string, f func(*libvirt.Domain) error) error {
	d, err := c.c.LookupDomainByName(name)
	if err != nil {
		return notFound(err)
	}
	defer func() { _ = d.Free() }()
	return f(d)
}

func (c *Conn) DomainActive(name string) (active bool, err error) {
	err = c.domain(name, func(d *libvirt.Domain) error {
		active, err = d.IsActive()
		return err
	})
	return active, err
}

func (c *Conn) DomainXML(name string, live bool) (x string, err error) {
	flags := libvirt.DOMAIN_XML_INACTIVE
	if live {
		flags = 0
	}
	err = c.domain(name, func(d *libvirt.Domain) error {
		x, err = d.GetXMLDesc(flags)
		return err
	})
	return x, err
}

func (c *Conn) SetMetadata(domain, xml string, scope vmnet.Scope) error {
	var f libvirt.DomainModificationImpact
	if scope.Config {
		f |= libvirt.DOMAIN_AFFECT_CONFIG
	}
	if scope.Live {
		f |= libvirt.DOMAIN_AFFECT_LIVE
	}
	return c.domain(domain, func(d *libvirt.Domain) error {
		return d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, xml, domains.MetadataPrefix, domains.MetadataNamespace, f)
	})
}

func deviceFlags(scope vmnet.Scope) libvirt.DomainDeviceModifyFlags {
	var f libvirt.DomainDeviceModifyFlags
	if scope.Config {
		f |= libvirt.DOMAIN_DEVICE_MODIFY_CONFIG
	}
	if scope.Live {
		f |= libvirt.DOMAIN_DEVICE_MODIFY_LIVE
	}
	return f
}

func (c *Conn) AttachDevice(domain, xml string, scope vmnet.Scope) error {
	return c.domain(domain, func(d *libvirt.Domain) error { return d.AttachDeviceFlags(xml, deviceFlags(scope)) })
}

func (c *Conn) DetachDevice(domain, xml string, scope vmnet.Scope) error {
	return c.domain(domain, func(d *libvirt.Domain) error { return d.DetachDeviceFlags(xml, deviceFlags(scope)) })
}

func (c *Conn) UpdateDevice(domain, xml string, scope vmnet.Scope) error {
	return c.domain(domain, func(d *libvirt.Domain) error { return d.UpdateDeviceFlags(xml, deviceFlags(scope)) })
}
