package main

import (
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"libvirt.org/go/libvirt"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "libvirt networks of this hypervisor: define from the spec, list",
		Subcommands: []*cli.Command{
			{
				Name:      "define",
				Usage:     "define, start and autostart this host's libvirt networks from the spec (idempotent)",
				ArgsUsage: "[NAME | --all]",
				Description: `Defines each network of the spec that is on an adapter group of this
hypervisor as a libvirt network (forward mode bridge onto the group's
bridge), starts it and marks it autostart. A gallium-net network whose
definition drifted from the spec is redefined; a network gallium-net does not
own (any other bridge) is never touched. It also writes the host snapshot
that the libvirt hook reads. With libvirt >= 11.0 a tagged network carries
its VLAN natively; older libvirt gets it from the hook.

Example:
   gallium-net network define --all -f /etc/gallium-net/cluster.yaml`,
				Flags: []cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), snapshotFlag(),
					&cli.BoolFlag{Name: "all", Usage: "every network of this hypervisor (the default without NAME)"},
					outputFlag()},
				Action: networkDefine,
			},
			{
				Name:  "list",
				Usage: "libvirt networks with ownership, state and drift from the spec",
				Description: `Lists every libvirt network of this host: whether gallium-net owns it,
whether it runs and autostarts, and whether it is in line with the spec
(missing, drifted, not in the spec).

Example:
   gallium-net network list -o json`,
				Flags:  []cli.Flag{specFlag(), hypervisorFlag(), connectFlag(), outputFlag()},
				Action: networkList,
			},
		},
	}
}

// networksOn returns the spec networks of hypervisor hv, sorted by name.
func networksOn(s *plugin.Spec, hv string) []string {
	var out []string
	for _, g := range s.GroupsOn(hv) {
		for _, n := range s.NetworksOn(g.Name) {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

type lvNetworkResult struct {
	Name    string   `json:"name" yaml:"name"`
	Action  string   `json:"action" yaml:"action"`
	Bridge  string   `json:"bridge" yaml:"bridge"`
	VLAN    int      `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	Details []string `json:"details,omitempty" yaml:"details,omitempty"`
}

func networkDefine(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	names := networksOn(s, hv)
	if name := c.Args().First(); name != "" {
		if c.Bool("all") {
			return errors.New("give a network NAME or --all, not both")
		}
		n := s.Network(name)
		if n == nil {
			return fmt.Errorf("network %s is not in the cluster spec; see 'gallium-net list networks'", name)
		}
		if !contains(names, name) {
			return fmt.Errorf("network %s is on adapter group %s, which has no adapters on hypervisor %s; nothing to define here", name, n.AdapterGroup, hv)
		}
		names = []string{name}
	}
	conn, err := openLibvirt(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ver, err := conn.GetLibVersion()
	if err != nil {
		return fmt.Errorf("libvirt version: %w", err)
	}
	opt := domains.NetworkOptionsFor(ver)
	var results []lvNetworkResult
	var errs []error
	for _, name := range names {
		r, err := defineNetwork(conn, s, hv, name, opt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, r)
	}
	// The snapshot covers every network of this host, whichever were named,
	// and keeps the NIC records it had (the cluster ledger owns those).
	var nics []plugin.SnapshotNIC
	if old, err := plugin.ReadSnapshot(snapshotPath(c)); err == nil {
		nics = old.NICs
	}
	snap, err := plugin.BuildSnapshot(s, hv, nics, 0, time.Now())
	if err != nil {
		return err
	}
	if err := plugin.WriteSnapshot(snapshotPath(c), snap); err != nil {
		return fmt.Errorf("write the host snapshot for the hook: %w", err)
	}
	if err := printOut(c, results, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NETWORK\tACTION\tBRIDGE\tVLAN\tDETAILS")
		for _, r := range results {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Action, r.Bridge, vlanText(r.VLAN), joinOr(r.Details, "-"))
		}
	}); err != nil {
		return err
	}
	if !opt.NativeVLAN {
		for _, r := range results {
			if r.VLAN != 0 {
				fmt.Fprintf(c.App.ErrWriter, "note: libvirt %d.%d cannot put VLANs on taps of a Linux bridge (11.0 can); the gallium-net hook does it: check 'gallium-net hook status'\n", ver/1000000, ver/1000%1000)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// defineNetwork brings one libvirt network in line with the spec.
func defineNetwork(conn *libvirt.Connect, s *plugin.Spec, hv, name string, opt domains.NetworkOptions) (lvNetworkResult, error) {
	n := s.Network(name)
	r := lvNetworkResult{Name: name, Bridge: plugin.BridgeName(n.AdapterGroup), VLAN: n.VLAN}
	want, err := domains.NetworkXML(s, name, hv, opt)
	if err != nil {
		return r, err
	}
	net, err := conn.LookupNetworkByName(name)
	switch {
	case isLibvirtErr(err, libvirt.ERR_NO_NETWORK):
		if net, err = conn.NetworkDefineXML(want); err != nil {
			return r, fmt.Errorf("network %s: define: %w", name, err)
		}
		r.Action = "defined"
	case err != nil:
		return r, fmt.Errorf("network %s: %w", name, err)
	default:
		have, err := net.GetXMLDesc(libvirt.NETWORK_XML_INACTIVE)
		if err != nil {
			net.Free()
			return r, fmt.Errorf("network %s: read definition: %w", name, err)
		}
		def, err := domains.ParseNetworkXML(have)
		if err != nil {
			net.Free()
			return r, fmt.Errorf("network %s: %w", name, err)
		}
		if !def.Owned() {
			net.Free()
			return r, fmt.Errorf("libvirt network %s exists and is not gallium-net's (forward %s, bridge %s); gallium-net never touches it: rename the network in the spec or remove the libvirt network by hand ('virsh net-undefine %s')", name, orDash(def.ForwardMode), orDash(def.Bridge), name)
		}
		drifted, diffs, err := domains.NetworkDrift(want, have)
		if err != nil {
			net.Free()
			return r, fmt.Errorf("network %s: %w", name, err)
		}
		r.Action = "unchanged"
		if drifted {
			r.Details = diffs
			withUUID, err := domains.WithNetworkUUID(want, def.UUID)
			if err != nil {
				net.Free()
				return r, fmt.Errorf("network %s: %w", name, err)
			}
			net.Free()
			if net, err = conn.NetworkDefineXML(withUUID); err != nil {
				return r, fmt.Errorf("network %s: redefine: %w", name, err)
			}
			r.Action = "updated"
			if err := restartIfIdle(net, &r); err != nil {
				net.Free()
				return r, err
			}
		}
	}
	defer net.Free()
	active, err := net.IsActive()
	if err != nil {
		return r, fmt.Errorf("network %s: %w", name, err)
	}
	if !active {
		if err := net.Create(); err != nil {
			return r, fmt.Errorf("network %s: start: %w; does bridge %s exist? create it with 'gallium-net host apply'", name, err, r.Bridge)
		}
		r.Details = append(r.Details, "started")
	}
	auto, err := net.GetAutostart()
	if err != nil {
		return r, fmt.Errorf("network %s: %w", name, err)
	}
	if !auto {
		if err := net.SetAutostart(true); err != nil {
			return r, fmt.Errorf("network %s: autostart: %w", name, err)
		}
		r.Details = append(r.Details, "autostart on")
	}
	if r.Action == "unchanged" && len(r.Details) > 0 {
		r.Action = "fixed"
	}
	return r, nil
}

// restartIfIdle applies a redefinition to a running network with no ports
// in use (restarting it then disturbs nobody). A network with ports keeps
// running on its old definition until restarted; its NICs are brought in line
// by 'gallium-net nic sync'.
func restartIfIdle(net *libvirt.Network, r *lvNetworkResult) error {
	active, err := net.IsActive()
	if err != nil || !active {
		return err
	}
	ports, err := net.ListAllPorts(0)
	if err != nil {
		return fmt.Errorf("network %s: list ports: %w", r.Name, err)
	}
	for i := range ports {
		_ = ports[i].Free()
	}
	if len(ports) > 0 {
		r.Details = append(r.Details, fmt.Sprintf("%d NICs in use: new definition applies when the network restarts; run 'gallium-net nic sync --all' to update them now", len(ports)))
		return nil
	}
	if err := net.Destroy(); err != nil {
		return fmt.Errorf("network %s: stop to apply the new definition: %w", r.Name, err)
	}
	if err := net.Create(); err != nil {
		return fmt.Errorf("network %s: start with the new definition: %w", r.Name, err)
	}
	r.Details = append(r.Details, "restarted")
	return nil
}

type lvNetworkRow struct {
	Name      string `json:"name" yaml:"name"`
	Owned     bool   `json:"owned" yaml:"owned"`
	Active    bool   `json:"active" yaml:"active"`
	Autostart bool   `json:"autostart" yaml:"autostart"`
	Bridge    string `json:"bridge" yaml:"bridge"`
	VLAN      int    `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	// Spec is "in line", "drifted: ...", "not in spec" or "missing".
	Spec string `json:"spec" yaml:"spec"`
}

func networkList(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	conn, err := openLibvirt(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ver, err := conn.GetLibVersion()
	if err != nil {
		return fmt.Errorf("libvirt version: %w", err)
	}
	opt := domains.NetworkOptionsFor(ver)
	nets, err := conn.ListAllNetworks(0)
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	rows := []lvNetworkRow{}
	seen := map[string]bool{}
	for i := range nets {
		n := &nets[i]
		row, err := describeNetwork(n, s, hv, opt)
		_ = n.Free()
		if err != nil {
			return err
		}
		seen[row.Name] = true
		rows = append(rows, row)
	}
	for _, name := range networksOn(s, hv) {
		if !seen[name] {
			n := s.Network(name)
			rows = append(rows, lvNetworkRow{Name: name, Owned: true, Bridge: plugin.BridgeName(n.AdapterGroup), VLAN: n.VLAN, Spec: "missing: run 'gallium-net network define " + name + "'"})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tOWNER\tACTIVE\tAUTOSTART\tBRIDGE\tVLAN\tSPEC")
		for _, r := range rows {
			owner := "other"
			if r.Owned {
				owner = "gallium-net"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, owner, yesNo(r.Active), yesNo(r.Autostart), orDash(r.Bridge), vlanText(r.VLAN), r.Spec)
		}
	})
}

func describeNetwork(n *libvirt.Network, s *plugin.Spec, hv string, opt domains.NetworkOptions) (lvNetworkRow, error) {
	var row lvNetworkRow
	var err error
	if row.Name, err = n.GetName(); err != nil {
		return row, fmt.Errorf("network name: %w", err)
	}
	have, err := n.GetXMLDesc(libvirt.NETWORK_XML_INACTIVE)
	if err != nil {
		return row, fmt.Errorf("network %s: %w", row.Name, err)
	}
	def, err := domains.ParseNetworkXML(have)
	if err != nil {
		return row, fmt.Errorf("network %s: %w", row.Name, err)
	}
	row.Owned, row.Bridge = def.Owned(), def.Bridge
	row.Active, _ = n.IsActive()
	row.Autostart, _ = n.GetAutostart()
	row.Spec = "not in spec"
	if sn := s.Network(row.Name); sn != nil {
		row.VLAN = sn.VLAN
		want, err := domains.NetworkXML(s, row.Name, hv, opt)
		if err != nil {
			row.Spec = "not on this hypervisor"
		} else if drifted, diffs, err := domains.NetworkDrift(want, have); err == nil && drifted {
			row.Spec = "drifted: " + joinOr(diffs, "") + "; run 'gallium-net network define " + row.Name + "'"
		} else if err == nil {
			row.Spec = "in line"
		}
	}
	if !row.Owned && row.Spec != "not in spec" {
		row.Spec = "name clash: a network gallium-net does not own"
	}
	return row, nil
}

func vlanText(v int) string {
	if v == 0 {
		return "untagged"
	}
	return fmt.Sprint(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOr(ss []string, empty string) string {
	if len(ss) == 0 {
		return empty
	}
	out := ss[0]
	for _, s := range ss[1:] {
		out += "; " + s
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
