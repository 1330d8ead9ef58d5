package vmnet

import (
	"errors"
	"fmt"

	"github.com/gallium/gallium-net/domains"
)

// Domain is a libvirt domain with its parsed definitions.
type Domain struct {
	Name   string
	Active bool
	// Config is the persistent definition; Live the running one (nil when
	// the domain is off).
	Config, Live *domains.Domain
	// ConfigXML and LiveXML are the raw documents, which device changes
	// copy elements from.
	ConfigXML, LiveXML string
}

// Current is the live definition when the domain runs, else the persistent
// one.
func (d *Domain) Current() *domains.Domain {
	if d.Live != nil {
		return d.Live
	}
	return d.Config
}

// Scope is the persistent definition and, when the domain runs, the live
// one: a change must survive a restart and show now.
func (d *Domain) Scope() Scope { return Scope{Config: true, Live: d.Active} }

// Metadata returns a copy of the domain's gallium-net metadata (persistent
// definition), or an empty one for an unmanaged domain.
func (d *Domain) Metadata() *domains.Metadata {
	m := &domains.Metadata{}
	if d.Config.Meta != nil {
		m.Profile = d.Config.Meta.Profile
		m.NICs = append(m.NICs, d.Config.Meta.NICs...)
	}
	return m
}

// LoadDomain reads domain name's definitions.
func LoadDomain(conn Conn, name string) (*Domain, error) {
	d := &Domain{Name: name}
	var err error
	if d.Active, err = conn.DomainActive(name); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("domain %s does not exist on this host; see 'virsh list --all'", name)
		}
		return nil, fmt.Errorf("domain %s: %w", name, err)
	}
	if d.ConfigXML, err = conn.DomainXML(name, false); err != nil {
		return nil, fmt.Errorf("domain %s: read its definition: %w", name, err)
	}
	if d.Config, err = domains.ParseDomain([]byte(d.ConfigXML)); err != nil {
		return nil, fmt.Errorf("domain %s: %w", name, err)
	}
	if d.Active {
		if d.LiveXML, err = conn.DomainXML(name, true); err != nil {
			return nil, fmt.Errorf("domain %s: read its live definition: %w", name, err)
		}
		if d.Live, err = domains.ParseDomain([]byte(d.LiveXML)); err != nil {
			return nil, fmt.Errorf("domain %s (live): %w", name, err)
		}
	}
	return d, nil
}

// AllDomains reads every domain of the connection.
func AllDomains(conn Conn) ([]*Domain, error) {
	names, err := conn.DomainNames()
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make([]*Domain, 0, len(names))
	for _, n := range names {
		d, err := LoadDomain(conn, n)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// SetMetadata writes m as domain d's gallium-net metadata (persistent, and
// live when it runs).
func SetMetadata(conn Conn, d *Domain, m *domains.Metadata) error {
	x, err := m.XML()
	if err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	if err := conn.SetMetadata(d.Name, x, d.Scope()); err != nil {
		return fmt.Errorf("domain %s: set gallium-net metadata: %w", d.Name, err)
	}
	return nil
}
