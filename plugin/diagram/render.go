package diagram

import (
	"fmt"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// DOT renders the diagram as Graphviz DOT (`dot -Tsvg` draws it).
func DOT(s *model.Spec, opt Options) (string, error) {
	m, err := build(s, opt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n", "gallium-"+s.Cluster.Name)
	b.WriteString("  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fillcolor=white];\n  edge [arrowhead=none];\n")
	fmt.Fprintf(&b, "  label=%q; labelloc=t;\n", fmt.Sprintf("Gallium cluster %s: subnet %s, VIP %s", s.Cluster.Name, s.Cluster.Subnet, s.Cluster.VIP))
	for _, h := range m.hosts {
		fmt.Fprintf(&b, "  subgraph %q {\n", "cluster_"+id(h.name))
		if h.down {
			fmt.Fprintf(&b, "    label=%q; style=\"rounded,dashed\"; color=gray60; fontcolor=gray50;\n", h.title(s.Cluster.VIP, "  "))
		} else {
			fmt.Fprintf(&b, "    label=%q; style=rounded; color=gray40;\n", h.title(s.Cluster.VIP, "  "))
		}
		for _, n := range h.nics {
			fmt.Fprintf(&b, "    %s [label=%q, fillcolor=\"#fff3cd\"];\n", id(h.name, "nic", n.Domain, n.MAC), n.Domain+"\n"+n.MAC)
		}
		var ranks [4][]string // VM NICs, networks, groups, adapters
		for _, n := range h.nics {
			ranks[0] = append(ranks[0], id(h.name, "nic", n.Domain, n.MAC))
		}
		for _, g := range h.groups {
			if g.infra {
				ml := "management IP\n" + h.mgmt + "\nuntagged"
				if h.vip {
					ml += "\n+ VIP " + s.Cluster.VIP
				}
				fmt.Fprintf(&b, "    %s [label=%q, fillcolor=\"#f8d7da\"];\n", id(h.name, "mgmt"), ml)
				ranks[1] = append(ranks[1], id(h.name, "mgmt"))
			}
			for _, n := range g.networks {
				fmt.Fprintf(&b, "    %s [label=%q, fillcolor=\"#d1ecf1\"];\n", id(h.name, "net", n.name), n.name+"\n"+vlanLabel(n.vlan))
				ranks[1] = append(ranks[1], id(h.name, "net", n.name))
			}
			ranks[2] = append(ranks[2], id(h.name, "grp", g.name))
			label := g.name + "\nbond " + g.bond + " / bridge " + g.bridge
			if g.infra {
				label += "\ninfrastructure (management IP)"
			}
			fmt.Fprintf(&b, "    %s [label=%q, fillcolor=\"#d4edda\"];\n", id(h.name, "grp", g.name), label)
			for _, a := range g.adapters {
				style := `fillcolor="#e2e3e5"`
				switch {
				case a.noCarrier:
					style = `fillcolor="#f5c6cb", style="rounded,filled,dashed", color=red`
				case a.active:
					style = `fillcolor="#c3e6cb", penwidth=2`
				}
				fmt.Fprintf(&b, "    %s [label=%q, shape=box, %s];\n", id(h.name, "ad", a.name), strings.Join(a.lines(), "\n"), style)
				ranks[3] = append(ranks[3], id(h.name, "ad", a.name))
			}
		}
		// One row per layer, as in the product's architecture diagram.
		for _, r := range ranks {
			if len(r) > 0 {
				fmt.Fprintf(&b, "    { rank=same; %s; }\n", strings.Join(r, "; "))
			}
		}
		for _, e := range h.edges() {
			fmt.Fprintf(&b, "    %s -> %s;\n", e[0], e[1])
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// Mermaid renders the diagram as a Mermaid flowchart.
func Mermaid(s *model.Spec, opt Options) (string, error) {
	m, err := build(s, opt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("flowchart TB\n")
	q := func(parts ...string) string {
		// Mermaid labels are HTML-ish: quote them and use <br/> for lines.
		return `"` + strings.ReplaceAll(strings.Join(parts, "<br/>"), `"`, "#quot;") + `"`
	}
	for _, h := range m.hosts {
		fmt.Fprintf(&b, "  subgraph %s[%s]\n", id(h.name), q(h.title(s.Cluster.VIP, " ")))
		for _, n := range h.nics {
			fmt.Fprintf(&b, "    %s([%s])\n", id(h.name, "nic", n.Domain, n.MAC), q(n.Domain, n.MAC))
		}
		for _, g := range h.groups {
			if g.infra {
				ml := []string{"management IP", h.mgmt, "untagged"}
				if h.vip {
					ml = append(ml, "+ VIP "+s.Cluster.VIP)
				}
				fmt.Fprintf(&b, "    %s{{%s}}\n", id(h.name, "mgmt"), q(ml...))
			}
			for _, n := range g.networks {
				fmt.Fprintf(&b, "    %s{{%s}}\n", id(h.name, "net", n.name), q(n.name, vlanLabel(n.vlan)))
			}
			lines := []string{g.name, "bond " + g.bond + " / bridge " + g.bridge}
			if g.infra {
				lines = append(lines, "infrastructure (management IP)")
			}
			fmt.Fprintf(&b, "    %s[%s]\n", id(h.name, "grp", g.name), q(lines...))
			for _, a := range g.adapters {
				fmt.Fprintf(&b, "    %s[(%s)]\n", id(h.name, "ad", a.name), q(a.lines()...))
			}
		}
		for _, e := range h.edges() {
			fmt.Fprintf(&b, "    %s --- %s\n", e[0], e[1])
		}
		b.WriteString("  end\n")
	}
	return b.String(), nil
}
