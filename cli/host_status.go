package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/netsetup/probe"
)

func hostStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show per adapter group the bond, its active adapter, each adapter's carrier and speed, the bridge and its VLANs",
		Description: `Example:
   gallium-net host status -o json`,
		Flags: []cli.Flag{specFlag(), hypervisorFlag(), outputFlag("table", "json", "yaml")},
		Action: func(c *cli.Context) error {
			hs, err := loadHostSetup(c)
			if err != nil {
				return err
			}
			obs, err := netsetup.NewNetlink().Observe()
			if err != nil {
				return err
			}
			st := netsetup.Status(hs.desired, obs, netsetup.SysfsReader(netsetup.DefaultSysfs))
			return printOut(c, st, func(w *tabwriter.Writer) { statusTable(w, st) })
		},
	}
}

func statusTable(w *tabwriter.Writer, st *netsetup.HostStatus) {
	fmt.Fprintf(w, "hypervisor %s\n\n", st.Hypervisor)
	fmt.Fprintln(w, "GROUP\tBOND\tACTIVE\tADAPTER\tSLAVE\tCARRIER\tSPEED\tBRIDGE\tVLANS\tADDRESSES")
	for _, g := range st.Groups {
		bond := g.Bond
		switch {
		case !g.BondPresent:
			bond += " (missing)"
		case !g.BondUp:
			bond += " (down)"
		}
		bridge := g.Bridge
		switch {
		case !g.BridgePresent:
			bridge += " (missing)"
		case !g.BridgeUp:
			bridge += " (down)"
		}
		active := g.ActiveAdapter
		if active == "" {
			active = "-"
		}
		for i, a := range g.Adapters {
			slave := "no"
			if a.Master == g.Bond {
				slave = "yes"
			} else if a.Master != "" {
				slave = "in " + a.Master
			}
			if !a.Exists {
				slave = "MISSING"
			}
			carrier := "no"
			if a.Carrier {
				carrier = "yes"
			}
			speed := "unknown"
			if a.SpeedMbps > 0 {
				speed = fmt.Sprintf("%dMb/s", a.SpeedMbps)
			}
			name := a.Name
			if a.Active {
				name += "*"
			}
			if i == 0 {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Group, bond, active, name, slave, carrier, speed, bridge, vlanList(g.VLANs), strings.Join(g.Addrs, ","))
			} else {
				fmt.Fprintf(w, "\t\t\t%s\t%s\t%s\t%s\t\t\t\n", name, slave, carrier, speed)
			}
		}
	}
	fmt.Fprintln(w)
	if st.DefaultRoute != nil {
		fmt.Fprintf(w, "default route via %s dev %s\n", st.DefaultRoute.Gateway, st.DefaultRoute.Dev)
	}
	switch {
	case st.Converged:
		fmt.Fprintln(w, "converged: yes")
	case st.Blocked != "" && len(st.Pending) > 0:
		fmt.Fprintf(w, "converged: no (%d step(s) pending, which apply cannot run: %s)\n", len(st.Pending), st.Blocked)
	case st.Blocked != "":
		fmt.Fprintf(w, "converged: no (cannot plan: %s)\n", st.Blocked)
	default:
		fmt.Fprintf(w, "converged: no (%d step(s) pending: gallium-net host plan)\n", len(st.Pending))
	}
}

// vlanList prints bridge VLANs as "1(pvid,untagged) 100 200".
func vlanList(vs []netsetup.VLAN) string {
	if len(vs) == 0 {
		return "-"
	}
	var parts []string
	for _, v := range vs {
		s := fmt.Sprint(v.VID)
		var flags []string
		if v.PVID {
			flags = append(flags, "pvid")
		}
		if v.Untagged {
			flags = append(flags, "untagged")
		}
		if len(flags) > 0 {
			s += "(" + strings.Join(flags, ",") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func hostCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "check this host's adapters (present, carrier, speed) and who else configures them (ifupdown, NetworkManager, systemd-networkd, netplan)",
		Description: `An infrastructure adapter under 10 Gbps is an error unless the cluster is in
evaluation mode; a speed the host cannot tell (virtual NICs) is a warning.

It also reads the OS's own network configuration (under --root, / by
default): ifupdown's /etc/network/interfaces and what it sources,
NetworkManager's keyfile profiles, systemd-networkd's .network files and
netplan's YAML, and names, for each adapter of this hypervisor, each bond
and bridge gallium-net makes for it, and the management IP, which manager
is configured to hold it, with file and line. A holder that is installed
is a warning: at the next boot it sets the object up its own way.

Examples:
   gallium-net host check --hypervisor hv1
   gallium-net host check --root /mnt/hv1-root -o json    # a copy of a host's files, offline`,
		Flags: []cli.Flag{specFlag(), hypervisorFlag(), outputFlag("table", "json", "yaml"),
			osRootFlag()},
		Action: func(c *cli.Context) error {
			hs, err := loadHostSetup(c)
			if err != nil {
				return err
			}
			findings, facts := netsetup.CheckAdaptersIn(hs.spec, hs.hv, netsetup.SysfsReader(netsetup.DefaultSysfs), netsetup.ListAdapters(netsetup.DefaultSysfs))
			root := c.String("root")
			mf, held := osHolders(c, hs)
			findings = append(findings, mf...)
			out := struct {
				Hypervisor string                  `json:"hypervisor" yaml:"hypervisor"`
				OK         bool                    `json:"ok" yaml:"ok"`
				Adapters   []netsetup.AdapterFacts `json:"adapters" yaml:"adapters"`
				HeldBy     []osnet.HeldBy          `json:"heldBy" yaml:"heldBy"`
				Findings   any                     `json:"findings" yaml:"findings"`
			}{hs.hv, !findings.HasErrors(), facts, held, findings.Sorted()}
			if out.HeldBy == nil {
				out.HeldBy = []osnet.HeldBy{}
			}
			if err := printOut(c, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ADAPTER\tEXISTS\tCARRIER\tOPERSTATE\tSPEED")
				for _, f := range facts {
					speed := "unknown"
					if f.SpeedMbps > 0 {
						speed = fmt.Sprintf("%dMb/s", f.SpeedMbps)
					}
					fmt.Fprintf(w, "%s\t%v\t%v\t%s\t%s\n", f.Name, f.Exists, f.Carrier, f.OperState, speed)
				}
				fmt.Fprintln(w)
				printHeldBy(w, root, held)
				fmt.Fprintln(w)
				for _, f := range findings.Sorted() {
					fmt.Fprintf(w, "%s: %s: %s\n", f.Severity, f.Path, f.Message)
				}
			}); err != nil {
				return err
			}
			if findings.HasErrors() {
				return &exitError{code: 1, err: fmt.Errorf("adapter checks failed on hypervisor %s", hs.hv)}
			}
			return nil
		},
	}
}

func hostVerifyTopologyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify-topology",
		Usage: "prove that every adapter of each group reaches every other one at layer 2 (probe frames, ethertype 0x88B5)",
		Description: `Any adapter of a group may become active, so each must reach every other
one at layer 2. Sends a probe frame out of each adapter and reports, for
every ordered pair, whether it arrived. Links still coming up (right after
host apply) get --settle to carry a probe, so a failing pair takes that
long to report. Exit status 1 when a pair fails.

Example:
   gallium-net host verify-topology -o table`,
		Flags: []cli.Flag{
			specFlag(), hypervisorFlag(), outputFlag("table", "json", "yaml"),
			&cli.DurationFlag{Name: "wait", Value: 500 * time.Millisecond, Usage: "listen `DURATION` after the last probe"},
			&cli.DurationFlag{Name: "settle", Value: 2 * time.Second, Usage: "give links coming up (just after host apply) `DURATION` to carry probes: a failing pair is probed again until then"},
		},
		Action: func(c *cli.Context) error {
			hs, err := loadHostSetup(c)
			if err != nil {
				return err
			}
			var groups []probe.Group
			for _, g := range hs.desired.Groups {
				if len(g.Adapters) > 1 {
					groups = append(groups, probe.Group{Name: g.Name, Adapters: g.Adapters})
				}
			}
			rs, err := probe.VerifyTopology(groups, probe.Options{Sender: hs.hv, Wait: c.Duration("wait"), Settle: c.Duration("settle")})
			if err != nil {
				return err
			}
			failed := probe.Failures(rs)
			out := struct {
				Hypervisor string         `json:"hypervisor" yaml:"hypervisor"`
				OK         bool           `json:"ok" yaml:"ok"`
				Pairs      []probe.Result `json:"pairs" yaml:"pairs"`
			}{hs.hv, len(failed) == 0, rs}
			if err := printOut(c, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "GROUP\tFROM\tTO\tRESULT")
				for _, r := range rs {
					res := "ok"
					if !r.OK {
						why := "no probe arrived"
						if r.Detail != "" {
							why = r.Detail
						}
						res = "FAILED (" + why + ")"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Group, r.From, r.To, res)
				}
				if len(groups) == 0 {
					fmt.Fprintln(w, "(no group has two adapters on this host: nothing to verify)")
				}
			}); err != nil {
				return err
			}
			if len(failed) > 0 {
				var pairs []string
				for _, r := range failed {
					pairs = append(pairs, fmt.Sprintf("%s: %s -> %s", r.Group, r.From, r.To))
				}
				return &exitError{code: 1, err: fmt.Errorf("%d adapter pair(s) cannot reach each other at layer 2 (%s); check cabling and switch VLAN/port config, any adapter of a group must be able to take over", len(failed), strings.Join(pairs, "; "))}
			}
			return nil
		},
	}
}

// printHeldBy is host check's section on the OS's network managers.
func printHeldBy(w io.Writer, root string, held []osnet.HeldBy) {
	if len(held) == 0 {
		fmt.Fprintf(w, "OS network configuration (under %s): no manager is configured to hold these adapters, gallium-net's links or the management IP\n", root)
		return
	}
	fmt.Fprintf(w, "OS network configuration (under %s):\n", root)
	for _, h := range held {
		for i, c := range h.Claims {
			obj := h.Object
			if i > 0 {
				obj = ""
			}
			inert := ""
			if slices.Contains(h.Inert, c.Manager) {
				inert = " (not installed or not enabled: inert)"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s%s\n", obj, c.Manager, c.Where(), c.What, inert)
		}
	}
}
