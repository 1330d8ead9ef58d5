package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"libvirt.org/go/libvirt"

	"github.com/gallium/gallium-net/domains"
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
	_, d, done, err := openDomain(c, name)
	if err != nil {
		return err
	}
	defer done()
	meta := d.metadata()
	w := c.App.Writer
	if want == "" {
		prof, err := domains.ResolveProfile(s, meta.Profile)
		if err != nil {
			return err
		}
		if meta.Profile == "" {
			fmt.Fprintf(w, "domain %s: no hardware profile set: the cluster default %s (NIC model %s)\n", name, prof.Name, prof.NICModel)
		} else {
			fmt.Fprintf(w, "domain %s: hardware profile %s (NIC model %s)\n", name, prof.Name, prof.NICModel)
		}
		for _, n := range d.config.ManagedNICs() {
			note := ""
			if n.Model != prof.NICModel {
				note = fmt.Sprintf("  (differs from the profile: 'gallium-net vm profile %s %s --update-nics')", name, prof.Name)
			}
			fmt.Fprintf(w, "  NIC %s on %s: model %s%s\n", n.MAC, d.config.NetworkOf(n), orDash(n.Model), note)
		}
		return nil
	}
	prof, err := domains.ResolveProfile(s, want)
	if err != nil {
		return err
	}
	meta.Profile = prof.Name
	if err := d.setMetadata(meta); err != nil {
		return err
	}
	fmt.Fprintf(w, "domain %s: hardware profile set to %s (NIC model %s)\n", name, prof.Name, prof.NICModel)
	var stale []domains.NIC
	for _, n := range d.config.ManagedNICs() {
		if n.Model != prof.NICModel {
			stale = append(stale, n)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	if !c.Bool("update-nics") {
		fmt.Fprintf(w, "%d existing NICs have another model; change them with 'gallium-net vm profile %s %s --update-nics'\n", len(stale), name, prof.Name)
		return nil
	}
	for _, n := range stale {
		x, err := domains.InterfaceWithModel(d.configXML, n.MAC, prof.NICModel)
		if err != nil {
			return fmt.Errorf("domain %s: %w", name, err)
		}
		if err := d.dom.UpdateDeviceFlags(x, libvirt.DOMAIN_DEVICE_MODIFY_CONFIG); err != nil {
			return fmt.Errorf("domain %s: NIC %s: set model %s: %w", name, n.MAC, prof.NICModel, err)
		}
		when := ""
		if d.active {
			when = " (at the next boot)"
		}
		fmt.Fprintf(w, "  NIC %s: model %s -> %s%s\n", n.MAC, orDash(n.Model), prof.NICModel, when)
	}
	return nil
}
