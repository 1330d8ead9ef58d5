package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// macCommand is `mac check`: this host's libvirt domains against the
// cluster's MAC ledger.
func macCommand() *cli.Command {
	return &cli.Command{
		Name:  "mac",
		Usage: "VM MAC addresses against the cluster's MAC ledger",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "report MACs of this host's domains that are duplicated or unknown to the ledger (exit 1 if any)",
			Description: `A duplicate is a MAC used by two NICs on this host, or one the ledger gives
to another NIC. An unknown MAC is not in the ledger at all: adopt it with
'gallium-net state import' (or give the NIC a new MAC). Ledger NICs of this
hypervisor that no domain here uses are listed as "missing" (information,
not an error: the VM may have moved).

Example:
   gallium-net mac check -o json`,
			Flags:  append([]cli.Flag{connectFlag(), hypervisorFlag(), outputFlag()}, storeFlags()...),
			Action: macCheck,
		}, {
			Name:  "allocate",
			Usage: "give a VM NIC its cluster-unique MAC (the same one every time for the same NIC)",
			Description: `The MAC comes from the spec's macPrefix and is claimed in the cluster ledger
by compare-and-swap, so no two hypervisors ever hand out the same one. Asking
again for the same --domain-uuid and --key returns the same MAC.

Example:
   gallium-net mac allocate --domain-uuid 6f1c...e2 --key net0 --network prod`,
			Flags: append([]cli.Flag{hypervisorFlag(), snapshotFlag(), outputFlag(),
				&cli.StringFlag{Name: "domain-uuid", Required: true, Usage: "the VM's libvirt domain `UUID`"},
				&cli.StringFlag{Name: "key", Value: "net0", Usage: "the NIC's stable `NAME` inside the VM"},
				&cli.StringFlag{Name: "network", Required: true, Usage: "the NIC's `NETWORK` from the spec"},
				&cli.StringFlag{Name: "model", Usage: "NIC `MODEL` (virtio, e1000...)"},
				&cli.StringFlag{Name: "domain", Usage: "the VM's `NAME`, for listings"},
			}, storeFlags()...),
			Action: macAllocate,
		}, {
			Name:  "release",
			Usage: "remove a VM NIC from the cluster ledger and free its MAC",
			Description: `Run it when the NIC (or the VM) is deleted for good.

Example:
   gallium-net mac release --domain-uuid 6f1c...e2 --key net0`,
			Flags: append([]cli.Flag{hypervisorFlag(), snapshotFlag(),
				&cli.StringFlag{Name: "domain-uuid", Required: true, Usage: "the VM's libvirt domain `UUID`"},
				&cli.StringFlag{Name: "key", Value: "net0", Usage: "the NIC's stable `NAME` inside the VM"},
			}, storeFlags()...),
			Action: macRelease,
		}},
	}
}

// hostNICs lists every NIC with a MAC of every domain on this host.
func hostNICs(c *cli.Context) ([]vmnet.HostNIC, error) {
	conn, err := openConn(c)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return vmnet.HostNICs(conn)
}

func macCheck(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	hv := ""
	if rec, err := st.Spec(c.Context); err == nil {
		if spec, err := rec.Spec(); err == nil {
			hv, _ = thisHypervisor(c, spec)
		}
	}
	ledger, err := st.NICs(c.Context, "")
	if err != nil {
		return err
	}
	host, err := hostNICs(c)
	if err != nil {
		return err
	}
	findings := vmnet.CompareMACs(host, ledger, hv)
	if findings == nil {
		findings = []vmnet.MACFinding{}
	}
	bad := 0
	for _, f := range findings {
		if f.Kind != "missing" {
			bad++
		}
	}
	err = printOut(c, findings, func(w *tabwriter.Writer) {
		if len(findings) == 0 {
			fmt.Fprintf(w, "ok: %d NICs on this host, all in the ledger, no duplicates\n", len(host))
			return
		}
		fmt.Fprintln(w, "KIND\tMAC\tDOMAIN\tDETAIL")
		for _, f := range findings {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Kind, f.MAC, orDash(f.Domain), f.Detail)
		}
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d duplicate or unknown MACs on this host", bad)}
	}
	return nil
}

// nicImportCommand adopts the NICs of this host's existing domains into the
// ledger (as `state import`; the nic command may mount it as `nic import`).
func nicImportCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "adopt the NICs of this host's existing domains into the cluster's MAC ledger",
		Description: `Each NIC is recorded under its domain's UUID with its MAC as the NIC key, so
running the import again changes nothing. A MAC the ledger already gives to
another NIC is reported and skipped: resolve it by hand (exit 1).

Example:
   gallium-net state import --domain web1`,
		Flags:  append([]cli.Flag{connectFlag(), hypervisorFlag(), snapshotFlag(), &cli.StringSliceFlag{Name: "domain", Usage: "only domain `NAME` (repeatable)"}}, storeFlags()...),
		Action: nicImport,
	}
}

func nicImport(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	_, spec, err := storedSpec(c.Context, st)
	if err != nil {
		return err
	}
	hv, err := thisHypervisor(c, spec)
	if err != nil {
		return err
	}
	host, err := hostNICs(c)
	if err != nil {
		return err
	}
	if only := c.StringSlice("domain"); len(only) > 0 {
		host = slices.DeleteFunc(host, func(n vmnet.HostNIC) bool { return !slices.Contains(only, n.Domain) })
	}
	adopted, err := vmnet.AdoptNICs(c.Context, st, host, hv)
	var added, kept, failed int
	for _, a := range adopted {
		switch {
		case a.Conflict != nil:
			failed++
			fmt.Fprintf(c.App.ErrWriter, "skipped %s of %s: %v\n", a.NIC.MAC, a.NIC.Domain, a.Conflict)
		case a.Imported:
			added++
			fmt.Fprintf(c.App.Writer, "imported %s of %s (%s)\n", a.NIC.MAC, a.NIC.Domain, a.NIC.Network)
		default:
			kept++
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%d NICs imported, %d already in the ledger, %d conflicts\n", added, kept, failed)
	refreshSnapshotAfter(c, st, "the import")
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d NICs conflict with the ledger", failed)}
	}
	return nil
}

func macAllocate(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, spec, err := storedSpec(c.Context, st)
	if err != nil {
		return err
	}
	if spec.Network(c.String("network")) == nil {
		return fmt.Errorf("--network %s: not a network of the stored spec (revision %d)", c.String("network"), rec.Version)
	}
	hv, _ := thisHypervisor(c, spec) // a NIC allocated from an admin host has no hypervisor yet
	nic, created, err := st.AllocateMAC(c.Context, store.NIC{
		DomainUUID: c.String("domain-uuid"), Key: c.String("key"), Domain: c.String("domain"),
		Network: c.String("network"), Model: c.String("model"), Hypervisor: hv,
	})
	if err != nil {
		return err
	}
	err = printOut(c, nic, func(w *tabwriter.Writer) {
		verb := "kept"
		if created {
			verb = "allocated"
		}
		fmt.Fprintf(w, "%s\t%s for %s (%s)\n", nic.MAC, verb, nic.ID(), nic.Network)
	})
	if err != nil {
		return err
	}
	refreshSnapshotAfter(c, st, fmt.Sprintf("MAC %s of %s", nic.MAC, nic.ID()))
	return nil
}

func macRelease(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	nic, err := st.ReleaseNIC(c.Context, c.String("domain-uuid"), c.String("key"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "released %s of %s\n", nic.MAC, nic.ID())
	refreshSnapshotAfter(c, st, fmt.Sprintf("the release of %s", nic.MAC))
	return nil
}
