package vmnet

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/gallium/gallium-net/plugin/store"
)

// HostNIC is one NIC of a libvirt domain on this host.
type HostNIC struct {
	Domain, UUID, MAC, Network, Model string
}

// HostNICs lists every NIC with a MAC of every domain on this host (as it
// runs, else as defined). A NIC on a bridge rather than a libvirt network
// names it "bridge:NAME".
func HostNICs(conn Conn) ([]HostNIC, error) {
	doms, err := AllDomains(conn)
	if err != nil {
		return nil, err
	}
	var out []HostNIC
	for _, d := range doms {
		dom := d.Current()
		for _, n := range dom.NICs {
			if n.MAC == "" {
				continue
			}
			network := n.Network
			if network == "" && n.Bridge != "" {
				network = "bridge:" + n.Bridge
			}
			out = append(out, HostNIC{Domain: d.Name, UUID: dom.UUID, MAC: n.MAC, Network: network, Model: n.Model})
		}
	}
	return out, nil
}

// Adoption is the outcome for one NIC of AdoptNICs.
type Adoption struct {
	NIC HostNIC
	// Imported says the ledger had no record and now has one; with neither
	// Imported nor Conflict the ledger already had it.
	Imported bool
	// Conflict is why the ledger refused the NIC: its MAC belongs to
	// another NIC.
	Conflict error
}

// AdoptNICs records existing NICs in the cluster ledger under their
// domain's UUID with the MAC as NIC key, so that adopting again changes
// nothing. A MAC the ledger gives to another NIC is a conflict, reported
// and skipped; any other error stops the adoption.
func AdoptNICs(ctx context.Context, st *store.Store, nics []HostNIC, hv string) ([]Adoption, error) {
	var out []Adoption
	for _, n := range nics {
		_, created, err := st.ImportNIC(ctx, store.NIC{DomainUUID: n.UUID, Key: n.MAC, Domain: n.Domain, MAC: n.MAC, Network: n.Network, Model: n.Model, Hypervisor: hv})
		switch {
		case errors.Is(err, store.ErrConflict):
			out = append(out, Adoption{NIC: n, Conflict: err})
		case err != nil:
			return out, fmt.Errorf("adopt NIC %s of domain %s: %w", n.MAC, n.Domain, err)
		default:
			out = append(out, Adoption{NIC: n, Imported: created})
		}
	}
	return out, nil
}

// MACFinding is one finding of CompareMACs.
type MACFinding struct {
	Kind   string `json:"kind" yaml:"kind"` // duplicate, unknown, missing
	MAC    string `json:"mac" yaml:"mac"`
	Domain string `json:"domain,omitempty" yaml:"domain,omitempty"`
	Detail string `json:"detail" yaml:"detail"`
}

// CompareMACs checks this host's NICs against the ledger: a MAC used twice
// here or given by the ledger to another domain is a duplicate, one the
// ledger lacks is unknown, and a ledger NIC of hypervisor hv that no domain
// here uses is missing (information: the VM may have moved).
func CompareMACs(host []HostNIC, ledger []store.NIC, hv string) []MACFinding {
	var out []MACFinding
	byMAC := map[string][]HostNIC{}
	for _, n := range host {
		byMAC[n.MAC] = append(byMAC[n.MAC], n)
	}
	ledgerByMAC := map[string]store.NIC{}
	for _, n := range ledger {
		ledgerByMAC[n.MAC] = n
	}
	macs := make([]string, 0, len(byMAC))
	for m := range byMAC {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	for _, mac := range macs {
		users := byMAC[mac]
		if len(users) > 1 {
			var names []string
			for _, u := range users {
				names = append(names, u.Domain)
			}
			out = append(out, MACFinding{"duplicate", mac, users[0].Domain, fmt.Sprintf("used by %d NICs on this host (domains %v)", len(users), names)})
		}
		l, known := ledgerByMAC[mac]
		for _, u := range users {
			switch {
			case !known:
				out = append(out, MACFinding{"unknown", mac, u.Domain, "not in the cluster ledger: adopt it with 'gallium-net state import' or give the NIC a new MAC"})
			case l.DomainUUID != u.UUID:
				out = append(out, MACFinding{"duplicate", mac, u.Domain, fmt.Sprintf("the ledger gives this MAC to domain %s (%s) on %s", orDash(l.Domain), l.DomainUUID, orDash(l.Hypervisor))})
			}
		}
	}
	for _, l := range ledger {
		if l.Hypervisor == hv && len(byMAC[l.MAC]) == 0 {
			out = append(out, MACFinding{"missing", l.MAC, l.Domain, "in the ledger for this hypervisor but no domain here uses it"})
		}
	}
	return out
}
