package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// The xml commands print libvirt XML from the spec without touching libvirt,
// for review or for `virsh net-define` / `virsh attach-device` by hand.
func xmlCommand() *cli.Command {
	return &cli.Command{
		Name:  "xml",
		Usage: "print libvirt network or domain <interface> XML generated from the spec",
		Subcommands: []*cli.Command{
			{
				Name:      "network",
				Usage:     "the libvirt network XML of network NAME on a hypervisor",
				ArgsUsage: "NAME",
				Description: `Example:
   gallium-net xml network prod --hypervisor hv1 -f examples/cluster.yaml > prod.xml
   virsh net-define prod.xml`,
				Flags: []cli.Flag{specFlag(), hypervisorFlag(),
					&cli.BoolFlag{Name: "native-vlan", Usage: "put the VLAN in the network XML (libvirt >= 11.0; older libvirt needs the gallium-net hook instead)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("xml network: name one network, e.g. 'gallium-net xml network prod --hypervisor hv1'")
					}
					s, hv, err := loadSpecHere(c)
					if err != nil {
						return err
					}
					out, err := domains.NetworkXML(s, c.Args().First(), hv, domains.NetworkOptions{NativeVLAN: c.Bool("native-vlan")})
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(c.App.Writer, out)
					return err
				},
			},
			{
				Name:  "interface",
				Usage: "a VM NIC's domain <interface> XML",
				Description: `The NIC model comes from the hardware profile (default: the cluster's default
profile). Without --mac a MAC is drawn from the cluster's MAC prefix; it is
not recorded anywhere, so use 'gallium-net nic add' for real VMs.

Example:
   gallium-net xml interface --network prod --profile legacy -f examples/cluster.yaml`,
				Flags: []cli.Flag{specFlag(),
					&cli.StringFlag{Name: "network", Required: true, Usage: "network `NAME` from the spec"},
					&cli.StringFlag{Name: "profile", Usage: "hardware profile `NAME` (default: the cluster's defaultProfile)"},
					&cli.StringFlag{Name: "mac", Usage: "use this `MAC` instead of drawing one"},
				},
				Action: func(c *cli.Context) error {
					s, err := loadSpec(c)
					if err != nil {
						return err
					}
					mac := c.String("mac")
					if mac == "" {
						// The same allocator as nic add's, with nothing in use.
						if mac, err = vmnet.AllocateMAC(s.Cluster.MACPrefix, nil, randReader); err != nil {
							return err
						}
					}
					out, err := domains.InterfaceXML(s, c.String("network"), c.String("profile"), mac)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(c.App.Writer, out)
					return err
				},
			},
		},
	}
}
