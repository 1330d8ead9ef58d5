package model

import (
	"fmt"
	"net/netip"
)

// Rules on adapter groups: names and the kernel names derived from them,
// membership, MTU, bond tuning, the infrastructure group.

// maxGroupNameLen is the longest group name whose bond and bridge names
// fit the kernel's limit.
var maxGroupNameLen = MaxIfNameLen - max(len(BondPrefix), len(BridgePrefix))

// checkGroupNames: every group has a plain, unique name whose derived bond
// and bridge names are valid kernel names and collide with nothing.
func checkGroupNames(v *validator) {
	// Every kernel name gallium-net derives, and every adapter name, with
	// who has it: a derived name must be unique among all of them.
	taken := map[string]string{}
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if !v.firstHV(h) {
			continue
		}
		for _, a := range h.Adapters {
			if _, ok := taken[a.Name]; !ok {
				taken[a.Name] = "adapter " + show(a.Name) + " of hypervisor " + show(h.Name)
			}
		}
	}
	for i := range v.s.AdapterGroups {
		g := &v.s.AdapterGroups[i]
		path := groupPath(g, i)
		if v.groupByName[g.Name] != g && g.Name != "" {
			v.errorf(path, "adapter group name %s is used by entries %d and %d: give every group its own name", show(g.Name), v.groupIdx[v.groupByName[g.Name]]+1, i+1)
			continue
		}
		if err := IsObjectName(g.Name); err != nil {
			v.errorf(path+".name", "adapter group %v", err)
			continue
		}
		bad := false
		for _, derived := range []struct{ kind, name string }{{"bond", BondName(g.Name)}, {"bridge", BridgeName(g.Name)}} {
			if why := ValidIfName(derived.name); why != "" {
				if !bad {
					v.errorf(path+".name", "adapter group name %s gives the %s name %q, which %s: use a group name of at most %d characters", show(g.Name), derived.kind, derived.name, why, maxGroupNameLen)
				}
				bad = true
				continue
			}
			who := fmt.Sprintf("the %s of adapter group %s", derived.kind, show(g.Name))
			if prev, ok := taken[derived.name]; ok {
				v.errorf(path+".name", "%s would be named %q, which is already %s: rename the group", who, derived.name, prev)
				continue
			}
			taken[derived.name] = who
		}
	}
}

// checkGroupMembers: every group lists adapters; every hypervisor it names
// exists and has the adapters named; no adapter is listed twice or is in
// two groups.
func checkGroupMembers(v *validator) {
	type hvAdapter struct{ hv, adapter string }
	owner := map[hvAdapter]*AdapterGroup{}
	for i := range v.s.AdapterGroups {
		g := &v.s.AdapterGroups[i]
		total := 0
		for _, ads := range g.Adapters {
			total += len(ads)
		}
		if total == 0 {
			v.errorf(groupPath(g, i)+".adapters", "adapter group %s has no adapters: list its adapters per hypervisor, for example adapters: {hv1: [eno1, eno2]}", show(g.Name))
			continue
		}
		for _, hv := range sortedHVs(g.Adapters) {
			path := groupAdaptersPath(g, i, hv)
			h := v.hvByName[hv]
			if h == nil {
				v.errorf(path, "adapter group %s names hypervisor %s, which is not under hypervisors (they are: %s): fix the name or add the hypervisor", show(g.Name), show(hv), list(v.hvNames()))
				continue
			}
			seen := make(map[string]bool, len(g.Adapters[hv]))
			for _, name := range g.Adapters[hv] {
				if seen[name] {
					v.errorf(path, "adapter %s is listed twice in group %s on %s: list it once", show(name), show(g.Name), show(hv))
					continue
				}
				seen[name] = true
				if v.adapterOf[hv][name] == nil {
					v.errorf(path, "%s is not an adapter of hypervisor %s (its adapters: %s): fix the name or add it to %s.adapters", show(name), show(hv), adapterList(h), hvPath(h, v.hvIdx[hv]))
					continue
				}
				k := hvAdapter{hv, name}
				if prev := owner[k]; prev != nil {
					v.errorf(path, "adapter %s of %s is already in adapter group %s: an adapter belongs to at most one group; remove it from one of them", show(name), show(hv), show(prev.Name))
					continue
				}
				owner[k] = g
			}
		}
	}
}

// checkGroupMTU: a group's own MTU is in range.
func checkGroupMTU(v *validator) {
	for i := range v.s.AdapterGroups {
		g := &v.s.AdapterGroups[i]
		if g.MTU == 0 {
			continue
		}
		if err := IsMTU(g.MTU); err != nil {
			v.errorf(groupPath(g, i)+".mtu", "%v", err)
		}
	}
}

// checkBondTuning: miimon, primary, primaryReselect, numGratArp,
// peerNotifyDelayMs, updelayMs and downdelayMs of every group's bond, and
// its ARP monitoring (checkARPMonitor).
func checkBondTuning(v *validator) {
	for i := range v.s.AdapterGroups {
		g := &v.s.AdapterGroups[i]
		path := groupPath(g, i) + ".bond"
		b := g.Bond
		miimonOK := true
		if b.ArpIntervalMs != 0 || len(b.ArpIPTargets) > 0 || b.ArpValidate != "" {
			checkARPMonitor(v, g, path)
		}
		if b.ARPMonitor() {
			// One monitor per bond: the miimon-based settings must be
			// absent (checkARPMonitor says so); the primary and numGratArp
			// checks below still apply.
			miimonOK = false
		} else if err := IsMiimon(b.Miimon); err != nil {
			v.errorf(path+".miimon", "%v", err)
			miimonOK = false
		}
		if b.Primary != "" && !groupHasAdapter(g, b.Primary) {
			var names []string
			seen := map[string]bool{}
			for _, hv := range sortedHVs(g.Adapters) {
				for _, a := range g.Adapters[hv] {
					if !seen[a] {
						seen[a] = true
						names = append(names, a)
					}
				}
			}
			v.errorf(path+".primary", "primary %s is not an adapter of group %s on any hypervisor (its adapters: %s): name one of them, or leave primary out to use each hypervisor's first adapter of the group", show(b.Primary), show(g.Name), list(names))
		}
		if b.PrimaryReselect != "" {
			if err := IsPrimaryReselect(b.PrimaryReselect); err != nil {
				v.errorf(path+".primaryReselect", "%v", err)
			}
		}
		if err := IsNumGratARP(b.NumGratARP); err != nil {
			v.errorf(path+".numGratArp", "%v", err)
		}
		if b.ARPMonitor() {
			continue
		}
		miimon := 0
		if miimonOK {
			miimon = b.Miimon
		}
		if err := IsPeerNotifyDelay(b.PeerNotifyDelayMs, miimon); err != nil {
			v.errorf(path+".peerNotifyDelayMs", "%v", err)
		}
		if err := IsBondDelay("updelayMs", b.Updelay(), miimon); err != nil {
			v.errorf(path+".updelayMs", "%v", err)
		}
		if err := IsBondDelay("downdelayMs", b.DowndelayMs, miimon); err != nil {
			v.errorf(path+".downdelayMs", "%v", err)
		}
	}
}

// checkARPMonitor: arpIntervalMs, arpIPTargets and arpValidate of group g's
// bond (at path): in range, targets the kernel can probe from this group,
// and no miimon-based setting beside them.
func checkARPMonitor(v *validator, g *AdapterGroup, path string) {
	b := g.Bond
	if !b.ARPMonitor() {
		if b.ArpIntervalMs < 0 {
			v.errorf(path+".arpIntervalMs", "%v", IsARPInterval(b.ArpIntervalMs))
		}
		for _, k := range []struct {
			key string
			set bool
		}{{"arpIPTargets", len(b.ArpIPTargets) > 0}, {"arpValidate", b.ArpValidate != ""}} {
			if k.set {
				v.errorf(path+"."+k.key, "%s of group %s has no effect without ARP monitoring: set arpIntervalMs (for example 100) to turn it on, or remove %s", k.key, show(g.Name), k.key)
			}
		}
		return
	}
	if err := IsARPInterval(b.ArpIntervalMs); err != nil {
		v.errorf(path+".arpIntervalMs", "%v", err)
	}
	// The kernel runs one link monitor per bond: arp_interval turns
	// miimon off, and the delays are counted in miimon intervals (the
	// kernel refuses them without miimon).
	for _, k := range []struct {
		key string
		set bool
	}{{"miimon", b.Miimon != 0}, {"updelayMs", b.UpdelayMs != nil}, {"downdelayMs", b.DowndelayMs != 0}, {"peerNotifyDelayMs", b.PeerNotifyDelayMs != 0}} {
		if k.set {
			v.errorf(path+"."+k.key, "group %s sets both %s and arpIntervalMs: the kernel runs one link monitor per bond and %s belongs to MII monitoring (miimon), which ARP monitoring turns off: remove %s to keep ARP monitoring, or remove arpIntervalMs (and arpIPTargets, arpValidate) to keep MII monitoring", show(g.Name), k.key, k.key, k.key)
		}
	}
	infra := g == v.infra
	if b.ArpValidate != "" {
		if err := IsARPValidate(b.ArpValidate); err != nil {
			v.errorf(path+".arpValidate", "%v", err)
		} else if !infra && ARPValidateNeedsIP(b.ArpValidate) {
			v.errorf(path+".arpValidate", "arpValidate %s on group %s validates ARP answers against an IP of the bond, and gallium-net puts no IP on a group other than the infrastructure group: the kernel would probe from 0.0.0.0, no answer would validate and every adapter would go down; use %s or none", b.ArpValidate, show(g.Name), DefaultArpValidateNoIP)
		}
	}
	if len(b.ArpIPTargets) == 0 {
		if !infra {
			v.errorf(path+".arpIPTargets", "group %s has arpIntervalMs but no arpIPTargets, and only the infrastructure group has a default (the other hypervisors' management IPs, which this group does not reach): list up to %d IPv4 addresses that answer ARP on this group's untagged network in arpIPTargets, or remove arpIntervalMs", show(g.Name), MaxARPTargets)
			return
		}
		for _, hv := range sortedHVs(g.Adapters) {
			if len(g.Adapters[hv]) > 0 && len(v.s.ARPTargetsOn(g, hv)) == 0 {
				v.errorf(path+".arpIPTargets", "group %s has arpIntervalMs, and on hypervisor %s the default ARP targets (the other hypervisors' management IPs) are none: list the IPv4 addresses to probe (for example cluster.gateway) in arpIPTargets, or remove arpIntervalMs", show(g.Name), show(hv))
			}
		}
		return
	}
	if len(b.ArpIPTargets) > MaxARPTargets {
		v.errorf(path+".arpIPTargets", "group %s has %d arpIPTargets; the kernel takes at most %d: keep %d", show(g.Name), len(b.ArpIPTargets), MaxARPTargets, MaxARPTargets)
	}
	seen := map[netip.Addr]bool{}
	for j, t := range b.ArpIPTargets {
		tp := fmt.Sprintf("%s.arpIPTargets[%d]", path, j)
		a, err := ParseARPTarget(t)
		if err != nil {
			v.errorf(tp, "%v", err)
			continue
		}
		if seen[a] {
			v.errorf(tp, "ARP target %s is listed twice in group %s: remove one", a, show(g.Name))
		}
		seen[a] = true
		if !v.subnetOK {
			continue
		}
		in := v.subnet.Contains(a)
		switch {
		case infra && !in && ARPValidateNeedsIP(b.ArpValidate):
			v.errorf(tp, "ARP target %s of the infrastructure group is outside the management subnet %s: the kernel probes only targets on a connected subnet from the bond's IP, so with arpValidate %s no answer would validate and every adapter would go down: use addresses in %s (other hypervisors, the gateway)", a, v.subnet.Prefix, b.ArpValidate, v.subnet.Prefix)
		case !infra && in:
			v.errorf(tp, "ARP target %s of group %s is in the management subnet %s, which the kernel reaches through the infrastructure bridge: it would send no probe out of this group's bond and take every adapter down; use addresses on this group's untagged network outside %s", a, show(g.Name), v.subnet.Prefix, v.subnet.Prefix)
		}
	}
	for _, hv := range sortedHVs(g.Adapters) {
		if len(g.Adapters[hv]) > 0 && len(v.s.ARPTargetsOn(g, hv)) == 0 {
			v.errorf(path+".arpIPTargets", "group %s: on hypervisor %s the only ARP target is its own management IP, which it leaves out (a host does not answer its own ARP): add another IPv4 address to arpIPTargets", show(g.Name), show(hv))
		}
	}
}

// groupHasAdapter reports whether group g has an adapter named name on any
// hypervisor.
func groupHasAdapter(g *AdapterGroup, name string) bool {
	for _, ads := range g.Adapters {
		for _, a := range ads {
			if a == name {
				return true
			}
		}
	}
	return false
}

// checkInfrastructureGroup: exactly one group is the infrastructure group.
// (That it is on every hypervisor is checked per hypervisor in checkLayout.)
func checkInfrastructureGroup(v *validator) {
	if v.infra == nil {
		if len(v.s.AdapterGroups) == 0 {
			v.errorf("adapterGroups", "no adapter groups: add an infrastructure group (infrastructure: true) with each hypervisor's infrastructure adapters, and a VM group")
		} else {
			v.errorf("adapterGroups", "no infrastructure group: mark the group that carries cluster communication, storage replication and the management IP with infrastructure: true")
		}
		return
	}
	for i := range v.s.AdapterGroups {
		g := &v.s.AdapterGroups[i]
		if g.Infrastructure && g != v.infra {
			v.errorf(groupPath(g, i)+".infrastructure", "adapter group %s is a second infrastructure group (the first is %s): a cluster has exactly one; set infrastructure: false on all but one", show(g.Name), show(v.infra.Name))
		}
	}
}

// hvNames lists the hypervisor names in spec order (first entries),
// computed once.
func (v *validator) hvNames() []string {
	if v.hvNameList == nil {
		v.hvNameList = []string{}
		for i := range v.s.Hypervisors {
			if h := &v.s.Hypervisors[i]; v.firstHV(h) {
				v.hvNameList = append(v.hvNameList, h.Name)
			}
		}
	}
	return v.hvNameList
}

// adapterList shows a hypervisor's adapter names for a message.
func adapterList(h *Hypervisor) string {
	return listFunc(len(h.Adapters), func(i int) string { return h.Adapters[i].Name })
}
