package model

import "strings"

// Rules on hypervisors and their adapters.

// checkHypervisorNames: there are hypervisors; each has a host name, and no
// two share one.
func checkHypervisorNames(v *validator) {
	if len(v.s.Hypervisors) == 0 {
		v.errorf("hypervisors", "no hypervisors: list every host of the cluster under hypervisors, with its name, managementIP and adapters")
		return
	}
	// Host names do not depend on case, and a host finds its own entry
	// without regard to case (cli's hypervisorNamed): two names that differ
	// only in case would both be this host.
	folded := make(map[string]int, len(v.s.Hypervisors))
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if err := IsHostname(h.Name); err != nil {
			v.errorf(hvPath(h, i)+".name", "hypervisor %v", err)
		}
		if !v.firstHV(h) && h.Name != "" {
			v.errorf(hvPath(h, i), "hypervisor name %s is used by entries %d and %d: give every hypervisor its own name",
				show(h.Name), v.hvIdx[h.Name]+1, i+1)
			continue
		}
		key := strings.ToLower(h.Name)
		if j, dup := folded[key]; dup && h.Name != "" {
			v.errorf(hvPath(h, i)+".name", "hypervisor name %s differs from %s (entry %d) only in case, and host names do not depend on case: give every hypervisor its own name",
				show(h.Name), show(v.s.Hypervisors[j].Name), j+1)
			continue
		}
		folded[key] = i
	}
}

// checkAdapters: every adapter of a hypervisor has a valid kernel interface
// name outside gallium-net's own name space, appears once, and has a
// plausible speed.
func checkAdapters(v *validator) {
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if !v.firstHV(h) {
			continue
		}
		first := make(map[string]int, len(h.Adapters))
		macs, pcis := map[string]string{}, map[string]string{}
		for j := range h.Adapters {
			a := &h.Adapters[j]
			path := v.adapterPath(h, a)
			if j0, dup := first[a.Name]; dup {
				v.errorf(path, "adapter %s is listed twice on hypervisor %s (entries %d and %d): list each adapter once", show(a.Name), show(h.Name), j0+1, j+1)
				continue
			}
			first[a.Name] = j
			if err := IsInterfaceName(a.Name); err != nil {
				v.errorf(path+".name", "adapter %v", err)
			} else if p := reservedPrefix(a.Name); p != "" {
				v.errorf(path+".name", "adapter name %s starts with %q, which gallium-net keeps for the bonds and bridges it creates and manages (it would treat this adapter as its own): rename the adapter on the host (for example with a systemd .link file) and here", show(a.Name), p)
			}
			if err := IsSpeed(a.SpeedMbps); err != nil {
				v.errorf(path+".speedMbps", "%v", err)
			}
			if a.MAC != "" {
				if err := IsAdapterMAC(a.MAC); err != nil {
					v.errorf(path+".mac", "adapter %s: %v", show(a.Name), err)
				} else if o, dup := macs[strings.ToLower(a.MAC)]; dup {
					v.errorf(path+".mac", "adapters %s and %s of hypervisor %s have the same mac %s: each NIC has its own; check 'ip link show' (permaddr)", show(o), show(a.Name), show(h.Name), a.MAC)
				} else {
					macs[strings.ToLower(a.MAC)] = a.Name
				}
			}
			if a.PCIPath != "" {
				if err := IsPCIPath(a.PCIPath); err != nil {
					v.errorf(path+".pciPath", "adapter %s: %v", show(a.Name), err)
				} else if o, dup := pcis[strings.ToLower(a.PCIPath)]; dup {
					v.errorf(path+".pciPath", "adapters %s and %s of hypervisor %s have the same pciPath %s: each NIC has its own; check 'ethtool -i NIC' (bus-info)", show(o), show(a.Name), show(h.Name), a.PCIPath)
				} else {
					pcis[strings.ToLower(a.PCIPath)] = a.Name
				}
			}
		}
	}
}

// reservedPrefix returns the prefix of gallium-net's own link names that
// name starts with, or "".
func reservedPrefix(name string) string {
	for _, p := range []string{BridgePrefix, BondPrefix} {
		if strings.HasPrefix(name, p) {
			return p
		}
	}
	return ""
}
