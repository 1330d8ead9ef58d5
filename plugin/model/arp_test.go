package model_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// arpOn turns ARP monitoring on for group g of a defaulted spec as a spec
// file that says only arpIntervalMs would: the miimon-based settings
// unset, then the defaults filled in again.
func arpOn(s *model.Spec, g string, ms int) *model.BondTuning {
	b := &grp(s, g).Bond
	b.Miimon, b.UpdelayMs, b.DowndelayMs, b.PeerNotifyDelayMs, b.ArpIntervalMs = 0, nil, 0, 0, ms
	model.SetDefaults(s)
	return b
}

func TestARPMonitoringDefaults(t *testing.T) {
	s, err := specfile.Parse([]byte(`
cluster: {name: lab, subnet: 192.168.1.0/24, vip: 192.168.1.100}
hypervisors:
  - {name: hv1, managementIP: 192.168.1.101/24, adapters: [{name: eno1}, {name: eno2}, {name: eno3}, {name: eno4}]}
  - {name: hv2, managementIP: 192.168.1.102/24, adapters: [{name: eno1}, {name: eno2}, {name: eno3}, {name: eno4}]}
  - {name: hv3, managementIP: 192.168.1.103/24, adapters: [{name: eno1}, {name: eno2}, {name: eno3}, {name: eno4}]}
adapterGroups:
  - name: infra
    infrastructure: true
    adapters: {hv1: [eno1, eno2], hv2: [eno1, eno2], hv3: [eno1, eno2]}
    bond: {arpIntervalMs: 100}
  - name: vm
    adapters: {hv1: [eno3, eno4], hv2: [eno3, eno4], hv3: [eno3, eno4]}
    bond: {arpIntervalMs: 200, arpIPTargets: [10.20.0.1, 10.20.0.2]}
networks: [{name: flat, adapterGroup: vm}]
`), "arp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fs := model.Validate(s); fs.HasErrors() {
		t.Fatalf("unexpected errors: %v", fs.Errors())
	}
	infra, vm := s.Group("infra"), s.Group("vm")
	// One monitor: no miimon, no miimon-based delays.
	if b := infra.Bond; b.Miimon != 0 || b.UpdelayMs != nil || b.Updelay() != 0 || b.ArpValidate != "all" {
		t.Errorf("infra bond defaults: %+v (updelay %d), want miimon 0, no updelay, arpValidate all", b, b.Updelay())
	}
	if b := vm.Bond; b.Miimon != 0 || b.ArpValidate != "filter" {
		t.Errorf("vm bond defaults: %+v, want miimon 0, arpValidate filter (no IP to validate against)", b)
	}
	// Default targets per hypervisor: the others' management IPs.
	for hv, want := range map[string][]string{
		"hv1": {"192.168.1.102", "192.168.1.103"},
		"hv2": {"192.168.1.101", "192.168.1.103"},
		"hv3": {"192.168.1.101", "192.168.1.102"},
	} {
		if diff := cmp.Diff(want, s.ARPTargetsOn(infra, hv)); diff != "" {
			t.Errorf("infra targets on %s (-want +got):\n%s", hv, diff)
		}
		if diff := cmp.Diff([]string{"10.20.0.1", "10.20.0.2"}, s.ARPTargetsOn(vm, hv)); diff != "" {
			t.Errorf("vm targets on %s (-want +got):\n%s", hv, diff)
		}
	}
	// Explicit targets: the host's own management IP is left out there.
	infra.Bond.ArpIPTargets = []string{"192.168.1.1", "192.168.1.101"}
	if diff := cmp.Diff([]string{"192.168.1.1"}, s.ARPTargetsOn(infra, "hv1")); diff != "" {
		t.Errorf("explicit targets on hv1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"192.168.1.1", "192.168.1.101"}, s.ARPTargetsOn(infra, "hv2")); diff != "" {
		t.Errorf("explicit targets on hv2 (-want +got):\n%s", diff)
	}
	// No ARP monitoring: no targets, and the MII defaults as before.
	prod := production(t)
	if g := grp(prod, "infra"); prod.ARPTargetsOn(g, "hv1") != nil || g.Bond.Miimon != model.DefaultMiimon || g.Bond.ArpValidate != "" {
		t.Errorf("MII bond: targets %v, tuning %+v", prod.ARPTargetsOn(g, "hv1"), g.Bond)
	}
}

func TestARPMonitoringRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutate   func(s *model.Spec)
		path     string
		contains string
	}{
		{"interval too large", func(s *model.Spec) { arpOn(s, "infra", 10001) }, "adapterGroups[infra].bond.arpIntervalMs", "1 to 10000"},
		{"interval negative", func(s *model.Spec) { grp(s, "infra").Bond.ArpIntervalMs = -1 }, "adapterGroups[infra].bond.arpIntervalMs", "out of range"},
		{"miimon beside it", func(s *model.Spec) { arpOn(s, "infra", 100).Miimon = 100 }, "adapterGroups[infra].bond.miimon", "one link monitor per bond"},
		{"updelay beside it", func(s *model.Spec) { arpOn(s, "infra", 100).UpdelayMs = intp(0) }, "adapterGroups[infra].bond.updelayMs", "remove updelayMs to keep ARP monitoring"},
		{"downdelay beside it", func(s *model.Spec) { arpOn(s, "infra", 100).DowndelayMs = 100 }, "adapterGroups[infra].bond.downdelayMs", "belongs to MII monitoring"},
		{"peer notify delay beside it", func(s *model.Spec) { arpOn(s, "infra", 100).PeerNotifyDelayMs = 100 }, "adapterGroups[infra].bond.peerNotifyDelayMs", "arpIntervalMs"},
		{"unknown validate", func(s *model.Spec) { arpOn(s, "infra", 100).ArpValidate = "some" }, "adapterGroups[infra].bond.arpValidate", "filter_backup"},
		{"targets without interval", func(s *model.Spec) { grp(s, "infra").Bond.ArpIPTargets = []string{"192.168.1.1"} }, "adapterGroups[infra].bond.arpIPTargets", "set arpIntervalMs"},
		{"validate without interval", func(s *model.Spec) { grp(s, "infra").Bond.ArpValidate = "all" }, "adapterGroups[infra].bond.arpValidate", "no effect without ARP monitoring"},
		{"VM group without targets", func(s *model.Spec) { arpOn(s, "vmgroup", 100) }, "adapterGroups[vmgroup].bond.arpIPTargets", `group "vmgroup" has arpIntervalMs but no arpIPTargets`},
		{"VM group validating", func(s *model.Spec) {
			b := arpOn(s, "vmgroup", 100)
			b.ArpIPTargets, b.ArpValidate = []string{"10.0.0.1"}, "active"
		}, "adapterGroups[vmgroup].bond.arpValidate", "use filter or none"},
		{"VM group target in the management subnet", func(s *model.Spec) {
			arpOn(s, "vmgroup", 100).ArpIPTargets = []string{"10.0.0.1", "192.168.1.1"}
		}, "adapterGroups[vmgroup].bond.arpIPTargets[1]", "through the infrastructure bridge"},
		{"infrastructure target outside the management subnet", func(s *model.Spec) {
			arpOn(s, "infra", 100).ArpIPTargets = []string{"10.0.0.1"}
		}, "adapterGroups[infra].bond.arpIPTargets[0]", "outside the management subnet 192.168.1.0/24"},
		{"IPv6 target", func(s *model.Spec) { arpOn(s, "infra", 100).ArpIPTargets = []string{"fd00::1"} }, "adapterGroups[infra].bond.arpIPTargets[0]", "not an IPv4 address"},
		{"CIDR target", func(s *model.Spec) { arpOn(s, "infra", 100).ArpIPTargets = []string{"192.168.1.1/24"} }, "adapterGroups[infra].bond.arpIPTargets[0]", "no prefix length"},
		{"broadcast target", func(s *model.Spec) { arpOn(s, "infra", 100).ArpIPTargets = []string{"255.255.255.255"} }, "adapterGroups[infra].bond.arpIPTargets[0]", "not a unicast address"},
		{"target with a leading zero", func(s *model.Spec) {
			arpOn(s, "infra", 100).ArpIPTargets = []string{"192.168.1.1", "192.168.1.01"}
		}, "adapterGroups[infra].bond.arpIPTargets[1]", "not an IPv4 address"},
		{"target twice", func(s *model.Spec) {
			arpOn(s, "infra", 100).ArpIPTargets = []string{"192.168.1.1", "192.168.1.1"}
		}, "adapterGroups[infra].bond.arpIPTargets[1]", "listed twice"},
		{"too many targets", func(s *model.Spec) {
			b := arpOn(s, "infra", 100)
			for i := 0; i < 17; i++ {
				b.ArpIPTargets = append(b.ArpIPTargets, fmt.Sprintf("192.168.1.%d", i+1))
			}
		}, "adapterGroups[infra].bond.arpIPTargets", "at most 16"},
		{"only the own IP as target", func(s *model.Spec) {
			arpOn(s, "infra", 100).ArpIPTargets = []string{"192.168.1.101"}
		}, "adapterGroups[infra].bond.arpIPTargets", `on hypervisor "hv1" the only ARP target is its own management IP`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := production(t)
			tc.mutate(s)
			got := find(model.Validate(s), model.SeverityError, tc.path)
			if len(got) == 0 {
				t.Fatalf("no error at %s; findings: %v", tc.path, model.Validate(s))
			}
			if !strings.Contains(got[0].Message, tc.contains) {
				t.Errorf("error at %s = %q, want it to contain %q", tc.path, got[0].Message, tc.contains)
			}
		})
	}
	t.Run("single hypervisor without targets", func(t *testing.T) {
		s := evaluation(t)
		g := s.InfrastructureGroup()
		arpOn(s, g.Name, 100)
		got := find(model.Validate(s), model.SeverityError, "adapterGroups["+g.Name+"].bond.arpIPTargets")
		if len(got) == 0 || !strings.Contains(got[0].Message, "default ARP targets (the other hypervisors' management IPs) are none") {
			t.Errorf("findings %v, want the error that names the missing default targets", got)
		}
	})
	t.Run("valid", func(t *testing.T) {
		for name, mutate := range map[string]func(s *model.Spec){
			"infrastructure default": func(s *model.Spec) { arpOn(s, "infra", 100) },
			"infrastructure explicit": func(s *model.Spec) {
				b := arpOn(s, "infra", 10000)
				b.ArpIPTargets, b.ArpValidate = []string{"192.168.1.1"}, "active"
			},
			"outside subnet, no check": func(s *model.Spec) {
				b := arpOn(s, "infra", 1)
				b.ArpIPTargets, b.ArpValidate = []string{"10.9.9.9"}, "none"
			},
			"VM group with targets": func(s *model.Spec) { arpOn(s, "vmgroup", 100).ArpIPTargets = []string{"10.0.0.1"} },
		} {
			s := production(t)
			mutate(s)
			if fs := model.Validate(s); fs.HasErrors() {
				t.Errorf("%s: unexpected errors: %v", name, fs.Errors())
			}
		}
	})
}
