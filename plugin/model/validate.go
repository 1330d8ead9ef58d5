package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Validate checks a spec against every rule of the model (DESIGN.md section
// 1) and what a careful operator would also expect, and returns what it
// finds. A spec is valid when the findings hold no error (Findings.HasErrors);
// warnings are printed but allowed.
//
// Validate expects a spec from Parse or Load (defaults filled in); call
// SetDefaults first on a spec built in code. The findings come in a fixed
// order (rule by rule, each in spec order; map keys sorted), so the same
// spec always gives the same list. Validate never panics and never changes
// the spec. Its cost is linear in the size of the spec.
func Validate(s *Spec) Findings {
	if s == nil {
		return Findings{{Severity: SeverityError, Path: "spec", Message: "no spec given; load one with Load or Parse"}}
	}
	v := newValidator(s)
	for _, rule := range rules {
		rule(v)
	}
	return v.findings
}

// rules are run in this order; each checks one topic. Every rule is a small
// function that reads the spec and the validator's indexes and adds
// findings.
var rules = []func(*validator){
	// validate_cluster.go
	checkClusterName,
	checkSubnet,
	checkManagementIPs,
	checkVIP,
	checkGateway,
	checkMACPrefix,
	checkClusterMTU,
	// validate_hypervisors.go
	checkHypervisorNames,
	checkAdapters,
	// validate_groups.go
	checkGroupNames,
	checkGroupMembers,
	checkGroupMTU,
	checkBondTuning,
	checkInfrastructureGroup,
	// validate_layout.go
	checkLayout,
	checkAdapterSpeeds,
	// validate_networks.go
	checkNetworkNames,
	checkNetworkGroups,
	checkVLANs,
	checkNetworkMTU,
	checkNetworksOnInfrastructure,
	// validate_profiles.go
	checkProfiles,
	checkDefaultProfile,
}

// validator holds the spec, the findings so far and indexes built once, so
// that no rule needs a nested scan of the spec (a spec may have thousands of
// networks).
type validator struct {
	s        *Spec
	findings Findings

	// hvByName maps a hypervisor name to its first entry.
	hvByName map[string]*Hypervisor
	// adapterOf maps hypervisor name, then adapter name, to the adapter
	// (first entry of each name).
	adapterOf map[string]map[string]*Adapter
	// groupByName maps a group name to its first entry.
	groupByName map[string]*AdapterGroup
	// profileByName maps a profile name to its first entry.
	profileByName map[string]*HardwareProfile
	// members lists, per hypervisor, the groups with adapters there and
	// which adapters (existing ones, each counted once), in group order.
	members map[string][]membership
	// infra is the infrastructure group (the first one when the spec has
	// several, which is an error of its own), or nil; infraIdx its index.
	infra    *AdapterGroup
	infraIdx int
	// hvIdx and groupIdx give the index of a name's first entry, and
	// adapterIdx the index of an adapter in its hypervisor's list, for paths
	// of entries without a name.
	hvIdx      map[string]int
	groupIdx   map[*AdapterGroup]int
	adapterIdx map[*Adapter]int
	// subnet is the parsed cluster subnet, valid only when subnetOK.
	subnet   prefix
	subnetOK bool
	// subnet6: the subnet is IPv6, refused once in full at cluster.subnet;
	// the addresses in it only point there.
	subnet6 bool
	// hvNameList caches hvNames.
	hvNameList []string
	// addrs maps each management IP, the VIP and the gateway to who has it.
	addrs map[netip.Addr]string
}

// membership is one group's adapters on one hypervisor.
type membership struct {
	group    *AdapterGroup
	gi       int // index of group in the spec
	adapters []*Adapter
}

func newValidator(s *Spec) *validator {
	v := &validator{
		s:             s,
		hvByName:      make(map[string]*Hypervisor, len(s.Hypervisors)),
		adapterOf:     make(map[string]map[string]*Adapter, len(s.Hypervisors)),
		groupByName:   make(map[string]*AdapterGroup, len(s.AdapterGroups)),
		profileByName: make(map[string]*HardwareProfile, len(s.HardwareProfiles)),
		members:       make(map[string][]membership, len(s.Hypervisors)),
		hvIdx:         make(map[string]int, len(s.Hypervisors)),
		groupIdx:      make(map[*AdapterGroup]int, len(s.AdapterGroups)),
		adapterIdx:    map[*Adapter]int{},
	}
	for i := range s.Hypervisors {
		h := &s.Hypervisors[i]
		if _, dup := v.hvByName[h.Name]; dup {
			continue
		}
		v.hvByName[h.Name] = h
		v.hvIdx[h.Name] = i
		ads := make(map[string]*Adapter, len(h.Adapters))
		for j := range h.Adapters {
			a := &h.Adapters[j]
			v.adapterIdx[a] = j
			if _, dup := ads[a.Name]; !dup {
				ads[a.Name] = a
			}
		}
		v.adapterOf[h.Name] = ads
	}
	for i := range s.AdapterGroups {
		g := &s.AdapterGroups[i]
		v.groupIdx[g] = i
		if _, dup := v.groupByName[g.Name]; !dup {
			v.groupByName[g.Name] = g
		}
		if g.Infrastructure && v.infra == nil {
			v.infra, v.infraIdx = g, i
		}
		for _, hv := range sortedHVs(g.Adapters) {
			ads, ok := v.adapterOf[hv]
			if !ok {
				continue // reported by checkGroupMembers
			}
			m := membership{gi: i}
			seen := make(map[string]bool, len(g.Adapters[hv]))
			for _, name := range g.Adapters[hv] {
				if a := ads[name]; a != nil && !seen[name] {
					seen[name] = true
					m.adapters = append(m.adapters, a)
				}
			}
			if len(m.adapters) > 0 {
				m.group = g
				v.members[hv] = append(v.members[hv], m)
			}
		}
	}
	for i := range s.HardwareProfiles {
		p := &s.HardwareProfiles[i]
		if _, dup := v.profileByName[p.Name]; !dup {
			v.profileByName[p.Name] = p
		}
	}
	return v
}

// errorf adds an error at path. The message says what is wrong and what to
// change.
func (v *validator) errorf(path, format string, args ...any) {
	v.findings = append(v.findings, Finding{Severity: SeverityError, Path: path, Message: fmt.Sprintf(format, args...)})
}

// warnf adds a warning at path.
func (v *validator) warnf(path, format string, args ...any) {
	v.findings = append(v.findings, Finding{Severity: SeverityWarning, Path: path, Message: fmt.Sprintf(format, args...)})
}

// firstHV reports whether h is the first hypervisor entry of its name; rules
// that look at a hypervisor as a whole skip later duplicates (their name is
// reported once by checkHypervisorNames).
func (v *validator) firstHV(h *Hypervisor) bool { return v.hvByName[h.Name] == h }

// sortedHVs returns the hypervisor names of a group's adapter map, sorted,
// so that findings do not depend on map order.
func sortedHVs(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ref is the path element of a named list entry: kind[name], kind["odd
// name"] for names that are not plain, or kind[i] (0-based index) when the
// entry has no name.
func ref(kind, name string, i int) string {
	if name == "" {
		return kind + "[" + strconv.Itoa(i) + "]"
	}
	return kind + "[" + pathName(name) + "]"
}

// pathName writes a name for a path: as is when it is plain, quoted
// otherwise, and cut short when very long.
func pathName(name string) string {
	if plainName(name) && len(name) <= maxShown {
		return name
	}
	return show(name)
}

// plainName reports whether name needs no quoting in a path.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// maxShown is the longest name shown in full in a message or path.
const maxShown = 64

// show quotes a value from the spec for a message, cut short when long, so
// that a hostile spec cannot make huge or garbled output.
func show(s string) string {
	if len(s) > maxShown {
		cut := maxShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// list shows up to a few names, for messages such as "hv1 has: eno1, eno2".
func list(names []string) string {
	return listFunc(len(names), func(i int) string { return names[i] })
}

// listFunc shows up to a few of n names, name(i) giving the i-th, without
// touching the others (a hostile spec may have very many).
func listFunc(n int, name func(int) string) string {
	const most = 8
	if n == 0 {
		return "none"
	}
	out := make([]string, 0, min(n, most))
	for i := 0; i < n && i < most; i++ {
		out = append(out, pathName(name(i)))
	}
	s := strings.Join(out, ", ")
	if n > most {
		s += fmt.Sprintf(" and %d more", n-most)
	}
	return s
}

// hvLabel names hypervisor entry i for a message: its quoted name, or its
// entry number when it has none.
func hvLabel(h *Hypervisor, i int) string {
	if h.Name == "" {
		return "hypervisor entry " + strconv.Itoa(i+1)
	}
	return show(h.Name)
}

// hvPath, groupPath, netPath and profilePath name list entries in paths.
func hvPath(h *Hypervisor, i int) string           { return ref("hypervisors", h.Name, i) }
func groupPath(g *AdapterGroup, i int) string      { return ref("adapterGroups", g.Name, i) }
func netPath(n *Network, i int) string             { return ref("networks", n.Name, i) }
func profilePath(p *HardwareProfile, i int) string { return ref("hardwareProfiles", p.Name, i) }

// adapterPath names adapter a of hypervisor h.
func (v *validator) adapterPath(h *Hypervisor, a *Adapter) string {
	return ref("hypervisors", h.Name, v.hvIdx[h.Name]) + "." + ref("adapters", a.Name, v.adapterIdx[a])
}

// groupAdaptersPath names a group's adapter list on one hypervisor.
func groupAdaptersPath(g *AdapterGroup, gi int, hv string) string {
	return groupPath(g, gi) + ".adapters[" + pathName(hv) + "]"
}
