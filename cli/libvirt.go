package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"libvirt.org/go/libvirt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin"
	"github.com/gallium/gallium-net/plugin/vmnet/libvirtconn"
)

// DefaultConnectURI is the libvirt connection of every libvirt command, as
// virsh's default for root.
const DefaultConnectURI = "qemu:///system"

// connectFlag is --connect/-c URI, as in virsh.
func connectFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "connect",
		Aliases: []string{"c"},
		Value:   DefaultConnectURI,
		EnvVars: []string{"LIBVIRT_DEFAULT_URI"},
		Usage:   "libvirt connection `URI`, as for virsh",
	}
}

// snapshotFlag is --snapshot: where the hook's host snapshot lives.
func snapshotFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "snapshot",
		Value: plugin.DefaultSnapshotPath,
		Usage: "host snapshot `FILE` the libvirt hook reads",
	}
}

// openConn connects to the URI --connect names.
func openConn(c *cli.Context) (*libvirtconn.Conn, error) {
	return libvirtconn.Open(c.String("connect"))
}

// openLibvirt connects to the URI --connect names, for the commands that
// still hold libvirt handles themselves.
func openLibvirt(c *cli.Context) (*libvirt.Connect, error) {
	conn, err := openConn(c)
	if err != nil {
		return nil, err
	}
	return conn.Libvirt(), nil
}

// isLibvirtErr reports whether err is a libvirt error with code code.
func isLibvirtErr(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == code
}

// domainHandle is a looked-up domain with its parsed XML.
type domainHandle struct {
	dom    *libvirt.Domain
	name   string
	active bool
	// config is the persistent definition; live the running one (nil when
	// the domain is off).
	config, live *domains.Domain
	// configXML and liveXML are the raw documents.
	configXML, liveXML string
}

func (d *domainHandle) free() { _ = d.dom.Free() }

// current is the live definition when running, else the persistent one.
func (d *domainHandle) current() *domains.Domain {
	if d.live != nil {
		return d.live
	}
	return d.config
}

// openDomain connects to libvirt and looks domain name up; done frees the
// handle and closes the connection.
func openDomain(c *cli.Context, name string) (conn *libvirt.Connect, d *domainHandle, done func(), err error) {
	if conn, err = openLibvirt(c); err != nil {
		return nil, nil, nil, err
	}
	if d, err = lookupDomain(conn, name); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	return conn, d, func() { d.free(); conn.Close() }, nil
}

func lookupDomain(conn *libvirt.Connect, name string) (*domainHandle, error) {
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		if isLibvirtErr(err, libvirt.ERR_NO_DOMAIN) {
			return nil, fmt.Errorf("domain %s does not exist on this host; see 'virsh list --all'", name)
		}
		return nil, fmt.Errorf("domain %s: %w", name, err)
	}
	h, err := loadDomain(dom)
	if err != nil {
		_ = dom.Free()
		return nil, err
	}
	return h, nil
}

func loadDomain(dom *libvirt.Domain) (*domainHandle, error) {
	h := &domainHandle{dom: dom}
	var err error
	if h.name, err = dom.GetName(); err != nil {
		return nil, fmt.Errorf("domain name: %w", err)
	}
	if h.active, err = dom.IsActive(); err != nil {
		return nil, fmt.Errorf("domain %s: %w", h.name, err)
	}
	if h.configXML, err = dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE); err != nil {
		return nil, fmt.Errorf("domain %s: read its definition: %w", h.name, err)
	}
	if h.config, err = domains.ParseDomain([]byte(h.configXML)); err != nil {
		return nil, fmt.Errorf("domain %s: %w", h.name, err)
	}
	if h.active {
		if h.liveXML, err = dom.GetXMLDesc(0); err != nil {
			return nil, fmt.Errorf("domain %s: read its live definition: %w", h.name, err)
		}
		if h.live, err = domains.ParseDomain([]byte(h.liveXML)); err != nil {
			return nil, fmt.Errorf("domain %s (live): %w", h.name, err)
		}
	}
	return h, nil
}

// allDomains loads every domain of the connection.
func allDomains(conn *libvirt.Connect) ([]*domainHandle, error) {
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []*domainHandle
	for i := range doms {
		h, err := loadDomain(&doms[i])
		if err != nil {
			for _, o := range out {
				o.free()
			}
			for j := i; j < len(doms); j++ {
				_ = doms[j].Free()
			}
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// modifyFlags are the flags for a change to the persistent config and, when
// the domain runs, to the live one too.
func (d *domainHandle) deviceFlags() libvirt.DomainDeviceModifyFlags {
	f := libvirt.DOMAIN_DEVICE_MODIFY_CONFIG
	if d.active {
		f |= libvirt.DOMAIN_DEVICE_MODIFY_LIVE
	}
	return f
}

func (d *domainHandle) affectFlags() libvirt.DomainModificationImpact {
	f := libvirt.DOMAIN_AFFECT_CONFIG
	if d.active {
		f |= libvirt.DOMAIN_AFFECT_LIVE
	}
	return f
}

// setMetadata writes gallium-net's metadata element (config, and live when
// running).
func (d *domainHandle) setMetadata(m *domains.Metadata) error {
	x, err := m.XML()
	if err != nil {
		return fmt.Errorf("domain %s: %w", d.name, err)
	}
	if err := d.dom.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, x, domains.MetadataPrefix, domains.MetadataNamespace, d.affectFlags()); err != nil {
		return fmt.Errorf("domain %s: set gallium-net metadata: %w", d.name, err)
	}
	return nil
}

// metadata returns a copy of the domain's gallium-net metadata (persistent
// config), or an empty one for an unmanaged domain.
func (d *domainHandle) metadata() *domains.Metadata {
	m := &domains.Metadata{}
	if d.config.Meta != nil {
		m.Profile = d.config.Meta.Profile
		m.NICs = append(m.NICs, d.config.Meta.NICs...)
	}
	return m
}
