package netsetup

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/model"
)

// arpMonitoring switches the example spec's infrastructure group to ARP
// monitoring as a spec that says only arpIntervalMs would (no miimon, no
// delays; the default targets and arpValidate).
func arpMonitoring(s *model.Spec, ms int) {
	b := &s.AdapterGroups[0].Bond
	b.Miimon, b.UpdelayMs, b.DowndelayMs, b.PeerNotifyDelayMs, b.ArpIntervalMs = 0, nil, 0, 0, ms
	model.SetDefaults(s)
}

// convergedARP is converged with the infrastructure group on ARP
// monitoring.
func convergedARP(t *testing.T) (*SimKernel, *model.Spec) {
	t.Helper()
	f, spec := converged(t)
	arpMonitoring(spec, 100)
	hs, err := Desired(spec, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Lines, f.Writes = nil, 0
	return f, spec
}

func TestDesiredARPMonitoringPerHost(t *testing.T) {
	spec := loadExample(t, "cluster.yaml")
	arpMonitoring(spec, 100)
	if fs := model.Validate(spec); fs.HasErrors() {
		t.Fatalf("spec: %v", fs.Errors())
	}
	for hv, targets := range map[string][]string{
		"hv1": {"192.168.1.102", "192.168.1.103"},
		"hv2": {"192.168.1.101", "192.168.1.103"},
	} {
		hs, err := Desired(spec, hv)
		if err != nil {
			t.Fatal(err)
		}
		want := BondConfig{Mode: "active-backup", Primary: "eno1", PrimaryReselect: "always", NumGratARP: 1, FailOverMAC: "none",
			ArpInterval: 100, ArpIPTargets: targets, ArpValidate: "all"}
		if diff := cmp.Diff(want, hs.Groups[0].BondConfig); diff != "" {
			t.Errorf("%s infra bond (-want +got):\n%s", hv, diff)
		}
		if vm := hs.Groups[1].BondConfig; vm.ArpInterval != 0 || vm.ArpIPTargets != nil || vm.Miimon != 100 || vm.ArpValidate != "none" {
			t.Errorf("%s vmgroup bond keeps MII monitoring: %+v", hv, vm)
		}
	}
}

// TestARPMonitoringInPlace switches a converged host's infrastructure bond
// from MII to ARP monitoring, changes its targets, and switches back: each
// in place (same ifindex, no disruptive step), in the order the kernel
// needs, and converged after.
func TestARPMonitoringInPlace(t *testing.T) {
	check := func(t *testing.T, f *SimKernel, spec *model.Spec, want []string) {
		t.Helper()
		before := indexes(t, f)
		hs, err := Desired(spec, "hv1")
		if err != nil {
			t.Fatal(err)
		}
		p, err := Converge(f, hs, ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, p.Lines()); diff != "" {
			t.Errorf("plan (-want +got):\n%s", diff)
		}
		if p.Disruptive() {
			t.Errorf("switching the link monitor must not be disruptive")
		}
		obs, _ := f.Observe()
		if again, err := MakePlan(hs, obs); err != nil || !again.Empty() {
			t.Errorf("not converged: %v\n%s", err, again)
		}
		if diff := cmp.Diff(hs.Groups[0].BondConfig, *obs.Link("gb-infra").Bond); diff != "" {
			t.Errorf("gb-infra reads back (-want +got):\n%s", diff)
		}
		if after := indexes(t, f); after["gb-infra"] != before["gb-infra"] {
			t.Errorf("gb-infra ifindex %d -> %d: the bond must be changed in place", before["gb-infra"], after["gb-infra"])
		}
	}
	t.Run("MII to ARP", func(t *testing.T) {
		f, spec := converged(t)
		arpMonitoring(spec, 100)
		check(t, f, spec, []string{
			// The delays go while miimon still runs, the targets and
			// the validation before the interval that starts the monitor.
			"ip link set gb-infra type bond updelay 0",
			"ip link set gb-infra type bond arp_ip_target 192.168.1.102,192.168.1.103",
			"ip link set gb-infra type bond arp_validate all",
			"ip link set gb-infra type bond arp_interval 100",
		})
	})
	t.Run("targets and interval", func(t *testing.T) {
		f, spec := convergedARP(t)
		b := &spec.AdapterGroups[0].Bond
		b.ArpIntervalMs, b.ArpIPTargets, b.ArpValidate = 200, []string{"192.168.1.1", "192.168.1.103"}, "active"
		check(t, f, spec, []string{
			"ip link set gb-infra type bond arp_ip_target 192.168.1.1,192.168.1.103",
			"ip link set gb-infra type bond arp_validate active",
			"ip link set gb-infra type bond arp_interval 200",
		})
	})
	t.Run("ARP to MII", func(t *testing.T) {
		f, spec := convergedARP(t)
		b := &spec.AdapterGroups[0].Bond
		b.ArpIntervalMs, b.ArpValidate = 0, ""
		model.SetDefaults(spec)
		check(t, f, spec, []string{
			// miimon stops the ARP monitor (and resets arp_validate);
			// the targets go once nothing uses them.
			"ip link set gb-infra type bond miimon 100",
			`ip link set gb-infra type bond arp_ip_target ""`,
			"ip link set gb-infra type bond updelay 1000",
		})
	})
}

// TestSimKernelLinkMonitors pins the kernel behaviour the planner relies
// on: one monitor per bond.
func TestSimKernelLinkMonitors(t *testing.T) {
	f := NewSimKernel("eno1")
	seed(t, f, Op{Kind: OpAddBond, Link: "b", Bond: &BondConfig{Mode: BondMode, Miimon: 100, Updelay: 500, PrimaryReselect: "always"}})
	bond := func() *BondConfig { s, _ := f.Observe(); return s.Link("b").Bond }
	for _, op := range []Op{
		{Kind: OpSetBond, Link: "b", Option: "arp_ip_target", Value: "10.0.0.1"},
		{Kind: OpSetBond, Link: "b", Option: "arp_validate", Value: "all"},
		{Kind: OpSetBond, Link: "b", Option: "arp_interval", Value: "100"},
	} {
		if err := f.Do(op); err != nil {
			t.Fatal(err)
		}
	}
	if b := bond(); b.Miimon != 0 || b.Updelay != 0 || b.ArpInterval != 100 || b.ArpValidate != "all" {
		t.Errorf("arp_interval on a MII bond: %+v, want miimon and updelay 0", b)
	}
	if err := f.Do(Op{Kind: OpSetBond, Link: "b", Option: "updelay", Value: "100"}); err == nil || !strings.Contains(err.Error(), "MII monitoring is disabled") {
		t.Errorf("updelay without miimon: %v, want the kernel's EPERM", err)
	}
	if err := f.Do(Op{Kind: OpSetBond, Link: "b", Option: "miimon", Value: "100"}); err != nil {
		t.Fatal(err)
	}
	if b := bond(); b.Miimon != 100 || b.ArpInterval != 0 || b.ArpValidate != "none" || len(b.ArpIPTargets) != 1 {
		t.Errorf("miimon on an ARP bond: %+v, want arp_interval 0, arp_validate none, the target kept", b)
	}
	for _, bad := range []Op{
		{Kind: OpSetBond, Link: "b", Option: "arp_validate", Value: "most"},
		{Kind: OpSetBond, Link: "b", Option: "arp_ip_target", Value: "fd00::1"},
		{Kind: OpAddBond, Link: "c", Bond: &BondConfig{Mode: BondMode, Miimon: 100, ArpInterval: 100}},
	} {
		if err := f.Do(bad); err == nil {
			t.Errorf("%s: accepted, the kernel refuses it", bad)
		}
	}
}

func TestOpStringARPBond(t *testing.T) {
	op := Op{Kind: OpAddBond, Link: "gb-infra", Bond: &BondConfig{Mode: BondMode, PrimaryReselect: "always", NumGratARP: 1,
		ArpInterval: 100, ArpIPTargets: []string{"192.168.1.103", "192.168.1.102"}, ArpValidate: "all"}}
	want := "ip link add gb-infra type bond mode active-backup arp_interval 100 arp_ip_target 192.168.1.102,192.168.1.103 arp_validate all primary_reselect always num_grat_arp 1"
	if got := op.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
