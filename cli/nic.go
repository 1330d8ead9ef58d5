package main

import (
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"libvirt.org/go/libvirt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin"
	"github.com/gallium/gallium-net/plugin/store"
)

func nicCommand() *cli.Command {
	return &cli.Command{
		Name:  "nic",
		Usage: "VM network interfaces managed by gallium-net: add, list, remove, sync",
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
	if s.Network(network) == nil {
		return fmt.Errorf("network %s is not in the cluster spec; see 'gallium-net list networks'", network)
	}
	hv, err := thisHypervisor(c, s)
	if err != nil {
		return err
	}
	if !contains(networksOn(s, hv), network) {
		fmt.Fprintf(c.App.ErrWriter, "warning: network %s is not on hypervisor %s; the domain will not start here\n", network, hv)
	}
	conn, err := openLibvirt(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	doms, err := allDomains(conn)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range doms {
			d.free()
		}
	}()
	var d *domainHandle
	for _, x := range doms {
		if x.name == name {
			d = x
		}
	}
	if d == nil {
		return fmt.Errorf("domain %s does not exist on this host; see 'virsh list --all'", name)
	}
	snap, _ := plugin.ReadSnapshot(snapshotPath(c))
	ledger, err := openNICLedger(c)
	if err != nil {
		return err
	}
	defer ledger.Close()
	meta := d.metadata()
	profileNote := ""
	if p := c.String("profile"); p != "" {
		if _, err := domains.ResolveProfile(s, p); err != nil {
			return err
		}
		meta.Profile = p
	}
	prof, err := domains.ResolveProfile(s, meta.Profile)
	if err != nil {
		return fmt.Errorf("domain %s: %w; set another with 'gallium-net vm profile %s PROFILE'", name, err, name)
	}
	if meta.Profile == "" {
		profileNote = fmt.Sprintf(" (the cluster default profile %s: the domain names none; set one with 'gallium-net vm profile %s PROFILE')", prof.Name, name)
	}
	mac, release, err := ledger.newMAC(s, c.String("mac"), usedMACs(doms, snap), store.NIC{
		DomainUUID: d.current().UUID, Domain: name, Network: network, Model: prof.NICModel, Hypervisor: hv})
	if err != nil {
		return err
	}
	ifaceXML, err := domains.InterfaceXML(s, network, meta.Profile, mac)
	if err != nil {
		release()
		return err
	}
	if err := meta.SetNIC(mac, network); err != nil {
		release()
		return err
	}
	// Metadata first: a domain that starts in between must already know the
	// NIC is gallium-net's, or its tap would not be programmed.
	old := d.metadata()
	if err := d.setMetadata(meta); err != nil {
		release()
		return err
	}
	if err := d.dom.AttachDeviceFlags(ifaceXML, d.deviceFlags()); err != nil {
		if rbErr := d.setMetadata(old); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("and restoring the metadata failed: %w", rbErr))
		}
		release()
		return fmt.Errorf("domain %s: attach NIC %s on network %s: %w", name, mac, network, err)
	}
	ledger.synced("MAC " + mac + " of domain " + name)
	fmt.Fprintf(c.App.Writer, "added NIC %s on network %s to domain %s, model %s from profile %s%s\n", mac, network, name, prof.NICModel, prof.Name, profileNote)
	if !d.active {
		return nil
	}
	// Hot-plugged: program its tap now (the hook's waiter does it too).
	res, err := syncRunningNIC(conn, netsetup.NewTapNetlink(), s, snapshotPath(c), name, mac)
	if err != nil {
		return fmt.Errorf("NIC %s is attached, but its tap could not be programmed: %w; run 'gallium-net nic sync %s'", mac, err, name)
	}
	fmt.Fprintf(c.App.Writer, "live: tap %s on %s\n", res.tap, res.bridge)
	return nil
}

// newNICMAC is the MAC of a new NIC: the operator's, checked, or allocated.
func newNICMAC(s *plugin.Spec, want string, used map[string]bool) (string, error) {
	if want != "" {
		return checkMAC(want, used)
	}
	return allocateMAC(s.Cluster.MACPrefix, used, randReader)
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
	conn, err := openLibvirt(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var doms []*domainHandle
	if name := c.Args().First(); name != "" {
		d, err := lookupDomain(conn, name)
		if err != nil {
			return err
		}
		doms = []*domainHandle{d}
	} else if doms, err = allDomains(conn); err != nil {
		return err
	}
	rows := []nicRow{}
	for _, d := range doms {
		rows = append(rows, nicRows(d)...)
		d.free()
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Domain < rows[j].Domain })
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "DOMAIN\tMAC\tNETWORK\tMODEL\tPROFILE\tSTATE\tTAP\tBRIDGE")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Domain, r.MAC, r.Network, orDash(r.Model), orDash(r.Profile), r.State, orDash(r.Tap), orDash(r.Bridge))
		}
	})
}

func nicRows(d *domainHandle) []nicRow {
	cur := d.current()
	if !cur.Managed {
		return nil
	}
	var rows []nicRow
	for _, n := range cur.ManagedNICs() {
		r := nicRow{Domain: d.name, MAC: n.MAC, Network: cur.NetworkOf(n), Model: n.Model, Profile: cur.Meta.Profile, State: "off"}
		if d.active {
			r.State, r.Tap, r.Bridge = "running", n.Target, n.Bridge
		}
		rows = append(rows, r)
	}
	for _, m := range cur.MissingNICs() {
		rows = append(rows, nicRow{Domain: d.name, MAC: m.MAC, Network: m.Network, Profile: cur.Meta.Profile, State: "missing: in metadata, not in the domain"})
	}
	return rows
}

func nicRemove(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("usage: gallium-net nic remove DOMAIN MAC")
	}
	name := c.Args().Get(0)
	mac, err := domains.NormalizeMAC(c.Args().Get(1))
	if err != nil {
		return err
	}
	conn, d, done, err := openDomain(c, name)
	if err != nil {
		return err
	}
	defer done()
	meta := d.metadata()
	if meta.NIC(mac) == nil {
		return fmt.Errorf("domain %s has no gallium-net NIC %s (see 'gallium-net nic list %s'); remove other NICs with virsh detach-interface", name, mac, name)
	}
	// libvirt matches the device by MAC but wants a complete element.
	if d.current().NIC(mac) != nil || d.config.NIC(mac) != nil {
		flags := libvirt.DOMAIN_DEVICE_MODIFY_CONFIG
		src := d.configXML
		if d.config.NIC(mac) == nil {
			flags, src = libvirt.DOMAIN_DEVICE_MODIFY_LIVE, d.liveXML
		} else if d.active && d.live.NIC(mac) != nil {
			flags |= libvirt.DOMAIN_DEVICE_MODIFY_LIVE
		}
		x, err := domains.InterfaceElement(src, mac)
		if err != nil {
			return fmt.Errorf("domain %s: %w", name, err)
		}
		if err := d.dom.DetachDeviceFlags(x, flags); err != nil {
			return fmt.Errorf("domain %s: detach NIC %s: %w", name, mac, err)
		}
	}
	meta.RemoveNIC(mac)
	if err := d.setMetadata(meta); err != nil {
		return err
	}
	// The MAC goes back to the cluster only once no definition holds it.
	if ledger, err := openNICLedger(c); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: NIC removed, but %v; its MAC stays reserved in the ledger\n", err)
	} else {
		if err := ledger.release(mac); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "warning: NIC removed, but releasing MAC %s from the ledger failed: %v\n", mac, err)
		} else {
			ledger.synced("the release of MAC " + mac)
		}
		ledger.Close()
	}
	fmt.Fprintf(c.App.Writer, "removed NIC %s from domain %s\n", mac, name)
	if d.active {
		// Live unplug is a request the guest acknowledges (ACPI); libvirt
		// returns before that when the guest is slow or has no OS.
		if after, err := lookupDomain(conn, name); err == nil {
			if after.live != nil && after.live.NIC(mac) != nil {
				fmt.Fprintf(c.App.Writer, "the running guest has not released it yet (unplug requested; it goes when the guest acknowledges, or at the next shutdown)\n")
			}
			after.free()
		}
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
	conn, err := openLibvirt(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var doms []*domainHandle
	if name := c.Args().First(); name != "" {
		if c.Bool("all") {
			return errors.New("give a DOMAIN or --all, not both")
		}
		d, err := lookupDomain(conn, name)
		if err != nil {
			return err
		}
		if !d.active {
			d.free()
			return fmt.Errorf("domain %s is not running; its NICs are set up when it starts", name)
		}
		doms = []*domainHandle{d}
	} else if doms, err = allDomains(conn); err != nil {
		return err
	}
	rows := []syncRow{}
	failed := 0
	tk := netsetup.NewTapNetlink() // one netlink socket for every tap
	for _, d := range doms {
		if d.active && d.live.Managed {
			for _, n := range d.live.ManagedNICs() {
				row := syncRow{Domain: d.name, MAC: n.MAC, Network: d.live.NetworkOf(n), Changes: []string{}}
				res, err := syncRunningNIC(conn, tk, s, snapshotPath(c), d.name, n.MAC)
				row.Tap, row.Changes = res.tap, append(row.Changes, res.changes...)
				if err != nil {
					row.Error = err.Error()
					failed++
				}
				rows = append(rows, row)
			}
		}
		d.free()
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

type nicSyncResult struct {
	tap, bridge string
	changes     []string
}

// syncRunningNIC brings one NIC of a running domain in line: the live
// interface onto the network's current bridge (live device update) and its
// tap programmed from the host snapshot.
func syncRunningNIC(conn *libvirt.Connect, tk netsetup.TapKernel, s *plugin.Spec, snapPath, name, mac string) (nicSyncResult, error) {
	var res nicSyncResult
	snap, err := plugin.ReadSnapshot(snapPath)
	if err != nil {
		return res, err
	}
	d, err := lookupDomain(conn, name)
	if err != nil {
		return res, err
	}
	// d is looked up again after a live device update: free whichever
	// handle it holds at the end, once.
	defer func() {
		if d != nil {
			d.free()
		}
	}()
	if d.live == nil {
		return res, fmt.Errorf("domain %s is not running", name)
	}
	n := d.live.NIC(mac)
	if n == nil {
		return res, fmt.Errorf("domain %s has no NIC %s live", name, mac)
	}
	network := d.live.NetworkOf(*n)
	sn, ok := snap.Networks[network]
	if !ok {
		return res, fmt.Errorf("network %s is not on this hypervisor (%s); run 'gallium-net network define'", network, snap.Hypervisor)
	}
	res.bridge = sn.Bridge
	if n.Network != network || (n.Bridge != "" && n.Bridge != sn.Bridge) {
		x, err := domains.LiveInterfaceXML(s, d.live, *n, network)
		if err != nil {
			return res, err
		}
		if err := d.dom.UpdateDeviceFlags(x, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
			return res, fmt.Errorf("domain %s: move NIC %s to network %s (bridge %s): %w", name, mac, network, sn.Bridge, err)
		}
		res.changes = append(res.changes, fmt.Sprintf("live interface moved from %s/%s to %s/%s", orDash(n.Network), orDash(n.Bridge), network, sn.Bridge))
		// The device update may have replaced the tap.
		d.free()
		if d, err = lookupDomain(conn, name); err != nil {
			return res, err
		}
		if n = d.live.NIC(mac); n == nil {
			return res, fmt.Errorf("domain %s: NIC %s vanished during the update", name, mac)
		}
	}
	if want, err := domains.ResolveProfile(s, d.live.Meta.Profile); err == nil && n.Model != "" && n.Model != want.NICModel {
		res.changes = append(res.changes, fmt.Sprintf("model is %s, profile %s says %s: changes at next boot ('gallium-net vm profile %s %s --update-nics')", n.Model, want.Name, want.NICModel, name, want.Name))
	}
	res.tap = n.Target
	if n.Target == "" {
		return res, fmt.Errorf("domain %s: NIC %s has no tap", name, mac)
	}
	tr, err := netsetup.TapProgram(tk, netsetup.TapConfig{Tap: n.Target, Bridge: sn.Bridge, VLAN: sn.VLAN, MTU: sn.MTU})
	for _, op := range tr.Ops {
		res.changes = append(res.changes, op.String())
	}
	return res, err
}
