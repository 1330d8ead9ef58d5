package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin/diagram"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

func diagramCommand() *cli.Command {
	return &cli.Command{
		Name:  "diagram",
		Usage: "draw the cluster's network layers (VM NICs, networks, adapter groups, adapters)",
		Description: `Prints the four layers of the spec, one box per hypervisor, as Graphviz DOT or
Mermaid text. VM NICs are drawn from this host's snapshot when --nics is set.
--live draws this hypervisor as it is now (read through netlink): the active
adapter of each bond, adapters without carrier, and the VIP when it is here.

Examples:
   gallium-net diagram -f examples/cluster.yaml --hypervisor hv1 | dot -Tsvg > hv1.svg
   gallium-net diagram -f examples/cluster.yaml --format mermaid
   gallium-net diagram --live --nics /var/lib/gallium-net/host-snapshot.json | dot -Tsvg > now.svg`,
		Flags: []cli.Flag{
			specFlag(),
			&cli.StringFlag{Name: "hypervisor", Usage: "draw only hypervisor `NAME`"},
			&cli.StringFlag{Name: "format", Value: "dot", Usage: "dot or mermaid"},
			&cli.StringFlag{Name: "nics", Usage: "draw the VM NICs of this host snapshot `FILE` (e.g. " + snapshot.DefaultPath + ")"},
			&cli.BoolFlag{Name: "live", Usage: "draw this hypervisor's state now over the spec: active adapters, adapters without carrier, the VIP when held here"},
		},
		Action: func(c *cli.Context) error {
			s, err := loadSpec(c)
			if err != nil {
				return err
			}
			opt := diagram.Options{Hypervisor: c.String("hypervisor")}
			if path := c.String("nics"); path != "" {
				snap, err := snapshot.Read(path)
				if err != nil {
					return err
				}
				for _, n := range snap.NICs {
					dom := n.Domain
					if dom == "" {
						dom = n.DomainUUID
					}
					opt.NICs = append(opt.NICs, diagram.NIC{Hypervisor: snap.Hypervisor, Domain: dom, MAC: n.MAC, Network: n.Network})
				}
			}
			if c.Bool("live") {
				hs, err := loadHostSetup(c)
				if err != nil {
					return err
				}
				obs, err := netsetup.NewNetlink().Observe()
				if err != nil {
					return fmt.Errorf("--live: read this host's links: %w", err)
				}
				st := netsetup.Status(hs.desired, obs, netsetup.SysfsReader(netsetup.DefaultSysfs))
				opt.Live = map[string]diagram.HostLive{hs.hv: liveOf(st, obs, hs.desired.VIP)}
			}
			var out string
			switch c.String("format") {
			case "dot":
				out, err = diagram.DOT(s, opt)
			case "mermaid":
				out, err = diagram.Mermaid(s, opt)
			default:
				return fmt.Errorf("--format %s: unknown; use dot or mermaid", c.String("format"))
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, out)
			return err
		},
	}
}

// liveOf is what the diagram draws of a host's state: each bond's active
// adapter, the adapters without carrier, and whether any link has the VIP.
func liveOf(st *netsetup.HostStatus, obs *netsetup.Snapshot, vip string) diagram.HostLive {
	var live diagram.HostLive
	for _, g := range st.Groups {
		if g.ActiveAdapter != "" {
			live.ActiveAdapters = append(live.ActiveAdapters, g.ActiveAdapter)
		}
		for _, a := range g.Adapters {
			if a.Exists && !a.Carrier {
				live.NoCarrier = append(live.NoCarrier, a.Name)
			}
		}
	}
	for _, l := range obs.Links {
		if netsetup.HasIP(l.Addrs, vip) {
			live.HoldsVIP = true
		}
	}
	return live
}
