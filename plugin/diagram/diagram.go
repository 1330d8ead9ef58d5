// Package diagram draws a cluster spec's four layers as a picture, the way
// the product's architecture diagram does: VM NICs -> networks -> adapter
// groups (bond + bridge) -> adapters, one box per hypervisor. It renders
// Graphviz DOT and Mermaid text; it is pure and does no I/O.
package diagram

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// NIC is a VM network interface to draw on a hypervisor.
type NIC struct {
	Hypervisor string
	Domain     string
	MAC        string
	Network    string
}

// Options selects what to draw.
type Options struct {
	// Hypervisor limits the picture to one hypervisor; "" draws them all.
	Hypervisor string
	// NICs are VM NICs to draw (from the ledger or this host's snapshot).
	NICs []NIC
	// Live is what hypervisors report at run time, by hypervisor name,
	// drawn over the spec: active and failed adapters, the VIP holder, a
	// hypervisor that is down. Hypervisors without an entry are drawn from
	// the spec alone.
	Live map[string]HostLive
}

// HostLive is one hypervisor's run-time state for the picture.
type HostLive struct {
	// Down: the hypervisor does not answer (powered off, unreachable).
	Down bool
	// ActiveAdapters carry their bond's traffic now.
	ActiveAdapters []string
	// NoCarrier are adapters without a link (cable pulled, switch port down).
	NoCarrier []string
	// HoldsVIP: the cluster VIP is on this hypervisor.
	HoldsVIP bool
}

// picture is the diagram before it is written in either language.
type picture struct {
	hosts []host
}

type host struct {
	name, mgmt string
	groups     []group
	nics       []NIC
	down, vip  bool
}

type group struct {
	name, bond, bridge string
	infra              bool
	adapters           []adapter
	networks           []network
}

type adapter struct {
	name              string
	speed             int
	primary           bool
	active, noCarrier bool
}

type network struct {
	name string
	vlan int
}

func build(s *model.Spec, opt Options) (*picture, error) {
	m := &picture{}
	if opt.Hypervisor != "" && s.Hypervisor(opt.Hypervisor) == nil {
		return nil, fmt.Errorf("diagram: hypervisor %q is not in the spec; use one of: %s", opt.Hypervisor, strings.Join(s.HypervisorNames(), ", "))
	}
	for _, hv := range s.Hypervisors {
		if opt.Hypervisor != "" && hv.Name != opt.Hypervisor {
			continue
		}
		h := host{name: hv.Name, mgmt: hv.ManagementIP}
		live, haveLive := opt.Live[hv.Name]
		h.down, h.vip = live.Down, live.HoldsVIP
		for _, g := range s.GroupsOn(hv.Name) {
			gr := group{name: g.Name, bond: model.BondName(g.Name), bridge: model.BridgeName(g.Name), infra: g.Infrastructure}
			primary := g.PrimaryOn(hv.Name)
			for _, a := range g.Adapters[hv.Name] {
				ad := adapter{name: a, primary: a == primary}
				if haveLive {
					ad.active = contains(live.ActiveAdapters, a)
					ad.noCarrier = contains(live.NoCarrier, a)
				}
				if pa := hv.Adapter(a); pa != nil {
					ad.speed = pa.SpeedMbps
				}
				gr.adapters = append(gr.adapters, ad)
			}
			for _, n := range s.NetworksOn(g.Name) {
				gr.networks = append(gr.networks, network{name: n.Name, vlan: n.VLAN})
			}
			h.groups = append(h.groups, gr)
		}
		for _, n := range opt.NICs {
			if n.Hypervisor == hv.Name {
				h.nics = append(h.nics, n)
			}
		}
		sort.Slice(h.nics, func(i, j int) bool {
			if h.nics[i].Domain != h.nics[j].Domain {
				return h.nics[i].Domain < h.nics[j].Domain
			}
			return h.nics[i].MAC < h.nics[j].MAC
		})
		m.hosts = append(m.hosts, h)
	}
	return m, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// title is a hypervisor box's title, with its run-time state; sep goes
// between the parts.
func (h host) title(vip, sep string) string {
	t := h.name + sep + "(" + h.mgmt + ")"
	if h.vip {
		t += sep + "holds VIP " + vip
	}
	if h.down {
		t += sep + "DOWN"
	}
	return t
}

// edges are a hypervisor's links between layers, top to bottom, as node
// ids: VM NIC -> network, management IP and networks -> group, group ->
// adapters. Both renderers draw the same ones.
func (h host) edges() [][2]string {
	var out [][2]string
	for _, n := range h.nics {
		out = append(out, [2]string{id(h.name, "nic", n.Domain, n.MAC), id(h.name, "net", n.Network)})
	}
	for _, g := range h.groups {
		grp := id(h.name, "grp", g.name)
		if g.infra {
			out = append(out, [2]string{id(h.name, "mgmt"), grp})
		}
		for _, n := range g.networks {
			out = append(out, [2]string{id(h.name, "net", n.name), grp})
		}
		for _, a := range g.adapters {
			out = append(out, [2]string{grp, id(h.name, "ad", a.name)})
		}
	}
	return out
}

// lines are an adapter's label lines.
func (a adapter) lines() []string {
	l := []string{a.name, speedLabel(a.speed)}
	if a.primary {
		l = append(l, "primary")
	}
	if a.active {
		l = append(l, "active")
	}
	if a.noCarrier {
		l = append(l, "NO CARRIER")
	}
	return l
}

func vlanLabel(v int) string {
	if v == 0 {
		return "untagged"
	}
	return fmt.Sprintf("VLAN %d", v)
}

func speedLabel(mbps int) string {
	switch {
	case mbps == 0:
		return "speed from host"
	case mbps%1000 == 0:
		return fmt.Sprintf("%d Gbps", mbps/1000)
	default:
		return fmt.Sprintf("%d Mbps", mbps)
	}
}

// id makes a node identifier that both DOT and Mermaid accept.
func id(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString("__")
		}
		for _, r := range p {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				fmt.Fprintf(&b, "_%x_", r)
			}
		}
	}
	return b.String()
}
