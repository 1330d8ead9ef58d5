package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/plugin/atomicfile"
)

func hostTakeoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "takeover",
		Usage: "make the OS's network manager let go of this hypervisor's adapters and management IP, then apply (commit-confirm)",
		Description: `Run it once on a freshly installed hypervisor, over SSH on the management
connection. It says which of the OS's network managers (ifupdown,
NetworkManager, systemd-networkd, netplan) holds this hypervisor's adapters,
gallium-net's bonds and bridges and the management IP, and then:

  1. saves the host's links and addresses and the files it will edit, and
     arms the automatic rollback (--confirm-timeout);
  2. makes each installed manager let go of those interfaces, and of
     nothing else:
       ifupdown         their stanzas in /etc/network/interfaces (and what it
                        sources) are commented out in place ("#gallium-net# ")
       NetworkManager   ` + osnet.NMDropIn + ` (unmanaged-devices+=)
       systemd-networkd ` + osnet.NetworkdDropIn + ` (Unmanaged=yes);
                        netplan's YAML stays: what it renders loses to it
     and tells the running ones (nmcli general reload conf, networkctl
     reload);
  3. applies host networking as 'gallium-net host apply' does.

Unless 'gallium-net host confirm' runs within --confirm-timeout (from a new
session: that proves the host is still reachable), the rollback writes the
files back byte for byte, removes the ones it created, restores the links and
addresses and reloads the managers. 'gallium-net host rollback' does the same
by hand later. A second takeover has nothing to do.

With --root DIR other than /, only the files under DIR are read and written
(an image or a copy of a host's /etc, as systemctl --root): no link is
touched and nothing is saved for a rollback.

Example:
   gallium-net host takeover --dry-run          # what it would write and do
   gallium-net host takeover --confirm-timeout 2m
   gallium-net host confirm                     # from a new SSH session`,
		Flags: []cli.Flag{
			specFlag(), hypervisorFlag(), hostStateDirFlag(), osRootFlag(),
			&cli.DurationFlag{Name: "confirm-timeout", Value: confirm.DefaultTimeout, Usage: "roll back (files, links, addresses) unless confirmed within `DURATION` (0 disables: not recommended over SSH)"},
			&cli.BoolFlag{Name: "allow-disruptive", Usage: "allow steps that re-create or delete a bond or bridge (traffic stops on it)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask"},
			&cli.BoolFlag{Name: "skip-checks", Usage: "apply even when adapter checks report errors (slow or missing adapters)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be written and applied; change nothing"},
		},
		Action: hostTakeover,
	}
}

func hostTakeover(c *cli.Context) error {
	hs, err := loadHostSetup(c)
	if err != nil {
		return err
	}
	w := c.App.Writer
	root := c.String("root")
	findings, held := osHolders(c, hs)
	for _, f := range findings {
		if f.Path == "root "+root {
			fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", f.Severity, f.Message)
		}
	}
	for _, h := range held {
		for _, cl := range h.Claims {
			if !slices.Contains(h.Inert, cl.Manager) {
				fmt.Fprintf(w, "# %s is held by %s at %s (%s)\n", h.Object, cl.Manager, cl.Where(), cl.What)
			}
		}
	}
	t := osnet.Target{Names: osnet.Interfaces(hs.spec, hs.hv), MAC: permanentMAC}
	if root == "/" || root == "" {
		// The adapters the OS's managers keep: on this host, not in a
		// --root tree.
		t.OthersKnown = true
		for _, a := range netsetup.ListAdapters(netsetup.DefaultSysfs) {
			if !slices.Contains(t.Names, a.Name) {
				t.Others = append(t.Others, osnet.Adapter{Name: a.Name, MAC: permanentMAC(a.Name)})
			}
		}
	}
	if p, err := netip.ParsePrefix(hs.spec.Hypervisor(hs.hv).ManagementIP); err == nil {
		t.Addr = p.Addr()
	}
	release, err := osnet.PlanRelease(root, t, osnet.Installed(root))
	if err != nil {
		return fmt.Errorf("take over hypervisor %s: %w", hs.hv, err)
	}
	if release.Empty() {
		fmt.Fprintf(w, "# no OS network manager holds %s: no file to write\n", strings.Join(t.Names, ", "))
	}
	for _, e := range release.Edits {
		verb := "edit"
		if !e.Existed {
			verb = "create"
		}
		fmt.Fprintf(w, "# %s %s: %s\n", verb, e.Path, e.Why)
	}
	for _, r := range release.Reload {
		fmt.Fprintf(w, "# then: %s\n", r)
	}
	for _, n := range release.Notes {
		fmt.Fprintf(w, "# note: %s\n", n)
	}
	if root != "/" && root != "" {
		if c.Bool("dry-run") || release.Empty() {
			return nil
		}
		if err := osnet.WriteEdits(root, release.Edits, atomicfile.Write); err != nil {
			return fmt.Errorf("take over under %s: %w", root, err)
		}
		fmt.Fprintf(w, "wrote %d file(s) under %s; links and addresses are not touched with --root\n", len(release.Edits), root)
		return nil
	}
	return applyHost(c, hs, release)
}

// permanentMAC is adapter name's permanent MAC (a bond slave's
// perm_hwaddr), nil when unknown.
func permanentMAC(name string) net.HardwareAddr {
	m, _ := net.ParseMAC(netsetup.ReadAdapter(netsetup.DefaultSysfs, name).MAC)
	return m
}
