package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	nettap "github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// defaultVia is how migrate-check reaches the destination: the same root
// SSH login that libvirt's qemu+ssh:// migration uses.
const defaultVia = "ssh -o BatchMode=yes -o ConnectTimeout=10 root@{host}"

func vmMigrateCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate-check",
		Usage:     "say before a live migration whether the destination can run every gallium-net NIC of a VM",
		ArgsUsage: "DOMAIN HYPERVISOR",
		Description: `Asks the destination hypervisor (over SSH, as root, as 'virsh migrate
qemu+ssh://' does) to check each gallium-net NIC of DOMAIN against its own
state: the NIC's network is on that hypervisor, its libvirt network is
defined and running, its bridge is up and carries the network's VLAN on the
uplink, the NIC's MTU fits, and no domain there has the NIC's MAC. Each
problem comes with its fix. Exits 0 when the VM can move, 1 when it cannot:
a drain script can stop before the first 'virsh migrate'.

The destination runs the same command with --incoming and the domain's XML
on stdin. Nothing is changed on either host.

It checks the network only. libvirt checks the rest when the migration
starts, the machine type among it: a VM defined on Debian 13 with plain
'pc' or 'q35' gets QEMU 10's machine type, which Debian 12's QEMU refuses.
In a mixed cluster, pin each VM's machine type to the oldest release's
(e.g. <type machine='pc-i440fx-7.2'>).

Examples:
   gallium-net vm migrate-check web1 hv2
   for vm in $(virsh list --name); do gallium-net vm migrate-check "$vm" hv2 || exit 1; done`,
		Flags: append([]cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), snapshotFlag(), outputFlag(),
			&cli.StringFlag{Name: "via", Value: defaultVia, Usage: "`COMMAND` that runs a command on the destination; {host} is its management IP"},
			&cli.BoolFlag{Name: "incoming", Usage: "run on the destination: check the domain XML on stdin against this host (what the source runs over --via)"},
		}, storeFlags()...),
		Action: vmMigrateCheck,
	}
}

func vmMigrateCheck(c *cli.Context) error {
	if c.Bool("incoming") {
		return vmMigrateIncoming(c)
	}
	if c.NArg() != 2 {
		return errors.New("usage: gallium-net vm migrate-check DOMAIN HYPERVISOR")
	}
	name, dest := c.Args().Get(0), c.Args().Get(1)
	s, here, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	h := s.Hypervisor(dest)
	if h == nil {
		return fmt.Errorf("hypervisor %s is not in the cluster spec; use one of: %s", dest, strings.Join(s.HypervisorNames(), ", "))
	}
	if dest == here {
		return fmt.Errorf("domain %s: hypervisor %s is this host; name the hypervisor it would move to", name, dest)
	}
	pfx, err := netip.ParsePrefix(h.ManagementIP)
	if err != nil {
		return fmt.Errorf("hypervisor %s: management IP %q: %w", dest, h.ManagementIP, err)
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	active, err := conn.DomainActive(name)
	if err != nil {
		return fmt.Errorf("domain %s: %w", name, err)
	}
	xml, err := conn.DomainXML(name, active)
	conn.Close()
	if err != nil {
		return fmt.Errorf("domain %s: %w", name, err)
	}
	in, err := askDestination(c.Context, c.String("via"), pfx.Addr().String(), dest, []byte(xml))
	if err != nil {
		return fmt.Errorf("domain %s: cannot check hypervisor %s: %w", name, dest, err)
	}
	if err := printIncoming(c, in); err != nil {
		return err
	}
	if !in.OK() {
		n := 0
		for _, nic := range in.NICs {
			n += len(nic.Problems)
		}
		what := fmt.Sprintf("%d problems", n)
		if n == 1 {
			what = "the problem"
		}
		return &exitError{code: 1, err: fmt.Errorf("domain %s cannot migrate to hypervisor %s: fix %s above there first", name, dest, what)}
	}
	return nil
}

// askDestination runs migrate-check --incoming on the destination through
// via, with the domain's XML on stdin.
func askDestination(ctx context.Context, via, ip, dest string, xml []byte) (vmnet.Incoming, error) {
	viaArgv := strings.Fields(strings.ReplaceAll(via, "{host}", ip))
	if len(viaArgv) == 0 {
		return vmnet.Incoming{}, errors.New("--via is empty")
	}
	argv := append(slices.Clip(viaArgv), "gallium-net", "vm", "migrate-check", "--incoming", "-o", "json")
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(xml)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return vmnet.Incoming{}, fmt.Errorf("%s: %s; fix: make sure 'ssh root@%s' works from this host without a password (libvirt's qemu+ssh:// migration needs it too) and that gallium-net is installed on %s", strings.Join(viaArgv, " "), msg, ip, dest)
	}
	var in vmnet.Incoming
	if err := json.Unmarshal(out.Bytes(), &in); err != nil {
		return vmnet.Incoming{}, fmt.Errorf("hypervisor %s answered something that is not a migrate-check result (%v): %.200q", dest, err, out.String())
	}
	if in.Hypervisor != dest {
		return in, fmt.Errorf("%s answered as hypervisor %q, not %s; check its /etc/gallium-net/config.yaml and the spec's management IPs", ip, in.Hypervisor, dest)
	}
	return in, nil
}

// vmMigrateIncoming is the destination's side: the domain XML on stdin
// against this host's snapshot, libvirt and kernel.
func vmMigrateIncoming(c *cli.Context) error {
	xml, err := io.ReadAll(io.LimitReader(c.App.Reader, 16<<20))
	if err != nil {
		return fmt.Errorf("read the domain XML from stdin: %w", err)
	}
	snap, err := snapshot.Read(snapshotPath(c))
	if err != nil {
		return fmt.Errorf("%w; run 'gallium-net state sync' on this hypervisor", err)
	}
	conn, err := openConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	k := nettap.NewNetlink()
	ready := func(n snapshot.Network) error { return nettap.NetworkReady(k, n.Bridge, n.Bond, n.VLAN) }
	in, err := vmnet.CheckIncoming(conn, snap, ready, xml)
	if err != nil {
		return err
	}
	return printIncoming(c, in)
}

func printIncoming(c *cli.Context, in vmnet.Incoming) error {
	return printOut(c, in, func(w *tabwriter.Writer) {
		if !in.Managed {
			fmt.Fprintf(w, "domain %s has no gallium-net NICs: nothing for gallium-net to check on hypervisor %s\n", in.Domain, in.Hypervisor)
			return
		}
		verdict := "can run every gallium-net NIC"
		if !in.OK() {
			verdict = "CANNOT run every gallium-net NIC"
		}
		fmt.Fprintf(w, "domain %s -> hypervisor %s: %s\n", in.Domain, in.Hypervisor, verdict)
		fmt.Fprintln(w, "NIC\tNETWORK\tVLAN\tBRIDGE\tRESULT")
		for _, n := range in.NICs {
			vlan := "untagged"
			if n.VLAN > 0 {
				vlan = fmt.Sprint(n.VLAN)
			}
			if len(n.Problems) == 0 {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\tok\n", n.MAC, n.Network, vlan, orDash(n.Bridge))
				continue
			}
			for i, p := range n.Problems {
				if i == 0 {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.MAC, n.Network, vlan, orDash(n.Bridge), p)
				} else {
					fmt.Fprintf(w, "\t\t\t\t%s\n", p)
				}
			}
		}
	})
}
