package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "libvirt networks of this hypervisor: define from the spec, list",
		Subcommands: []*cli.Command{
			{
				Name:      "define",
				Usage:     "define, start and autostart this host's libvirt networks from the spec (idempotent)",
				ArgsUsage: "[NAME | --all]",
				Description: `Defines each network of the spec that is on an adapter group of this
hypervisor as a libvirt network (forward mode bridge onto the group's
bridge), starts it and marks it autostart. A gallium-net network whose
definition drifted from the spec is redefined; a network gallium-net does not
own (any other bridge) is never touched. It also writes the host snapshot
that the libvirt hook reads. With libvirt >= 11.0 a tagged network carries
its VLAN natively; older libvirt gets it from the hook.

Example:
   gallium-net network define --all -f /etc/gallium-net/cluster.yaml`,
				Flags: []cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), snapshotFlag(),
					&cli.BoolFlag{Name: "all", Usage: "every network of this hypervisor (the default without NAME)"},
					outputFlag()},
				Action: networkDefine,
			},
			{
				Name:  "list",
				Usage: "libvirt networks with ownership, state and drift from the spec",
				Description: `Lists every libvirt network of this host: whether gallium-net owns it,
whether it runs and autostarts, and whether it is in line with the spec
(missing, drifted, not in the spec).

Example:
   gallium-net network list -o json`,
				Flags:  []cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), outputFlag()},
				Action: networkList,
			},
		},
	}
}

func networkDefine(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	if c.Args().First() != "" && c.Bool("all") {
		return errors.New("give a network NAME or --all, not both")
	}
	names, err := vmnet.NetworksToDefine(s, hv, c.Args().First())
	if err != nil {
		return err
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	opt, ver, err := vmnet.NetworkOptions(conn)
	if err != nil {
		return err
	}
	results, defineErr := vmnet.DefineNetworks(conn, s, hv, names, opt)
	// The snapshot covers every network of this host, whichever were named,
	// and keeps the NIC records it had (the cluster ledger owns those).
	var nics []snapshot.NIC
	if old, err := snapshot.Read(snapshotPath(c)); err == nil {
		nics = old.NICs
	}
	snap, err := snapshot.Build(s, hv, nics, 0, time.Now())
	if err != nil {
		return err
	}
	if err := snapshot.Write(snapshotPath(c), snap); err != nil {
		return fmt.Errorf("write the host snapshot for the hook: %w", err)
	}
	if err := printOut(c, results, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NETWORK\tACTION\tBRIDGE\tVLAN\tDETAILS")
		for _, r := range results {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Action, r.Bridge, vlanText(r.VLAN), joinOr(r.Details, "-"))
		}
	}); err != nil {
		return err
	}
	if !opt.NativeVLAN {
		for _, r := range results {
			if r.VLAN != 0 {
				fmt.Fprintf(c.App.ErrWriter, "note: libvirt %d.%d cannot put VLANs on taps of a Linux bridge (11.0 can); the gallium-net hook does it: check 'gallium-net hook status'\n", ver/1000000, ver/1000%1000)
				break
			}
		}
	}
	return defineErr
}

func networkList(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	opt, _, err := vmnet.NetworkOptions(conn)
	if err != nil {
		return err
	}
	rows, err := vmnet.ListNetworks(conn, s, hv, opt)
	if err != nil {
		return err
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tOWNER\tACTIVE\tAUTOSTART\tBRIDGE\tVLAN\tSPEC")
		for _, r := range rows {
			owner := "other"
			if r.Owned {
				owner = "gallium-net"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, owner, yesNo(r.Active), yesNo(r.Autostart), orDash(r.Bridge), vlanText(r.VLAN), r.Spec)
		}
	})
}

func vlanText(v int) string {
	if v == 0 {
		return "untagged"
	}
	return fmt.Sprint(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOr(ss []string, empty string) string {
	if len(ss) == 0 {
		return empty
	}
	out := ss[0]
	for _, s := range ss[1:] {
		out += "; " + s
	}
	return out
}
