package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/model"
)

// The list commands print one layer of the spec as a table, JSON or YAML.
func listCommand() *cli.Command {
	sub := func(name, usage string, run func(c *cli.Context, s *model.Spec) error) *cli.Command {
		return &cli.Command{
			Name:        name,
			Usage:       usage,
			Description: fmt.Sprintf("Example:\n   gallium-net list %s -f examples/cluster.yaml -o json", name),
			Flags:       []cli.Flag{specFlag(), outputFlag()},
			Action: func(c *cli.Context) error {
				s, err := loadSpec(c)
				if err != nil {
					return err
				}
				return run(c, s)
			},
		}
	}
	return &cli.Command{
		Name:  "list",
		Usage: "list hypervisors, adapters, adapter groups, networks or hardware profiles of the spec",
		Subcommands: []*cli.Command{
			sub("hypervisors", "hypervisors with their management IP and adapters", listHypervisors),
			sub("adapters", "every adapter of every hypervisor and its group", listAdapters),
			sub("groups", "adapter groups with their bond, bridge and adapters", listGroups),
			sub("networks", "networks with their VLAN, group and bridge", listNetworks),
			sub("profiles", "hardware profiles and their NIC model", listProfiles),
		},
	}
}

type hypervisorRow struct {
	Name         string   `json:"name" yaml:"name"`
	ManagementIP string   `json:"managementIP" yaml:"managementIP"`
	Adapters     []string `json:"adapters" yaml:"adapters"`
}

func listHypervisors(c *cli.Context, s *model.Spec) error {
	rows := []hypervisorRow{}
	for _, h := range s.Hypervisors {
		r := hypervisorRow{Name: h.Name, ManagementIP: h.ManagementIP, Adapters: []string{}}
		for _, a := range h.Adapters {
			r.Adapters = append(r.Adapters, a.Name)
		}
		rows = append(rows, r)
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tMANAGEMENT IP\tADAPTERS")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.ManagementIP, strings.Join(r.Adapters, ","))
		}
	})
}

type adapterRow struct {
	Hypervisor string `json:"hypervisor" yaml:"hypervisor"`
	Name       string `json:"name" yaml:"name"`
	SpeedMbps  int    `json:"speedMbps,omitempty" yaml:"speedMbps,omitempty"`
	Group      string `json:"group,omitempty" yaml:"group,omitempty"`
	Primary    bool   `json:"primary,omitempty" yaml:"primary,omitempty"`
}

func listAdapters(c *cli.Context, s *model.Spec) error {
	rows := []adapterRow{}
	for _, h := range s.Hypervisors {
		for _, a := range h.Adapters {
			r := adapterRow{Hypervisor: h.Name, Name: a.Name, SpeedMbps: a.SpeedMbps}
			for _, g := range s.AdapterGroups {
				for _, ga := range g.Adapters[h.Name] {
					if ga == a.Name {
						r.Group = g.Name
						r.Primary = g.PrimaryOn(h.Name) == a.Name
					}
				}
			}
			rows = append(rows, r)
		}
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "HYPERVISOR\tADAPTER\tSPEED\tGROUP\tPRIMARY")
		for _, r := range rows {
			speed := "from host"
			if r.SpeedMbps > 0 {
				speed = fmt.Sprintf("%d Mbps", r.SpeedMbps)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Hypervisor, r.Name, speed, orDash(r.Group), yesNo(r.Primary))
		}
	})
}

type groupRow struct {
	Name           string              `json:"name" yaml:"name"`
	Infrastructure bool                `json:"infrastructure" yaml:"infrastructure"`
	Bond           string              `json:"bond" yaml:"bond"`
	Bridge         string              `json:"bridge" yaml:"bridge"`
	Miimon         int                 `json:"miimon" yaml:"miimon"`
	UpdelayMs      int                 `json:"updelayMs" yaml:"updelayMs"`
	DowndelayMs    int                 `json:"downdelayMs" yaml:"downdelayMs"`
	ArpIntervalMs  int                 `json:"arpIntervalMs,omitempty" yaml:"arpIntervalMs,omitempty"`
	ArpValidate    string              `json:"arpValidate,omitempty" yaml:"arpValidate,omitempty"`
	MTU            int                 `json:"mtu" yaml:"mtu"`
	Adapters       map[string][]string `json:"adapters" yaml:"adapters"`
}

func listGroups(c *cli.Context, s *model.Spec) error {
	rows := []groupRow{}
	for _, g := range s.AdapterGroups {
		r := groupRow{Name: g.Name, Infrastructure: g.Infrastructure, Bond: model.BondName(g.Name),
			Bridge: model.BridgeName(g.Name), Miimon: g.Bond.Miimon, UpdelayMs: g.Bond.Updelay(), DowndelayMs: g.Bond.DowndelayMs,
			MTU: s.GroupMTU(&g), Adapters: g.Adapters}
		if g.Bond.ARPMonitor() {
			r.ArpIntervalMs, r.ArpValidate = g.Bond.ArpIntervalMs, g.Bond.ArpValidate
		}
		rows = append(rows, r)
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "GROUP\tINFRA\tBOND\tBRIDGE\tMONITOR\tUPDELAY\tDOWNDELAY\tMTU\tADAPTERS")
		for _, r := range rows {
			hvs := make([]string, 0, len(r.Adapters))
			for hv := range r.Adapters {
				hvs = append(hvs, hv)
			}
			sort.Strings(hvs)
			var parts []string
			for _, hv := range hvs {
				parts = append(parts, hv+":"+strings.Join(r.Adapters[hv], "+"))
			}
			// The kernel runs one link monitor per bond: MII (carrier) or
			// ARP (answers from the targets, validated per arp_validate).
			monitor := fmt.Sprintf("mii %dms", r.Miimon)
			if r.ArpIntervalMs > 0 {
				monitor = fmt.Sprintf("arp %dms %s", r.ArpIntervalMs, r.ArpValidate)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Name, yesNo(r.Infrastructure), r.Bond, r.Bridge, monitor, r.UpdelayMs, r.DowndelayMs, r.MTU, strings.Join(parts, " "))
		}
	})
}

type networkRow struct {
	Name  string `json:"name" yaml:"name"`
	Group string `json:"adapterGroup" yaml:"adapterGroup"`
	// VLAN is left out for an untagged network ("vlan: 0" read as a
	// VLAN ID, which the spec refuses).
	VLAN     int    `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	Untagged bool   `json:"untagged,omitempty" yaml:"untagged,omitempty"`
	Bridge   string `json:"bridge" yaml:"bridge"`
	MTU      int    `json:"mtu" yaml:"mtu"`
}

func listNetworks(c *cli.Context, s *model.Spec) error {
	rows := []networkRow{}
	for i := range s.Networks {
		n := &s.Networks[i]
		rows = append(rows, networkRow{Name: n.Name, Group: n.AdapterGroup, VLAN: n.VLAN, Untagged: !n.Tagged(), Bridge: model.BridgeName(n.AdapterGroup), MTU: s.NetworkMTU(n)})
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NETWORK\tVLAN\tGROUP\tBRIDGE\tMTU")
		for _, r := range rows {
			vlan := "untagged"
			if r.VLAN != 0 {
				vlan = fmt.Sprint(r.VLAN)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", r.Name, vlan, r.Group, r.Bridge, r.MTU)
		}
	})
}

func listProfiles(c *cli.Context, s *model.Spec) error {
	rows := append([]model.HardwareProfile{}, s.HardwareProfiles...)
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "PROFILE\tNIC MODEL\tDEFAULT")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.NICModel, yesNo(r.Name == s.Cluster.DefaultProfile))
		}
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
