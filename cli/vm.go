package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/vmnet"
)

func vmCommand() *cli.Command {
	return &cli.Command{
		Name:  "vm",
		Usage: "gallium-net settings of a VM (domain)",
		Subcommands: []*cli.Command{
			{
				Name:      "profile",
				Usage:     "show or set a VM's hardware profile (its NICs' model)",
				ArgsUsage: "DOMAIN [PROFILE]",
				Description: `Without PROFILE, shows the VM's hardware profile and its NICs' models.
With PROFILE, records it in the domain's gallium-net metadata; new NICs get
its model. Existing NICs keep theirs unless --update-nics is given, which
changes their model in the persistent definition (it takes effect at the
next boot: a running NIC's model cannot change).

Example:
   gallium-net vm profile vm1 legacy --update-nics`,
				Flags: []cli.Flag{specFlag(), connectFlag(),
					&cli.BoolFlag{Name: "update-nics", Usage: "also change the model of the VM's existing gallium-net NICs"}},
				Action: vmProfile,
			},
			vmMigrateCheckCommand(),
		},
	}
}

func vmProfile(c *cli.Context) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return errors.New("usage: gallium-net vm profile DOMAIN [PROFILE] [--update-nics]")
	}
	name, want := c.Args().Get(0), c.Args().Get(1)
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := c.App.Writer
	if want == "" {
		p, err := vmnet.ShowProfile(conn, s, name)
		if err != nil {
			return err
		}
		if p.Set == "" {
			fmt.Fprintf(w, "domain %s: no hardware profile set: the cluster default %s (NIC model %s)\n", name, p.Profile.Name, p.Profile.NICModel)
		} else {
			fmt.Fprintf(w, "domain %s: hardware profile %s (NIC model %s)\n", name, p.Profile.Name, p.Profile.NICModel)
		}
		for _, n := range p.NICs {
			note := ""
			if n.Stale {
				note = fmt.Sprintf("  (differs from the profile: 'gallium-net vm profile %s %s --update-nics')", name, p.Profile.Name)
			}
			fmt.Fprintf(w, "  NIC %s on %s: model %s%s\n", n.MAC, n.Network, orDash(n.Model), note)
		}
		return nil
	}
	ch, err := vmnet.SetProfile(conn, s, name, want, c.Bool("update-nics"))
	if ch == nil {
		return err
	}
	prof := ch.Profile.Profile
	fmt.Fprintf(w, "domain %s: hardware profile set to %s (NIC model %s)\n", name, prof.Name, prof.NICModel)
	if !c.Bool("update-nics") {
		stale := 0
		for _, n := range ch.NICs {
			if n.Stale {
				stale++
			}
		}
		if stale > 0 {
			fmt.Fprintf(w, "%d existing NICs have another model; change them with 'gallium-net vm profile %s %s --update-nics'\n", stale, name, prof.Name)
		}
		return err
	}
	when := ""
	if ch.Active {
		when = " (at the next boot)"
	}
	for _, n := range ch.Updated {
		fmt.Fprintf(w, "  NIC %s: model %s -> %s%s\n", n.MAC, orDash(n.Model), prof.NICModel, when)
	}
	return err
}
