package vmnet

import (
	"fmt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// ProgramTap puts a tap on its network's bridge with the network's VLAN and
// MTU and returns the writes it made. It is netsetup's job (netlink): the
// caller passes it in, so that this package links no netlink.
type ProgramTap func(tap string, network snapshot.Network) (changes []string, err error)

// Synced is what SyncNIC did to one NIC.
type Synced struct {
	Tap, Bridge string
	Changes     []string
}

// SyncNIC brings NIC mac of running domain in line with this host's
// snapshot: the live interface onto its network's current bridge (a live
// device update) and its tap programmed.
func SyncNIC(conn Conn, program ProgramTap, s *model.Spec, snap *snapshot.Host, domain, mac string) (Synced, error) {
	var res Synced
	d, err := LoadDomain(conn, domain)
	if err != nil {
		return res, err
	}
	if d.Live == nil {
		return res, fmt.Errorf("domain %s is not running", domain)
	}
	n := d.Live.NIC(mac)
	if n == nil {
		return res, fmt.Errorf("domain %s has no NIC %s live", domain, mac)
	}
	network := d.Live.NetworkOf(*n)
	sn, ok := snap.Networks[network]
	if !ok {
		return res, fmt.Errorf("network %s is not on this hypervisor (%s); run 'gallium-net network define'", network, snap.Hypervisor)
	}
	res.Bridge = sn.Bridge
	if n.Network != network || (n.Bridge != "" && n.Bridge != sn.Bridge) {
		x, err := domains.LiveInterfaceXML(s, d.Live, *n, network)
		if err != nil {
			return res, err
		}
		if err := conn.UpdateDevice(domain, x, Scope{Live: true}); err != nil {
			return res, fmt.Errorf("domain %s: move NIC %s to network %s (bridge %s): %w", domain, mac, network, sn.Bridge, err)
		}
		res.Changes = append(res.Changes, fmt.Sprintf("live interface moved from %s/%s to %s/%s", orDash(n.Network), orDash(n.Bridge), network, sn.Bridge))
		// The device update may have replaced the tap.
		if d, err = LoadDomain(conn, domain); err != nil {
			return res, err
		}
		if d.Live == nil {
			return res, fmt.Errorf("domain %s stopped during the update", domain)
		}
		if n = d.Live.NIC(mac); n == nil {
			return res, fmt.Errorf("domain %s: NIC %s vanished during the update", domain, mac)
		}
	}
	profile := ""
	if d.Live.Meta != nil {
		profile = d.Live.Meta.Profile
	}
	if want, err := domains.ResolveProfile(s, profile); err == nil && n.Model != "" && n.Model != want.NICModel {
		res.Changes = append(res.Changes, fmt.Sprintf("model is %s, profile %s says %s: changes at next boot ('gallium-net vm profile %s %s --update-nics')", n.Model, want.Name, want.NICModel, domain, want.Name))
	}
	res.Tap = n.Target
	if n.Target == "" {
		return res, fmt.Errorf("domain %s: NIC %s has no tap", domain, mac)
	}
	changes, err := program(n.Target, sn)
	res.Changes = append(res.Changes, changes...)
	return res, err
}
