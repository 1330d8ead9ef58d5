package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/vmnet/libvirtconn"
)

// nicFollowCommand is `nic follow`: the MAC ledger follows VMs that move.
func nicFollowCommand() *cli.Command {
	return &cli.Command{
		Name:  "follow",
		Usage: "keep the MAC ledger's hypervisor of this host's running VMs right (live migrations; the gallium-net-ledger service)",
		Description: `The cluster ledger names, for every VM NIC, the hypervisor it runs on
('gallium-net state nics'). A live migration ('virsh migrate --live') moves
a VM without gallium-net's commands, so this follower listens to libvirt's
domain events: when a domain starts running here (booted, restored, or
resumed at the end of an incoming migration) its ledger NICs are recorded
on this hypervisor. A domain still paused by an incoming migration is not
claimed: the migration may yet fail. Every --resync it also looks at every
running domain, which covers events missed while libvirtd or the store was
down. It writes nothing when the ledger is already right.

Example:
   gallium-net nic follow --resync 1m`,
		Flags: append([]cli.Flag{specFlag(), hypervisorFlag(), connectFlag(),
			&cli.DurationFlag{Name: "resync", Value: time.Minute, Usage: "how often to look at every running domain"},
		}, storeFlags()...),
		Action: nicFollow,
	}
}

func nicFollow(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := hostConfigOf(c)
	if err != nil {
		return err
	}
	if b := storeBackend(c, cfg); b != "etcd" {
		// One hypervisor with its own file: no VM can arrive from another
		// one, and holding the file open would lock every other command out.
		slog.Info("nothing to follow: the store is this host's own file, so VMs never move in from another hypervisor; set store.backend: etcd for a cluster", "store", b)
		return nil
	}
	_, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return fmt.Errorf("open the cluster ledger: %w; fix the store settings in %s (or --store)", err, c.String("config"))
	}
	defer st.Close()
	if err := libvirtconn.StartEventLoop(); err != nil {
		return err
	}
	f := &follower{st: st, hv: hv, uri: c.String("connect"), resync: c.Duration("resync")}
	slog.Info("following this host's domains for the MAC ledger", "hypervisor", hv, "store", st.String(), "libvirt", f.uri)
	for wait := time.Second; ctx.Err() == nil; {
		err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		slog.Warn("libvirt connection lost; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	return nil
}

// follower claims arriving domains' ledger NICs for this hypervisor.
type follower struct {
	st     *store.Store
	hv     string
	uri    string
	resync time.Duration
}

// session follows one libvirt connection until it drops or ctx ends.
func (f *follower) session(ctx context.Context) error {
	conn, err := libvirtconn.Open(f.uri)
	if err != nil {
		return err
	}
	defer conn.Close()
	arrivals := make(chan libvirtconn.DomainRef, 64)
	closed, unsubscribe, err := conn.Arrivals(arrivals)
	if err != nil {
		return err
	}
	defer unsubscribe()
	tick := time.NewTicker(f.resync)
	defer tick.Stop()
	if err := f.pass(ctx, conn); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			return fmt.Errorf("libvirt closed the connection")
		case d := <-arrivals:
			f.claim(ctx, d)
		case <-tick.C:
			if err := f.pass(ctx, conn); err != nil {
				return err
			}
		}
	}
}

// pass claims every domain running here now.
func (f *follower) pass(ctx context.Context, conn *libvirtconn.Conn) error {
	doms, err := conn.RunningDomains()
	if err != nil {
		return fmt.Errorf("list running domains: %w", err)
	}
	for _, d := range doms {
		f.claim(ctx, d)
	}
	return nil
}

// claim records domain d's ledger NICs on this hypervisor. A failure is
// logged: the next pass tries again.
func (f *follower) claim(ctx context.Context, d libvirtconn.DomainRef) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	moved, err := f.st.MoveDomain(ctx, d.UUID, f.hv)
	if err != nil {
		slog.Warn("could not record the domain's NICs on this hypervisor; will retry", "domain", d.Name, "uuid", d.UUID, "err", err)
		return
	}
	for _, n := range moved {
		slog.Info("ledger: NIC now on this hypervisor", "domain", d.Name, "uuid", d.UUID, "mac", n.MAC, "network", n.Network, "hypervisor", f.hv)
	}
}
