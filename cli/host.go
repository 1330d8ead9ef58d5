package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin"
)

// hostCommand is `gallium-net host ...`: this hypervisor's bonds, bridges,
// VLANs and management IP.
func hostCommand() *cli.Command {
	return &cli.Command{
		Name:  "host",
		Usage: "plan, apply, confirm and roll back this hypervisor's bonds, VLAN bridges and management IP",
		Description: `Every hypervisor realises its part of the cluster spec: per adapter group an
active-backup bond (gb-GROUP) of its adapters, a VLAN-filtering bridge
(gbr-GROUP) on top carrying the group's networks' VLANs, and the management
IP untagged on the infrastructure bridge.

   gallium-net host plan -f cluster.yaml       # what would change, as ip/bridge commands
   gallium-net host apply -f cluster.yaml      # change it (commit-confirm when the management link changes)
   gallium-net host confirm                    # keep a commit-confirm apply
   gallium-net host status -f cluster.yaml     # bonds, active adapters, carrier, speed, VLANs
   gallium-net host verify-topology -f cluster.yaml`,
		Subcommands: []*cli.Command{
			hostPlanCommand(),
			hostApplyCommand(),
			hostConfirmCommand(),
			hostRollbackCommand(),
			hostStatusCommand(),
			hostCheckCommand(),
			hostVerifyTopologyCommand(),
		},
	}
}

// hostSpecFlag is -f/--spec (a private twin of the shared specFlag until
// that lands in cli/spec.go).
func hostSpecFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "spec",
		Aliases: []string{"f"},
		Value:   DefaultSpecPath,
		EnvVars: []string{"GALLIUM_NET_SPEC"},
		Usage:   "cluster spec `FILE`",
	}
}

func hostHypervisorFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "hypervisor",
		Usage: "hypervisor `NAME` from the spec (default: the one whose management IP is configured here, or whose name is this host's name)",
	}
}

func hostStateDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "state-dir",
		Value:   netsetup.DefaultStateDir,
		EnvVars: []string{"GALLIUM_NET_STATE_DIR"},
		Usage:   "`DIR` for commit-confirm snapshots",
	}
}

// hostLoadSpec strictly loads the spec and applies defaults. It is the
// private twin of the shared loadSpec (cli/spec.go), which also validates;
// until that lands, netsetup.Desired checks what host networking needs
// (adapters in one group, names, the management IP's home).
func hostLoadSpec(c *cli.Context) (*plugin.Spec, error) {
	path := c.String("spec")
	s, err := plugin.Load(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no cluster spec at %s: pass -f FILE (see examples/cluster.yaml)", path)
		}
		return nil, err
	}
	return s, nil
}

// hostHypervisor picks this host's hypervisor: --hypervisor, else the one
// whose management IP is configured on a local interface, else the one
// named like this host.
func hostHypervisor(c *cli.Context, s *plugin.Spec) (string, error) {
	var names []string
	for _, h := range s.Hypervisors {
		names = append(names, h.Name)
	}
	if hv := c.String("hypervisor"); hv != "" {
		if s.Hypervisor(hv) == nil {
			return "", fmt.Errorf("--hypervisor %s: not in the cluster spec; use one of: %s", hv, strings.Join(names, ", "))
		}
		return hv, nil
	}
	local := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local[ipn.IP.String()] = true
			}
		}
	}
	for _, h := range s.Hypervisors {
		if ip, _, err := net.ParseCIDR(h.ManagementIP); err == nil && local[ip.String()] {
			return h.Name, nil
		}
	}
	host, _ := os.Hostname()
	short := strings.SplitN(host, ".", 2)[0]
	for _, h := range s.Hypervisors {
		if h.Name == host || h.Name == short {
			return h.Name, nil
		}
	}
	return "", fmt.Errorf("cannot tell which hypervisor this host is: its hostname %q is none of %s, and none of their management IPs is configured here; pass --hypervisor NAME", host, strings.Join(names, ", "))
}

// hostSetup is what every host subcommand starts from.
type hostSetup struct {
	spec    *plugin.Spec
	hv      string
	desired *netsetup.HostState
}

func loadHostSetup(c *cli.Context) (*hostSetup, error) {
	s, err := hostLoadSpec(c)
	if err != nil {
		return nil, err
	}
	hv, err := hostHypervisor(c, s)
	if err != nil {
		return nil, err
	}
	d, err := netsetup.Desired(s, hv)
	if err != nil {
		return nil, err
	}
	return &hostSetup{spec: s, hv: hv, desired: d}, nil
}

func hostPlanCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "print the ip/bridge commands that would converge this host (no change)",
		Flags: []cli.Flag{hostSpecFlag(), hostHypervisorFlag(), outputFlag("text", "json", "yaml")},
		Action: func(c *cli.Context) error {
			hs, err := loadHostSetup(c)
			if err != nil {
				return err
			}
			obs, err := netsetup.NewNetlink().Observe()
			if err != nil {
				return err
			}
			p, err := netsetup.MakePlan(hs.desired, obs)
			if err != nil {
				return err
			}
			if c.String("output") != "text" {
				return printOut(c, p, nil)
			}
			fmt.Fprintf(c.App.Writer, "# hypervisor %s: %d step(s)\n", hs.hv, len(p.Steps))
			fmt.Fprint(c.App.Writer, p.String())
			if p.Disruptive() {
				fmt.Fprintln(c.App.Writer, "# the plan has DISRUPTIVE steps: apply needs --allow-disruptive")
			}
			if p.Touches(managementLinks(hs.desired, obs), true) {
				fmt.Fprintln(c.App.Writer, "# the plan changes the management link: apply will ask for 'gallium-net host confirm'")
			}
			return nil
		},
	}
}

// managementLinks are the links whose change may cut this host off: the
// infrastructure bond, bridge and adapters, and whatever carries the
// management IP now.
func managementLinks(d *netsetup.HostState, obs *netsetup.Snapshot) []string {
	out := d.ManagementLinks()
	for _, l := range obs.Links {
		for _, a := range l.Addrs {
			if a == d.ManagementIP {
				out = append(out, l.Name)
			}
		}
	}
	return out
}
