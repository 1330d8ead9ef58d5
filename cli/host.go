package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/plugin/model"
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
			hostTakeoverCommand(),
			hostConfirmCommand(),
			hostRollbackCommand(),
			hostStatusCommand(),
			hostCheckCommand(),
			hostVerifyTopologyCommand(),
			hostWatchCommand(),
		},
	}
}

func hostStateDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "state-dir",
		Value:   confirm.DefaultStateDir,
		EnvVars: []string{"GALLIUM_NET_STATE_DIR"},
		Usage:   "`DIR` for commit-confirm snapshots",
	}
}

// hostSetup is what every host subcommand starts from.
type hostSetup struct {
	spec    *model.Spec
	hv      string
	desired *netsetup.HostState
}

func loadHostSetup(c *cli.Context) (*hostSetup, error) {
	s, hv, err := loadSpecHere(c)
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
		Description: `Reads this host's links through netlink, compares them with what the spec
asks for this hypervisor, and prints the ordered steps as ip/bridge commands.
A converged host prints nothing to do. Links whose names do not start with
gb-/gbr- are never touched (except the adapters the spec enslaves). The
first lines name what the OS's own network managers are configured to hold
of the same adapters, links and management IP (read under --root; see
'gallium-net host check').

Example:
   gallium-net host plan -f /etc/gallium-net/cluster.yaml --hypervisor hv1`,
		Flags: []cli.Flag{specFlag(), hypervisorFlag(), outputFlag("text", "json", "yaml"), osRootFlag()},
		Action: func(c *cli.Context) error {
			hs, err := loadHostSetup(c)
			if err != nil {
				return err
			}
			obs, err := netsetup.NewNetlink().Observe()
			if err != nil {
				return err
			}
			p, err := netsetup.Preview(hs.desired, obs)
			if err != nil {
				return err
			}
			if c.String("output") != "text" {
				if err := printOut(c, p, nil); err != nil {
					return err
				}
				return refusedErr(p)
			}
			// Who else would set these up at the next boot: said first, as
			// comments, so that the plan reads as what a takeover meets.
			_, held := osHolders(c, hs)
			for _, h := range held {
				for _, cl := range h.Claims {
					if !slices.Contains(h.Inert, cl.Manager) {
						fmt.Fprintf(c.App.Writer, "# %s is also configured by %s at %s (%s)\n", h.Object, cl.Manager, cl.Where(), cl.What)
					}
				}
			}
			fmt.Fprintf(c.App.Writer, "# hypervisor %s: %d step(s)\n", hs.hv, len(p.Steps))
			fmt.Fprint(c.App.Writer, p.String())
			if p.Disruptive() {
				fmt.Fprintln(c.App.Writer, "# the plan has DISRUPTIVE steps: apply needs --allow-disruptive")
			}
			if p.ChangesManagement(hs.desired, obs) {
				fmt.Fprintln(c.App.Writer, "# the plan changes the management link: apply will ask for 'gallium-net host confirm'")
			}
			return refusedErr(p)
		},
	}
}

// refusedErr is the finding of a plan that apply would refuse, after the
// plan was printed: the host cannot converge here, so the exit status says
// so (1) although the preview itself worked.
func refusedErr(p *netsetup.Plan) error {
	if p.Refused == "" {
		return nil
	}
	return &exitError{code: exitFailure, err: errors.New(p.Refused)}
}

// osRootFlag is --root: where the OS's network configuration is read.
func osRootFlag() cli.Flag {
	return &cli.StringFlag{Name: "root", Value: "/", Usage: "read the OS's network configuration under `DIR` (as systemctl --root)"}
}

// osHolders reads the OS's network configuration under --root and says
// what of this hypervisor's adapters, links and management IP it holds;
// unreadable files become warnings.
func osHolders(c *cli.Context, hs *hostSetup) (model.Findings, []osnet.HeldBy) {
	root := c.String("root")
	claims, errs := osnet.Scan(root)
	var findings model.Findings
	for _, e := range errs {
		findings = append(findings, model.Finding{Severity: model.SeverityWarning, Path: "root " + root, Message: "cannot read the OS's network configuration: " + e.Error()})
	}
	mf, held := osnet.CheckOSManagers(hs.spec, hs.hv, claims, osnet.Installed(root), permanentMAC)
	return append(findings, mf...), held
}
