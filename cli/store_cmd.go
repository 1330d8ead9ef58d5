package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/boltstore"
)

// stateCommand is `state sync|nics|import|check`: the cluster state as a
// whole (the spec has its own `spec` command).
func stateCommand() *cli.Command {
	withStore := func(fs ...cli.Flag) []cli.Flag { return append(fs, storeFlags()...) }
	return &cli.Command{
		Name:  "state",
		Usage: "the cluster state: keep this host's snapshot in sync, list and import NICs of the MAC ledger",
		Subcommands: []*cli.Command{
			{
				Name:  "sync",
				Usage: "rewrite this hypervisor's host snapshot from the cluster state (--watch: keep doing it)",
				Description: `The libvirt hook reads only the host snapshot, so VMs start even when the
cluster store is unreachable. Every gallium-net command that changes the
state rewrites the snapshot itself; 'state sync --watch' (the
gallium-net-state service) also follows changes made on other hypervisors:
with etcd it watches, with the local bolt file it polls (the file is locked
while open, so it is opened only briefly).

Example:
   gallium-net state sync --watch`,
				Flags: withStore(hypervisorFlag(), snapshotFlag(),
					&cli.BoolFlag{Name: "watch", Usage: "keep the snapshot in sync until stopped"},
					&cli.DurationFlag{Name: "poll", Value: 5 * time.Second, Usage: "with --watch on a bolt file: how often to look"},
				),
				Action: stateSync,
			},
			{
				Name:  "nics",
				Usage: "list the NICs of the cluster's MAC ledger",
				Description: `One line per VM NIC: MAC, domain, network, model, hypervisor.

Example:
   gallium-net state nics --hypervisor hv1 -o json`,
				Flags:  withStore(outputFlag(), &cli.StringFlag{Name: "hypervisor", Usage: "only the NICs of hypervisor `NAME`"}),
				Action: stateNICs,
			},
			nicImportCommand(),
			{
				Name:  "check",
				Usage: "check the local state file's integrity (bolt backend)",
				Description: `Runs bbolt's page checks and decodes every record.

Example:
   gallium-net state check --state-file /var/lib/gallium-net/state.db`,
				Flags:  storeFlags(),
				Action: stateCheck,
			},
		},
	}
}

func stateSync(c *cli.Context) error {
	if !c.Bool("watch") {
		st, err := openStore(c)
		if err != nil {
			return err
		}
		defer st.Close()
		return syncHostSnapshot(c, st)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c.Context = ctx
	cfg, err := hostConfigOf(c)
	if err != nil {
		return err
	}
	if storeBackend(c, cfg) == "etcd" {
		st, err := openStore(c)
		if err != nil {
			return err
		}
		defer st.Close()
		rec, err := st.Spec(ctx)
		// A host may be installed before anyone pushed a spec: wait for one.
		for errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
			slog.Info("waiting for a cluster spec in the store", "store", st.String(), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.Duration("poll")):
			}
			rec, err = st.Spec(ctx)
		}
		if err != nil {
			return err
		}
		spec, err := rec.Spec()
		if err != nil {
			return err
		}
		hv, err := thisHypervisor(c, spec)
		if err != nil {
			return err
		}
		slog.Info("following the cluster state", "store", st.String(), "hypervisor", hv)
		err = st.FollowSnapshot(ctx, hv, snapshotPath(c), nil)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	for {
		err := func() error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			return syncHostSnapshot(c, st)
		}()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			slog.Warn("host snapshot sync failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Duration("poll")):
		}
	}
}

func stateNICs(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	nics, err := st.NICs(c.Context, c.String("hypervisor"))
	if err != nil {
		return err
	}
	if nics == nil {
		nics = []store.NIC{}
	}
	return printOut(c, nics, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "MAC\tDOMAIN\tDOMAIN UUID\tKEY\tNETWORK\tMODEL\tHYPERVISOR\tIMPORTED")
		for _, n := range nics {
			imp := ""
			if n.Imported {
				imp = "yes"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.MAC, orDash(n.Domain), n.DomainUUID, n.Key, n.Network, orDash(n.Model), orDash(n.Hypervisor), imp)
		}
	})
}

func stateCheck(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	b, ok := st.Backend().(*boltstore.Backend)
	if !ok {
		return fmt.Errorf("%s: integrity checks are etcd's own job (etcdctl check / endpoint health)", st)
	}
	if err := b.Check(); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: ok\n", st)
	return nil
}
