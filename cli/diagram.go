package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin"
	"github.com/gallium/gallium-net/plugin/diagram"
)

func diagramCommand() *cli.Command {
	return &cli.Command{
		Name:  "diagram",
		Usage: "draw the cluster's network layers (VM NICs, networks, adapter groups, adapters)",
		Description: `Prints the four layers of the spec, one box per hypervisor, as Graphviz DOT or
Mermaid text. VM NICs are drawn from this host's snapshot when --nics is set.

Examples:
   gallium-net diagram -f examples/cluster.yaml --hypervisor hv1 | dot -Tsvg > hv1.svg
   gallium-net diagram -f examples/cluster.yaml --format mermaid`,
		Flags: []cli.Flag{
			specFlag(),
			&cli.StringFlag{Name: "hypervisor", Usage: "draw only hypervisor `NAME`"},
			&cli.StringFlag{Name: "format", Value: "dot", Usage: "dot or mermaid"},
			&cli.StringFlag{Name: "nics", Usage: "draw the VM NICs of this host snapshot `FILE` (e.g. " + plugin.DefaultSnapshotPath + ")"},
		},
		Action: func(c *cli.Context) error {
			s, err := loadSpec(c)
			if err != nil {
				return err
			}
			opt := diagram.Options{Hypervisor: c.String("hypervisor")}
			if path := c.String("nics"); path != "" {
				snap, err := plugin.ReadSnapshot(path)
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
