package main

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	nettap "github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

func nicCommand() *cli.Command {
	return &cli.Command{
		Name:  "nic",
		Usage: "VM network interfaces managed by gallium-net: add, list, remove, sync, follow",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a NIC on a network to a domain (persistent, and live when running)",
				ArgsUsage: "DOMAIN",
				Description: `Allocates a MAC from the cluster ledger, unique across every hypervisor (or
claims --mac there), takes the NIC model from the VM's
hardware profile (recorded in the domain's gallium-net metadata; --profile
sets it; without one the cluster default), marks the NIC as gallium-net's in
the metadata and attaches it to the persistent definition and, when the
domain runs, live.

Example:
   gallium-net nic add vm1 --network prod --profile modern`,
				Flags: append([]cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), snapshotFlag(),
					&cli.StringFlag{Name: "network", Aliases: []string{"n"}, Required: true, Usage: "spec `NETWORK` of the NIC"},
					&cli.StringFlag{Name: "profile", Aliases: []string{"p"}, Usage: "set the VM's hardware `PROFILE` (its NIC model) first"},
					&cli.StringFlag{Name: "mac", Usage: "use this `MAC` instead of allocating one"},
				}, storeFlags()...),
				Action: nicAdd,
			},
			{
				Name:      "list",
				Usage:     "gallium-net NICs of one or every domain",
				ArgsUsage: "[DOMAIN]",
				Description: `Lists the NICs gallium-net manages: MAC, network, model, the VM's
profile, and for running domains the tap and its bridge.

Example:
   gallium-net nic list vm1 -o yaml`,
				Flags:  []cli.Flag{connectFlag(), outputFlag()},
				Action: nicList,
			},
			{
				Name:      "remove",
				Usage:     "remove a gallium-net NIC from a domain (persistent, and live when running)",
				ArgsUsage: "DOMAIN MAC",
				Description: `Detaches the NIC from the persistent definition and, when the domain runs,
live (the guest must acknowledge a live unplug), and drops it from the
domain's gallium-net metadata.

Example:
   gallium-net nic remove vm1 52:54:00:12:34:56`,
				Flags:  append([]cli.Flag{connectFlag(), snapshotFlag()}, storeFlags()...),
				Action: nicRemove,
			},
			{
				Name:      "sync",
				Usage:     "bring running domains' NICs in line after a network definition changed",
				ArgsUsage: "[DOMAIN | --all]",
				Description: `For every running domain managed by gallium-net (or the one named): moves a
NIC whose bridge changed (live device update) and reprograms its tap's
bridge, VLAN and MTU from the host snapshot that 'gallium-net network define'
writes. Reports each change; a model that differs from the VM's profile is
reported (it changes only at the next boot).

Example:
   gallium-net nic sync --all -o json`,
				Flags: []cli.Flag{specFlag(), connectFlag(), snapshotFlag(),
					&cli.BoolFlag{Name: "all", Usage: "every running domain (the default without DOMAIN)"},
					outputFlag()},
				Action: nicSync,
			},
			nicFollowCommand(),
		},
	}
}

func nicAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: gallium-net nic add DOMAIN --network NETWORK [--profile P] [--mac M]")
	}
	name, network := c.Args().First(), c.String("network")
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	if err := vmnet.SpecNetwork(s, network); err != nil {
		return err
	}
	hv, err := thisHypervisor(c, s)
	if err != nil {
		return err
	}
	if !slices.Contains(vmnet.NetworksOn(s, hv), network) {
		fmt.Fprintf(c.App.ErrWriter, "warning: network %s is not on hypervisor %s; the domain will not start here\n", network, hv)
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A domain that does not exist is reported before the ledger is opened
	// (which may print a note about the store).
	if _, err := vmnet.LoadDomain(conn, name); err != nil {
		return err
	}
	snap, _ := snapshot.Read(snapshotPath(c))
	ledger, err := openNICLedger(c)
	if err != nil {
		return err
	}
	defer ledger.Close()
	added, err := vmnet.AddNIC(c.Context, conn, s, ledger, snap, vmnet.NewNIC{
		Domain: name, Network: network, Hypervisor: hv, Profile: c.String("profile"), MAC: c.String("mac")})
	if err != nil {
		return err
	}
	ledger.synced("MAC " + added.MAC + " of domain " + name)
	profileNote := ""
	if added.DefaultProfile {
		profileNote = fmt.Sprintf(" (the cluster default profile %s: the domain names none; set one with 'gallium-net vm profile %s PROFILE')", added.Profile.Name, name)
	}
	fmt.Fprintf(c.App.Writer, "added NIC %s on network %s to domain %s, model %s from profile %s%s\n", added.MAC, network, name, added.Profile.NICModel, added.Profile.Name, profileNote)
	if !added.Active {
		return nil
	}
	// Hot-plugged: program its tap now (the hook's waiter does it too).
	res, err := syncRunningNIC(conn, nettap.NewNetlink(), s, snapshotPath(c), name, added.MAC)
	if err != nil {
		return fmt.Errorf("NIC %s is attached, but its tap could not be programmed: %w; run 'gallium-net nic sync %s'", added.MAC, err, name)
	}
	fmt.Fprintf(c.App.Writer, "live: tap %s on %s\n", res.Tap, res.Bridge)
	return nil
}

type nicRow struct {
	Domain  string `json:"domain" yaml:"domain"`
	MAC     string `json:"mac" yaml:"mac"`
	Network string `json:"network" yaml:"network"`
	Model   string `json:"model" yaml:"model"`
	Profile string `json:"profile,omitempty" yaml:"profile,omitempty"`
	State   string `json:"state" yaml:"state"`
	Tap     string `json:"tap,omitempty" yaml:"tap,omitempty"`
	Bridge  string `json:"bridge,omitempty" yaml:"bridge,omitempty"`
}

func nicList(c *cli.Context) error {
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var doms []*vmnet.Domain
	if name := c.Args().First(); name != "" {
		d, err := vmnet.LoadDomain(conn, name)
		if err != nil {
			return err
		}
		doms = []*vmnet.Domain{d}
	} else if doms, err = vmnet.AllDomains(conn); err != nil {
		return err
	}
	rows := []nicRow{}
	for _, d := range doms {
		rows = append(rows, nicRows(d)...)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Domain < rows[j].Domain })
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "DOMAIN\tMAC\tNETWORK\tMODEL\tPROFILE\tSTATE\tTAP\tBRIDGE")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Domain, r.MAC, r.Network, orDash(r.Model), orDash(r.Profile), r.State, orDash(r.Tap), orDash(r.Bridge))
		}
	})
}

func nicRows(d *vmnet.Domain) []nicRow {
	cur := d.Current()
	if !cur.Managed {
		return nil
	}
	var rows []nicRow
	for _, n := range cur.ManagedNICs() {
		r := nicRow{Domain: d.Name, MAC: n.MAC, Network: cur.NetworkOf(n), Model: n.Model, Profile: cur.Meta.Profile, State: "off"}
		if d.Active {
			r.State, r.Tap, r.Bridge = "running", n.Target, n.Bridge
		}
		rows = append(rows, r)
	}
	for _, m := range cur.MissingNICs() {
		rows = append(rows, nicRow{Domain: d.Name, MAC: m.MAC, Network: m.Network, Profile: cur.Meta.Profile, State: "missing: in metadata, not in the domain"})
	}
	return rows
}

func nicRemove(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("usage: gallium-net nic remove DOMAIN MAC")
	}
	name := c.Args().Get(0)
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	mac, err := vmnet.RemoveNIC(conn, name, c.Args().Get(1))
	if err != nil {
		return err
	}
	// The MAC goes back to the cluster only once no definition holds it.
	if ledger, err := openNICLedger(c); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: NIC removed, but %v; its MAC stays reserved in the ledger\n", err)
	} else {
		if err := ledger.Release(c.Context, mac); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "warning: NIC removed, but releasing MAC %s from the ledger failed: %v\n", mac, err)
		} else {
			ledger.synced("the release of MAC " + mac)
		}
		ledger.Close()
	}
	fmt.Fprintf(c.App.Writer, "removed NIC %s from domain %s\n", mac, name)
	if vmnet.StillPlugged(conn, name, mac) {
		fmt.Fprintf(c.App.Writer, "the running guest has not released it yet (unplug requested; it goes when the guest acknowledges, or at the next shutdown)\n")
	}
	return nil
}

type syncRow struct {
	Domain  string   `json:"domain" yaml:"domain"`
	MAC     string   `json:"mac" yaml:"mac"`
	Network string   `json:"network" yaml:"network"`
	Tap     string   `json:"tap" yaml:"tap"`
	Changes []string `json:"changes" yaml:"changes"`
	Error   string   `json:"error,omitempty" yaml:"error,omitempty"`
}

func nicSync(c *cli.Context) error {
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var doms []*vmnet.Domain
	if name := c.Args().First(); name != "" {
		if c.Bool("all") {
			return errors.New("give a DOMAIN or --all, not both")
		}
		d, err := vmnet.LoadDomain(conn, name)
		if err != nil {
			return err
		}
		if !d.Active {
			return fmt.Errorf("domain %s is not running; its NICs are set up when it starts", name)
		}
		doms = []*vmnet.Domain{d}
	} else if doms, err = vmnet.AllDomains(conn); err != nil {
		return err
	}
	rows := []syncRow{}
	failed := 0
	tk := nettap.NewNetlink() // one netlink socket for every tap
	for _, d := range doms {
		if !d.Active || !d.Live.Managed {
			continue
		}
		for _, n := range d.Live.ManagedNICs() {
			row := syncRow{Domain: d.Name, MAC: n.MAC, Network: d.Live.NetworkOf(n), Changes: []string{}}
			res, err := syncRunningNIC(conn, tk, s, snapshotPath(c), d.Name, n.MAC)
			row.Tap, row.Changes = res.Tap, append(row.Changes, res.Changes...)
			if err != nil {
				row.Error = err.Error()
				failed++
			}
			rows = append(rows, row)
		}
	}
	if err := printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "DOMAIN\tMAC\tNETWORK\tTAP\tCHANGES")
		for _, r := range rows {
			ch := joinOr(r.Changes, "none (in line)")
			if r.Error != "" {
				ch = "ERROR: " + r.Error
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Domain, r.MAC, r.Network, orDash(r.Tap), ch)
		}
	}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d NICs could not be brought in line (see ERROR above)", failed)
	}
	return nil
}

// syncRunningNIC is vmnet.SyncNIC with this host's snapshot (read afresh:
// network define may have rewritten it) and netsetup's tap programming.
func syncRunningNIC(conn vmnet.Conn, tk nettap.Kernel, s *model.Spec, snapPath, name, mac string) (vmnet.Synced, error) {
	snap, err := snapshot.Read(snapPath)
	if err != nil {
		return vmnet.Synced{}, err
	}
	program := func(tap string, sn snapshot.Network) ([]string, error) {
		tr, err := nettap.Program(tk, nettap.Config{Tap: tap, Bridge: sn.Bridge, VLAN: sn.VLAN, MTU: sn.MTU})
		var ops []string
		for _, op := range tr.Ops {
			ops = append(ops, op.String())
		}
		return ops, err
	}
	return vmnet.SyncNIC(conn, program, s, snap, name, mac)
}
