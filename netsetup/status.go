package netsetup

// AdapterStatus is one adapter of a group as the host has it.
type AdapterStatus struct {
	Name string `json:"name" yaml:"name"`
	// Master is the link the adapter is enslaved to ("" when none).
	Master    string `json:"master,omitempty" yaml:"master,omitempty"`
	Active    bool   `json:"active" yaml:"active"`
	Carrier   bool   `json:"carrier" yaml:"carrier"`
	OperState string `json:"operState,omitempty" yaml:"operState,omitempty"`
	SpeedMbps int    `json:"speedMbps" yaml:"speedMbps"`
	Exists    bool   `json:"exists" yaml:"exists"`
}

// GroupStatus is one adapter group's bond and bridge as the host has them.
type GroupStatus struct {
	Group          string          `json:"group" yaml:"group"`
	Infrastructure bool            `json:"infrastructure,omitempty" yaml:"infrastructure,omitempty"`
	Bond           string          `json:"bond" yaml:"bond"`
	BondPresent    bool            `json:"bondPresent" yaml:"bondPresent"`
	BondUp         bool            `json:"bondUp" yaml:"bondUp"`
	BondConfig     *BondConfig     `json:"bondConfig,omitempty" yaml:"bondConfig,omitempty"`
	ActiveAdapter  string          `json:"activeAdapter,omitempty" yaml:"activeAdapter,omitempty"`
	Adapters       []AdapterStatus `json:"adapters" yaml:"adapters"`
	Bridge         string          `json:"bridge" yaml:"bridge"`
	BridgePresent  bool            `json:"bridgePresent" yaml:"bridgePresent"`
	BridgeUp       bool            `json:"bridgeUp" yaml:"bridgeUp"`
	VLANFiltering  bool            `json:"vlanFiltering" yaml:"vlanFiltering"`
	// VLANs are the VLANs of the bond's bridge port (the uplink).
	VLANs []VLAN   `json:"vlans" yaml:"vlans"`
	Addrs []string `json:"addrs,omitempty" yaml:"addrs,omitempty"`
}

// HostStatus is the status of every group of a hypervisor.
type HostStatus struct {
	Hypervisor   string        `json:"hypervisor" yaml:"hypervisor"`
	Groups       []GroupStatus `json:"groups" yaml:"groups"`
	DefaultRoute *Route        `json:"defaultRoute,omitempty" yaml:"defaultRoute,omitempty"`
	// Converged is true when a plan would be empty.
	Converged bool `json:"converged" yaml:"converged"`
	// Pending lists the plan's steps when not converged.
	Pending []string `json:"pending,omitempty" yaml:"pending,omitempty"`
	// Blocked says why apply cannot converge the host (the kernel lacks a
	// feature, an adapter is missing or taken), "" when it can.
	Blocked string `json:"blocked,omitempty" yaml:"blocked,omitempty"`
}

// Status combines the desired state, the observed one and adapter facts.
func Status(desired *HostState, obs *Snapshot, facts func(string) AdapterFacts) *HostStatus {
	st := &HostStatus{Hypervisor: desired.Hypervisor, DefaultRoute: obs.DefaultRoute}
	for _, g := range desired.Groups {
		gs := GroupStatus{Group: g.Name, Infrastructure: g.Infrastructure, Bond: g.Bond, Bridge: g.Bridge}
		if b := obs.Link(g.Bond); b != nil {
			gs.BondPresent, gs.BondUp, gs.BondConfig, gs.ActiveAdapter = true, b.Up, b.Bond, b.ActiveSlave
			gs.VLANs = b.VLANs
		}
		if br := obs.Link(g.Bridge); br != nil {
			gs.BridgePresent, gs.BridgeUp, gs.VLANFiltering, gs.Addrs = true, br.Up, br.VLANFiltering, br.Addrs
		}
		for _, a := range g.Adapters {
			f := facts(a)
			as := AdapterStatus{Name: a, Exists: f.Exists, Carrier: f.Carrier, OperState: f.OperState, SpeedMbps: f.SpeedMbps, Active: a == gs.ActiveAdapter && a != ""}
			if l := obs.Link(a); l != nil {
				as.Master = l.Master
				as.Exists = true
				if !f.Exists {
					// No sysfs (a namespace): netlink still knows.
					as.Carrier, as.OperState = l.Carrier, l.OperState
				}
			}
			gs.Adapters = append(gs.Adapters, as)
		}
		st.Groups = append(st.Groups, gs)
	}
	if p, err := Preview(desired, obs); err == nil {
		st.Converged = p.Empty() && p.Refused == ""
		st.Pending = p.Lines()
		st.Blocked = p.Refused
	} else {
		st.Blocked = err.Error()
	}
	return st
}
