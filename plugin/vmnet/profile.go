package vmnet

import (
	"fmt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
)

// ProfileNIC is a gallium-net NIC of a VM with its model.
type ProfileNIC struct {
	MAC, Network, Model string
	// Stale says the model differs from the VM's profile.
	Stale bool
}

// Profile is a VM's hardware profile and its NICs' models.
type Profile struct {
	Domain string
	// Set is the profile the domain's metadata names ("" for none: the
	// cluster default applies); Profile is the one that applies.
	Set     string
	Profile *model.HardwareProfile
	// NICs are the gallium-net NICs of the persistent definition.
	NICs []ProfileNIC
}

// ShowProfile reads a VM's hardware profile and its NICs' models.
func ShowProfile(conn Conn, s *model.Spec, domain string) (*Profile, error) {
	d, err := LoadDomain(conn, domain)
	if err != nil {
		return nil, err
	}
	return profileOf(s, d, d.Metadata().Profile)
}

func profileOf(s *model.Spec, d *Domain, set string) (*Profile, error) {
	prof, err := domains.ResolveProfile(s, set)
	if err != nil {
		return nil, err
	}
	p := &Profile{Domain: d.Name, Set: set, Profile: prof}
	for _, n := range d.Config.ManagedNICs() {
		p.NICs = append(p.NICs, ProfileNIC{MAC: n.MAC, Network: d.Config.NetworkOf(n), Model: n.Model, Stale: n.Model != prof.NICModel})
	}
	return p, nil
}

// ProfileChange is what SetProfile did.
type ProfileChange struct {
	*Profile
	// Active says the domain runs: updated models apply at its next boot
	// (a running NIC's model cannot change).
	Active bool
	// Updated are the NICs whose model SetProfile changed (with their old
	// model), in order; with updateNICs false, none.
	Updated []ProfileNIC
}

// SetProfile records hardware profile name in a VM's metadata, so that new
// NICs get its model. With updateNICs it also changes the model of the
// VM's gallium-net NICs that have another one, in the persistent
// definition. On an error the change holds what was done before it.
func SetProfile(conn Conn, s *model.Spec, domain, name string, updateNICs bool) (*ProfileChange, error) {
	d, err := LoadDomain(conn, domain)
	if err != nil {
		return nil, err
	}
	p, err := profileOf(s, d, name)
	if err != nil {
		return nil, err
	}
	meta := d.Metadata()
	meta.Profile = p.Profile.Name
	p.Set = p.Profile.Name
	if err := SetMetadata(conn, d, meta); err != nil {
		return nil, err
	}
	ch := &ProfileChange{Profile: p, Active: d.Active}
	if !updateNICs {
		return ch, nil
	}
	for i, n := range p.NICs {
		if !n.Stale {
			continue
		}
		x, err := domains.InterfaceWithModel(d.ConfigXML, n.MAC, p.Profile.NICModel)
		if err != nil {
			return ch, fmt.Errorf("domain %s: %w", domain, err)
		}
		if err := conn.UpdateDevice(domain, x, Scope{Config: true}); err != nil {
			return ch, fmt.Errorf("domain %s: NIC %s: set model %s: %w", domain, n.MAC, p.Profile.NICModel, err)
		}
		ch.Updated = append(ch.Updated, n)
		p.NICs[i].Model, p.NICs[i].Stale = p.Profile.NICModel, false
	}
	return ch, nil
}
