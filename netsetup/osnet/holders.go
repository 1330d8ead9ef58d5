package osnet

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// HeldBy is one object gallium-net takes over on this hypervisor (an
// adapter, one of its bonds or bridges, the management IP) and what the
// OS's network managers are configured to do with it.
type HeldBy struct {
	Object string  `json:"object" yaml:"object"` // "adapter eno1", "management IP 192.168.1.101"
	Claims []Claim `json:"claims" yaml:"claims"`
	// Inert lists the managers of Claims that are not installed (or, for
	// systemd-networkd, not enabled): their files do nothing.
	Inert []Manager `json:"inert,omitempty" yaml:"inert,omitempty"`
}

// CheckOSManagers says which of the OS's network managers are configured
// to hold hypervisor hv's adapters, gallium-net's bonds and bridges for
// them, or its management IP. Each object held by an installed manager is a
// warning: at the next boot that manager brings it up its own way, racing
// gallium-net-host.service. mac gives an adapter's permanent MAC (nil when
// unknown) for claims that match by MAC.
func CheckOSManagers(spec *model.Spec, hv string, claims []Claim, installed map[Manager]bool, mac func(name string) net.HardwareAddr) (model.Findings, []HeldBy) {
	h := spec.Hypervisor(hv)
	if h == nil {
		return model.Findings{{Severity: model.SeverityError, Path: "hypervisors", Message: fmt.Sprintf("hypervisor %q is not in the cluster spec", hv)}}, nil
	}
	var findings model.Findings
	var held []HeldBy
	add := func(object, path string, cs []Claim) {
		if len(cs) == 0 {
			return
		}
		hb := HeldBy{Object: object, Claims: cs}
		var live []string
		for _, c := range cs {
			if installed[c.Manager] {
				live = append(live, fmt.Sprintf("%s %s (%s)", c.Manager, c.Where(), c.What))
			} else if !slices.Contains(hb.Inert, c.Manager) {
				hb.Inert = append(hb.Inert, c.Manager)
			}
		}
		held = append(held, hb)
		if len(live) > 0 {
			findings = append(findings, model.Finding{Severity: model.SeverityWarning, Path: path,
				Message: fmt.Sprintf("%s is configured by %s: at the next boot that manager sets it up its own way and races gallium-net-host.service; make it let go of %s before relying on gallium-net across reboots", object, strings.Join(live, "; "), object)})
		}
	}
	for _, a := range h.Adapters {
		add("adapter "+a.Name, fmt.Sprintf("hypervisors[%s].adapters[%s]", hv, a.Name), Of(claims, a.Name, mac(a.Name)))
	}
	for _, g := range spec.AdapterGroups {
		if len(g.Adapters[hv]) == 0 {
			continue
		}
		for _, link := range []string{model.BondName(g.Name), model.BridgeName(g.Name)} {
			// A catch-all ("Name=*", a profile for any ethernet) names
			// gallium-net's links only by accident: reported all the same,
			// since the manager would adopt them.
			var cs []Claim
			for _, c := range Of(claims, link, nil) {
				// NetworkManager's profile for "any ethernet" does not
				// take a bond or a bridge.
				if c.Manager != NetworkManager || len(c.Names) != 1 || c.Names[0] != "*" {
					cs = append(cs, c)
				}
			}
			add("link "+link, fmt.Sprintf("adapterGroups[%s]", g.Name), cs)
		}
	}
	if p, err := netip.ParsePrefix(h.ManagementIP); err == nil {
		ifaces := Interfaces(spec, hv)
		var cs []Claim
		for _, c := range Holding(claims, p.Addr()) {
			if stillHolds(claims, c, ifaces, mac) {
				cs = append(cs, c)
			}
		}
		add("management IP "+p.Addr().String(), fmt.Sprintf("hypervisors[%s].managementIP", hv), cs)
	}
	return findings, held
}

// Interfaces are the names gallium-net takes over on hypervisor hv: its
// adapters, and the bond and bridge of each of its adapter groups.
func Interfaces(spec *model.Spec, hv string) []string {
	h := spec.Hypervisor(hv)
	if h == nil {
		return nil
	}
	var out []string
	for _, a := range h.Adapters {
		out = append(out, a.Name)
	}
	for _, g := range spec.AdapterGroups {
		if len(g.Adapters[hv]) > 0 {
			out = append(out, model.BondName(g.Name), model.BridgeName(g.Name))
		}
	}
	return out
}

// stillHolds reports whether claim c (which addresses something) still
// applies: on one of ifaces unless its manager was told to let go of that
// interface, and always when it is about another interface.
func stillHolds(claims []Claim, c Claim, ifaces []string, mac func(string) net.HardwareAddr) bool {
	matched := false
	for _, n := range ifaces {
		m := mac(n)
		if !c.Matches(n, m) {
			continue
		}
		matched = true
		for _, o := range Of(claims, n, m) {
			if o.File == c.File && o.Line == c.Line {
				return true
			}
		}
	}
	return !matched
}
