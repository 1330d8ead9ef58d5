package model

// Rules on networks: names, the adapter group they name, VLANs, MTU, and
// VM networks on the infrastructure group.

// LibvirtDefaultNetwork is the NAT network libvirt's packages define.
const LibvirtDefaultNetwork = "default"

// checkNetworkNames: every network has a plain, unique name.
func checkNetworkNames(v *validator) {
	first := make(map[string]int, len(v.s.Networks))
	for i := range v.s.Networks {
		n := &v.s.Networks[i]
		if j, dup := first[n.Name]; dup && n.Name != "" {
			v.errorf(netPath(n, i), "network name %s is used by entries %d and %d: give every network its own name", show(n.Name), j+1, i+1)
			continue
		}
		first[n.Name] = i
		if err := IsObjectName(n.Name); err != nil {
			v.errorf(netPath(n, i)+".name", "network %v", err)
		}
		if n.Name == LibvirtDefaultNetwork {
			// Caught only at 'network define' before, on the hypervisor.
			v.warnf(netPath(n, i)+".name", "network %s has the name of libvirt's stock NAT network, which most libvirt installs define: 'gallium-net network define' never touches a network it does not own and fails on such a host; give the network another name", show(n.Name))
		}
	}
}

// checkNetworkGroups: every network names an existing adapter group.
func checkNetworkGroups(v *validator) {
	for i := range v.s.Networks {
		n := &v.s.Networks[i]
		switch {
		case n.AdapterGroup == "":
			v.errorf(netPath(n, i)+".adapterGroup", "network %s names no adapter group: set adapterGroup to the group that carries it (%s)", show(n.Name), v.groupList())
		case v.groupByName[n.AdapterGroup] == nil:
			v.errorf(netPath(n, i)+".adapterGroup", "network %s names adapter group %s, which does not exist: use one of %s, or add that group", show(n.Name), show(n.AdapterGroup), v.groupList())
		}
	}
}

// groupList shows the group names for a message.
func (v *validator) groupList() string {
	gs := v.s.AdapterGroups
	return listFunc(len(gs), func(i int) string { return gs[i].Name })
}

// checkVLANs: VLAN IDs are in range; no two networks of a group share a
// VLAN, and a group has at most one untagged network.
func checkVLANs(v *validator) {
	type groupVLAN struct {
		group string
		vlan  int
	}
	first := make(map[groupVLAN]*Network, len(v.s.Networks))
	for i := range v.s.Networks {
		n := &v.s.Networks[i]
		if n.VLAN != 0 {
			if err := IsVLAN(n.VLAN); err != nil {
				v.errorf(netPath(n, i)+".vlan", "%v", err)
				continue
			}
			if n.VLAN == NativeVLAN {
				v.errorf(netPath(n, i)+".vlan", "VLAN %d carries each adapter group's untagged (native) traffic inside gallium-net's VLAN-filtering bridges, so it cannot be a tagged network: leave vlan out for an untagged network, or use a VLAN ID from %d to %d", NativeVLAN, NativeVLAN+1, MaxVLAN)
				continue
			}
		}
		if v.groupByName[n.AdapterGroup] == nil {
			continue // reported by checkNetworkGroups
		}
		k := groupVLAN{n.AdapterGroup, n.VLAN}
		prev := first[k]
		if prev == nil {
			first[k] = n
			continue
		}
		path := netPath(n, i) + ".vlan"
		if n.VLAN == 0 {
			v.errorf(path, "network %s is untagged on adapter group %s, and so is network %s: a group has one untagged (native) VLAN; give one of them a vlan", show(n.Name), show(n.AdapterGroup), show(prev.Name))
		} else {
			v.errorf(path, "network %s has VLAN %d on adapter group %s, and so has network %s: every network of a group needs its own VLAN; pick another VLAN ID", show(n.Name), n.VLAN, show(n.AdapterGroup), show(prev.Name))
		}
	}
}

// checkNetworkMTU: a network's own MTU is in range and not above its
// group's.
func checkNetworkMTU(v *validator) {
	for i := range v.s.Networks {
		n := &v.s.Networks[i]
		if n.MTU == 0 {
			continue
		}
		path := netPath(n, i) + ".mtu"
		if err := IsMTU(n.MTU); err != nil {
			v.errorf(path, "%v", err)
			continue
		}
		g := v.groupByName[n.AdapterGroup]
		if g == nil {
			continue
		}
		gmtu := v.s.GroupMTU(g)
		if IsMTU(gmtu) != nil {
			continue // reported by checkGroupMTU or checkClusterMTU
		}
		if n.MTU > gmtu {
			v.errorf(path, "network %s has MTU %d, above the MTU %d of its adapter group %s (the bond and bridge cannot carry larger frames): lower the network's mtu to at most %d, or raise the group's mtu", show(n.Name), n.MTU, gmtu, show(g.Name), gmtu)
		}
	}
}

// checkNetworksOnInfrastructure: in production, a VM network on the
// infrastructure group is a warning: its VM traffic shares the links (and,
// untagged, the VLAN) of the management IPs, cluster communication and
// storage replication. Evaluation mode runs VMs there by design.
func checkNetworksOnInfrastructure(v *validator) {
	if v.s.Cluster.Evaluation {
		return
	}
	for i := range v.s.Networks {
		n := &v.s.Networks[i]
		g := v.groupByName[n.AdapterGroup]
		if g == nil || !g.Infrastructure {
			continue
		}
		path := netPath(n, i) + ".adapterGroup"
		if n.VLAN == 0 {
			v.warnf(path, "network %s is untagged on the infrastructure group %s, so its VMs share the management VLAN with the hypervisors' management IPs, cluster communication and storage replication: put VM networks on a VM group", show(n.Name), show(g.Name))
		} else {
			v.warnf(path, "network %s is on the infrastructure group %s, so its VM traffic shares the infrastructure adapters with the management network, cluster communication and storage replication: put VM networks on a VM group", show(n.Name), show(g.Name))
		}
	}
}
