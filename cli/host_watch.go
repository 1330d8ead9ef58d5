package main

import (
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup/announce"
)

// hostWatchCommand is the long-running companion of host apply: it follows
// gallium-net's bonds and, when one changes its active adapter, announces
// the bridge's IPv4 addresses (gratuitous ARP) and the VM MACs behind it
// (RARP) out of the new adapter, so the physical switch relearns at once.
func hostWatchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "after each bond failover or failback, tell the switch at once where this host's and its VMs' MACs are now (the package runs it as gallium-net-watch.service)",
		Description: `The kernel's bond announces a failover only for addresses on the bond
itself; gallium-net's management IP lives on the bridge above it and the VMs
behind it, so without this a failback to the primary adapter loses traffic
until the switch relearns. watch runs until stopped (SIGINT/SIGTERM); the
package enables it as gallium-net-watch.service ('systemctl status
gallium-net-watch').

Example:
   gallium-net host watch`,
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			stopped, err := announce.Watch(ctx, func(bond, active string, n int, err error) {
				if err != nil {
					slog.Error("announce after failover", "bond", bond, "active", active, "err", err)
					return
				}
				slog.Info("bond changed active adapter: announced", "bond", bond, "active", active, "frames", n)
			}, func(cause error) {
				slog.Warn("lost the netlink link subscription; subscribed again and re-read every bond", "err", cause)
			})
			if err != nil {
				return fmt.Errorf("watch bonds: %w", err)
			}
			slog.Info("watching gallium-net bonds for failovers")
			// A watch that stopped on its own must not look healthy:
			// exit non-zero, and systemd restarts the service.
			if err := <-stopped; err != nil {
				return fmt.Errorf("watch bonds: %w", err)
			}
			return nil
		},
	}
}
