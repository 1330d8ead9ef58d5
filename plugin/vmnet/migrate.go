package vmnet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// NetworkReady checks that a network of this host's snapshot can carry VM
// NICs now (bridge up, VLAN on the uplink). It is netsetup's job (netlink):
// the caller passes it in, so that this package links no netlink.
type NetworkReady func(snapshot.Network) error

// IncomingNIC is the verdict on one NIC of a domain that would migrate to
// this host.
type IncomingNIC struct {
	MAC      string   `json:"mac" yaml:"mac"`
	Network  string   `json:"network" yaml:"network"`
	Bridge   string   `json:"bridge,omitempty" yaml:"bridge,omitempty"`
	VLAN     int      `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	Problems []string `json:"problems" yaml:"problems"`
}

// Incoming is whether this host can run every gallium-net NIC of a domain
// that would migrate here: the answer of `vm migrate-check` on the
// destination.
type Incoming struct {
	Hypervisor string        `json:"hypervisor" yaml:"hypervisor"`
	Domain     string        `json:"domain" yaml:"domain"`
	Managed    bool          `json:"managed" yaml:"managed"`
	NICs       []IncomingNIC `json:"nics" yaml:"nics"`
}

// OK is true when no NIC has a problem.
func (in Incoming) OK() bool {
	for _, n := range in.NICs {
		if len(n.Problems) > 0 {
			return false
		}
	}
	return true
}

// CheckIncoming checks, on the destination of a migration, each gallium-net
// NIC of the domain in domainXML (the source's live XML): its network is on
// this hypervisor in the snapshot, defined and running in libvirt, ready in
// the kernel (bridge up, VLAN on the uplink), with an MTU the network
// carries, and no domain here already uses its MAC. Each problem names its
// fix. The checks are the hook's (prepare, migrate) and libvirt's, run
// before anything moves.
func CheckIncoming(conn Conn, snap *snapshot.Host, ready NetworkReady, domainXML []byte) (Incoming, error) {
	dom, err := domains.ParseDomain(domainXML)
	if err != nil {
		return Incoming{}, fmt.Errorf("read the domain XML: %w", err)
	}
	in := Incoming{Hypervisor: snap.Hypervisor, Domain: dom.Name, Managed: dom.Managed, NICs: []IncomingNIC{}}
	if !dom.Managed {
		return in, nil
	}
	here, err := HostNICs(conn)
	if err != nil {
		return in, fmt.Errorf("list this host's domains: %w", err)
	}
	macOwner := map[string]string{}
	for _, n := range here {
		if n.UUID != dom.UUID {
			macOwner[strings.ToLower(n.MAC)] = n.Domain
		}
	}
	hv := snap.Hypervisor
	verdicts := map[string][]string{} // per network: checked once
	for _, nic := range dom.ManagedNICs() {
		netName := dom.NetworkOf(nic)
		v := IncomingNIC{MAC: nic.MAC, Network: netName, Problems: []string{}}
		n, ok := snap.Networks[netName]
		if ok {
			v.Bridge, v.VLAN = n.Bridge, n.VLAN
		}
		probs, seen := verdicts[netName]
		if !seen {
			probs = networkProblems(conn, hv, netName, n, ok, ready)
			verdicts[netName] = probs
		}
		v.Problems = append(v.Problems, probs...)
		if ok && nic.MTU != 0 && n.MTU != 0 && nic.MTU > n.MTU {
			v.Problems = append(v.Problems, fmt.Sprintf("the NIC's MTU %d is larger than network %s's MTU %d on hypervisor %s; fix: lower the NIC's <mtu> or raise the network's MTU in the cluster spec and run 'gallium-net host apply' on %s", nic.MTU, netName, n.MTU, hv, hv))
		}
		if other, dup := macOwner[strings.ToLower(nic.MAC)]; dup {
			v.Problems = append(v.Problems, fmt.Sprintf("domain %s on hypervisor %s already has MAC %s; fix: give one of the NICs a new MAC ('gallium-net nic remove' and 'gallium-net nic add')", other, hv, nic.MAC))
		}
		in.NICs = append(in.NICs, v)
	}
	return in, nil
}

// networkProblems is what keeps network name from carrying a NIC on
// hypervisor hv, each with its fix.
func networkProblems(conn Conn, hv, name string, n snapshot.Network, inSnapshot bool, ready NetworkReady) []string {
	if !inSnapshot {
		return []string{fmt.Sprintf("network %s is not on hypervisor %s (its adapter group has no adapters there, or the network is not in the spec this host follows); fix: add it to the cluster spec, run 'gallium-net spec push', then 'gallium-net host apply' and 'gallium-net network define %s' on %s", name, hv, name, hv)}
	}
	var out []string
	st, err := conn.NetworkState(name)
	switch {
	case errors.Is(err, ErrNotFound):
		out = append(out, fmt.Sprintf("libvirt network %s is not defined on hypervisor %s; fix: run 'gallium-net network define %s' on %s", name, hv, name, hv))
	case err != nil:
		out = append(out, fmt.Sprintf("libvirt network %s on hypervisor %s: %v", name, hv, err))
	case !st.Active:
		out = append(out, fmt.Sprintf("libvirt network %s is defined but not running on hypervisor %s; fix: run 'virsh net-start %s' on %s", name, hv, name, hv))
	}
	if err := ready(n); err != nil {
		out = append(out, fmt.Sprintf("network %s is not ready on hypervisor %s: %v; fix: run 'gallium-net host apply' on %s", name, hv, err, hv))
	}
	return out
}
