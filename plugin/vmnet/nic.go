package vmnet

import (
	"context"
	"errors"
	"fmt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
)

// SpecNetwork checks that network is a network of the spec.
func SpecNetwork(s *model.Spec, network string) error {
	if s.Network(network) == nil {
		return fmt.Errorf("network %s is not in the cluster spec; see 'gallium-net list networks'", network)
	}
	return nil
}

// NewNIC asks for a NIC on Network for Domain.
type NewNIC struct {
	Domain, Network string
	// Hypervisor is this host's name, recorded in the ledger.
	Hypervisor string
	// Profile, when set, becomes the VM's hardware profile first.
	Profile string
	// MAC is the operator's MAC; "" allocates one.
	MAC string
}

// AddedNIC is the NIC AddNIC attached.
type AddedNIC struct {
	MAC, Network string
	// Profile is the hardware profile that gave the model; DefaultProfile
	// says the domain names none (the cluster default applied).
	Profile        *model.HardwareProfile
	DefaultProfile bool
	// Active says the domain runs: the NIC was hot-plugged and its tap
	// wants programming (SyncNIC).
	Active bool
}

// AddNIC adds a NIC to a domain: a MAC from macs (unique on this host too:
// snap's NIC records and every domain's NICs count as used), the model from
// the VM's hardware profile, the NIC marked gallium-net's in the domain's
// metadata and attached to the persistent definition and, when the domain
// runs, live.
func AddNIC(ctx context.Context, conn Conn, s *model.Spec, macs MACs, snap *snapshot.Host, req NewNIC) (AddedNIC, error) {
	res := AddedNIC{Network: req.Network}
	if err := SpecNetwork(s, req.Network); err != nil {
		return res, err
	}
	doms, err := AllDomains(conn)
	if err != nil {
		return res, err
	}
	var d *Domain
	for _, x := range doms {
		if x.Name == req.Domain {
			d = x
		}
	}
	if d == nil {
		return res, fmt.Errorf("domain %s does not exist on this host; see 'virsh list --all'", req.Domain)
	}
	res.Active = d.Active
	meta := d.Metadata()
	if req.Profile != "" {
		if _, err := domains.ResolveProfile(s, req.Profile); err != nil {
			return res, err
		}
		meta.Profile = req.Profile
	}
	if res.Profile, err = domains.ResolveProfile(s, meta.Profile); err != nil {
		return res, fmt.Errorf("domain %s: %w; set another with 'gallium-net vm profile %s PROFILE'", d.Name, err, d.Name)
	}
	res.DefaultProfile = meta.Profile == ""
	mac, undo, err := macs.NewMAC(ctx, s, req.MAC, UsedMACs(doms, snap), store.NIC{
		DomainUUID: d.Current().UUID, Domain: d.Name, Network: req.Network, Model: res.Profile.NICModel, Hypervisor: req.Hypervisor})
	if err != nil {
		return res, err
	}
	res.MAC = mac
	// fail gives the MAC back: the NIC it was for does not exist.
	fail := func(err error) (AddedNIC, error) {
		if uErr := undo(); uErr != nil {
			err = errors.Join(err, uErr)
		}
		return res, err
	}
	ifaceXML, err := domains.InterfaceXML(s, req.Network, meta.Profile, mac)
	if err != nil {
		return fail(err)
	}
	if err := meta.SetNIC(mac, req.Network); err != nil {
		return fail(err)
	}
	// Metadata first: a domain that starts in between must already know the
	// NIC is gallium-net's, or its tap would not be programmed.
	old := d.Metadata()
	if err := SetMetadata(conn, d, meta); err != nil {
		return fail(err)
	}
	if err := conn.AttachDevice(d.Name, ifaceXML, d.Scope()); err != nil {
		if rbErr := SetMetadata(conn, d, old); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("and restoring the metadata failed: %w", rbErr))
		}
		return fail(fmt.Errorf("domain %s: attach NIC %s on network %s: %w", d.Name, mac, req.Network, err))
	}
	return res, nil
}

// RemoveNIC detaches gallium-net NIC mac (any form domains.NormalizeMAC
// reads) from a domain, persistent and live, and drops it from the domain's
// metadata. It returns the MAC in canonical form. The caller gives the MAC
// back to the ledger (MACs.Release) once no definition holds it.
func RemoveNIC(conn Conn, domain, mac string) (string, error) {
	mac, err := domains.NormalizeMAC(mac)
	if err != nil {
		return "", err
	}
	d, err := LoadDomain(conn, domain)
	if err != nil {
		return mac, err
	}
	meta := d.Metadata()
	if meta.NIC(mac) == nil {
		return mac, fmt.Errorf("domain %s has no gallium-net NIC %s (see 'gallium-net nic list %s'); remove other NICs with virsh detach-interface", domain, mac, domain)
	}
	if d.Current().NIC(mac) != nil || d.Config.NIC(mac) != nil {
		// The element to detach comes from a definition that has it: the
		// persistent one, or only the live one for a NIC that was
		// hot-plugged live only.
		scope, src := Scope{Config: true}, d.ConfigXML
		if d.Config.NIC(mac) == nil {
			scope, src = Scope{Live: true}, d.LiveXML
		} else if d.Active && d.Live.NIC(mac) != nil {
			scope.Live = true
		}
		x, err := domains.InterfaceElement(src, mac)
		if err != nil {
			return mac, fmt.Errorf("domain %s: %w", domain, err)
		}
		if err := conn.DetachDevice(domain, x, scope); err != nil {
			return mac, fmt.Errorf("domain %s: detach NIC %s: %w", domain, mac, err)
		}
	}
	meta.RemoveNIC(mac)
	return mac, SetMetadata(conn, d, meta)
}

// StillPlugged reports whether a running domain still has NIC mac live
// after RemoveNIC: a live unplug is a request the guest acknowledges
// (ACPI), and libvirt returns before that when the guest is slow or has no
// OS.
func StillPlugged(conn Conn, domain, mac string) bool {
	d, err := LoadDomain(conn, domain)
	return err == nil && d.Live != nil && d.Live.NIC(mac) != nil
}
