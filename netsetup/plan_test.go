package netsetup

import (
	"errors"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/test/testenv"
)

func TestDesiredExample(t *testing.T) {
	hs := desiredExample(t, "hv2")
	if len(hs.Groups) != 2 {
		t.Fatalf("groups: got %d, want 2", len(hs.Groups))
	}
	infra, vm := hs.Groups[0], hs.Groups[1]
	want := GroupState{
		Name: "infra", Infrastructure: true, Bond: "gb-infra", Bridge: "gbr-infra",
		Adapters:    []string{"eno1", "eno2"},
		BondConfig:  BondConfig{Mode: "active-backup", Miimon: 100, Primary: "eno1", PrimaryReselect: "always", NumGratARP: 1, Updelay: model.DefaultUpdelayMs, FailOverMAC: "none", ArpValidate: "none"},
		MTU:         1500,
		PortVLANs:   []VLAN{{VID: 1, PVID: true, Untagged: true}},
		BridgeVLANs: []VLAN{{VID: 1, PVID: true, Untagged: true}},
		Addrs:       []string{"192.168.1.102/24"},
	}
	if diff := cmp.Diff(want, infra); diff != "" {
		t.Errorf("infra (-want +got):\n%s", diff)
	}
	wantVLANs := []VLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 100}, {VID: 200}}
	if !reflect.DeepEqual(vm.PortVLANs, wantVLANs) || vm.BridgeVLANs != nil || vm.Addrs != nil || vm.BondConfig.Primary != "eno3" {
		t.Errorf("vmgroup: got %+v", vm)
	}
	if hs.ManagementBridge != "gbr-infra" || hs.ManagementIP != "192.168.1.102/24" || hs.VIP != "192.168.1.100" {
		t.Errorf("management: %s on %s, VIP %q", hs.ManagementIP, hs.ManagementBridge, hs.VIP)
	}
	if hs.DefaultRoute == nil || *hs.DefaultRoute != (Route{Gateway: "192.168.1.1", Dev: "gbr-infra"}) {
		t.Errorf("default route: %+v", hs.DefaultRoute)
	}
	if got := hs.ManagementLinks(); !reflect.DeepEqual(got, []string{"gb-infra", "gbr-infra", "eno1", "eno2"}) {
		t.Errorf("management links: %v", got)
	}
}

func TestDesiredEvaluationSingleAdapterIsABond(t *testing.T) {
	hs, err := Desired(loadExample(t, "evaluation.yaml"), "hv1")
	if err != nil {
		t.Fatal(err)
	}
	g := hs.Groups[0]
	if g.Bond != "gb-main" || !reflect.DeepEqual(g.Adapters, []string{"enp1s0"}) || g.BondConfig.Primary != "enp1s0" {
		t.Errorf("single-adapter group: %+v", g)
	}
	if !reflect.DeepEqual(g.PortVLANs, []VLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 20}}) {
		t.Errorf("port VLANs: %v", g.PortVLANs)
	}
	if hs.DefaultRoute != nil {
		t.Errorf("no gateway in the spec, but a default route: %+v", hs.DefaultRoute)
	}
}

// TestDesiredUnknownHypervisor: a hypervisor the spec does not have is
// Desired's one error.
func TestDesiredUnknownHypervisor(t *testing.T) {
	_, err := Desired(loadExample(t, "cluster.yaml"), "hv9")
	if want := `hypervisor "hv9" is not in the cluster spec (known: hv1, hv2, hv3)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
}

// TestDesiredNeedsAValidatedSpec: the rules Desired once checked again, in
// its own words, are validation's alone; its callers validate first (the
// CLI's loadSpec), and validation refuses each of these specs.
func TestDesiredNeedsAValidatedSpec(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(s *model.Spec)
		path    string
		message string
	}{
		{"VLAN 1 is native", func(s *model.Spec) { s.Networks[0].VLAN = 1 }, "networks[prod].vlan", "VLAN 1 carries each adapter group's untagged (native) traffic"},
		{"adapter in two groups", func(s *model.Spec) { s.AdapterGroups[1].Adapters["hv1"] = []string{"eno2", "eno4"} }, "adapterGroups[vmgroup].adapters[hv1]", "adapter \"eno2\" of \"hv1\" is already in adapter group \"infra\""},
		{"adapter not listed", func(s *model.Spec) { s.AdapterGroups[1].Adapters["hv1"] = []string{"eno3", "eno9"} }, "adapterGroups[vmgroup].adapters[hv1]", "\"eno9\" is not an adapter of hypervisor \"hv1\""},
		{"no infrastructure here", func(s *model.Spec) { delete(s.AdapterGroups[0].Adapters, "hv1") }, "adapterGroups[infra].adapters[hv1]", "the infrastructure group \"infra\" has no adapters on hypervisor \"hv1\""},
		{"bad management IP", func(s *model.Spec) { s.Hypervisors[0].ManagementIP = "192.168.1.300/24" }, "hypervisors[hv1].managementIP", "is not an address in CIDR form"},
		{"bad VIP", func(s *model.Spec) { s.Cluster.VIP = "192.168.1.x" }, "cluster.vip", "is not an IP address"},
		{"updelay off the miimon grid", func(s *model.Spec) { s.AdapterGroups[1].Bond.UpdelayMs = intp(150) }, "adapterGroups[vmgroup].bond.updelayMs", "updelayMs 150 is not a multiple of miimon (100)"},
		{"miimon that puts the updelay off its grid", func(s *model.Spec) { s.AdapterGroups[0].Bond.Miimon = 300 }, "adapterGroups[infra].bond.updelayMs", "updelayMs 1000 is not a multiple of miimon (300)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := loadExample(t, "cluster.yaml")
			tc.edit(s)
			errs := model.Validate(s).Errors()
			for _, f := range errs {
				if f.Path == tc.path && strings.Contains(f.Message, tc.message) {
					return
				}
			}
			t.Errorf("validation: want an error at %s containing %q, got %v", tc.path, tc.message, errs)
		})
	}
}

func planFor(t *testing.T, f *SimKernel, hs *HostState) *Plan {
	t.Helper()
	obs, err := f.Observe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(hs, obs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanFromScratchGolden(t *testing.T) {
	f := exampleHost()
	p := planFor(t, f, desiredExample(t, "hv1"))
	testenv.Golden(t, "hv1-from-scratch.plan", p.String())
	if !p.Touches([]string{"eno1"}, false) || !p.Route {
		t.Errorf("the plan moves the management IP and route off eno1, so it must say so: touched %v route %v", p.Touched, p.Route)
	}
	// Applying writes exactly the plan's lines.
	if err := Apply(f, p, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Lines, p.Lines()) {
		t.Errorf("kernel writes differ from the plan:\n%s", strings.Join(f.Lines, "\n"))
	}
}

func TestConvergedHostGetsZeroWrites(t *testing.T) {
	for _, example := range []string{"cluster.yaml", "evaluation.yaml"} {
		t.Run(example, func(t *testing.T) {
			spec := loadExample(t, example)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			f := NewSimKernel(hs.Adapters()...)
			if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			c := &Counter{Kernel: f}
			p, err := Converge(c, hs, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Empty() || c.Writes != 0 {
				t.Errorf("converged host: plan %q, %d writes; want none", p.String(), c.Writes)
			}
		})
	}
}

// TestVIPOnTheInfrastructureBridgeIsKept: keepalived adds the cluster VIP
// to the infrastructure bridge of its holder; a re-apply or host status
// there must neither remove it nor call the host unconverged, while any
// other stray address is still removed. (Found by the whole-cluster run:
// the plan on the VIP holder deleted the VIP.)
func TestVIPOnTheInfrastructureBridgeIsKept(t *testing.T) {
	for _, vip := range []string{"192.168.1.100/24", "192.168.1.100/32"} {
		t.Run(vip, func(t *testing.T) {
			f, spec := converged(t)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Do(Op{Kind: OpAddrAdd, Link: "gbr-infra", Addr: vip}); err != nil {
				t.Fatal(err)
			}
			obs, _ := f.Observe()
			p, err := MakePlan(hs, obs)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Empty() {
				t.Errorf("the VIP holder is not converged: %v", p.Lines())
			}
			// .10 sorts before the management IP .101: the plan must
			// know that it is a secondary (added last), not the primary.
			if err := f.Do(Op{Kind: OpAddrAdd, Link: "gbr-infra", Addr: "192.168.1.10/24"}); err != nil {
				t.Fatal(err)
			}
			obs, _ = f.Observe()
			if p, err = MakePlan(hs, obs); err != nil {
				t.Fatal(err)
			}
			if got := p.Lines(); len(got) != 1 || got[0] != "ip addr del 192.168.1.10/24 dev gbr-infra" {
				t.Errorf("a stray address next to the VIP: plan %q, want only its removal", got)
			}
			if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			if obs, _ = f.Observe(); !HasIP(obs.Link("gbr-infra").Addrs, "192.168.1.100") {
				t.Errorf("converging removed the VIP: %v", obs.Link("gbr-infra").Addrs)
			}
		})
	}
}

// TestRestoreLeavesTheVIPAlone: a rollback snapshot records the VIP as
// keepalived's; restoring it neither re-adds a VIP that has moved away
// since (two holders) nor removes one that arrived since.
func TestRestoreLeavesTheVIPAlone(t *testing.T) {
	f, spec := converged(t)
	hs, err := Desired(spec, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	addVIP := func() {
		t.Helper()
		if err := f.Do(Op{Kind: OpAddrAdd, Link: "gbr-infra", Addr: "192.168.1.100/24"}); err != nil {
			t.Fatal(err)
		}
	}
	hasVIP := func() bool {
		obs, _ := f.Observe()
		return contains(obs.Link("gbr-infra").Addrs, "192.168.1.100/24")
	}

	// Saved while this host held the VIP; the VIP moved away since.
	addVIP()
	obs, _ := f.Observe()
	snap := obs.Subset(hs.Adapters())
	snap.KeepAddrs = hs.KeepAddrsByLink()
	if err := f.Do(Op{Kind: OpAddrDel, Link: "gbr-infra", Addr: "192.168.1.100/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(f, snap, nil); err != nil {
		t.Fatal(err)
	}
	if hasVIP() {
		t.Error("restore re-added the VIP that keepalived had moved to another hypervisor")
	}

	// Saved without the VIP; keepalived added it since.
	obs, _ = f.Observe()
	snap = obs.Subset(hs.Adapters())
	snap.KeepAddrs = hs.KeepAddrsByLink()
	addVIP()
	p, err := RestorePlan(snap, func() *Snapshot { o, _ := f.Observe(); return o }())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Errorf("restore plan touches the VIP keepalived added: %v", p.Lines())
	}
}

// TestManagementIPChangeOnTheVIPHolder: the VIP (.100) sorts before the
// old management IP (.101) but is its secondary; deleting .101 takes the
// VIP and the default route with it, which the plan must foresee (a sorted
// snapshot made it think .100 was the primary, and the route was lost).
func TestManagementIPChangeOnTheVIPHolder(t *testing.T) {
	f, spec := converged(t)
	if err := f.Do(Op{Kind: OpAddrAdd, Link: "gbr-infra", Addr: "192.168.1.100/24"}); err != nil {
		t.Fatal(err)
	}
	spec.Hypervisors[0].ManagementIP = "192.168.1.111/24"
	hs, err := Desired(spec, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Converge(f, hs, ApplyOptions{AllowDisruptive: true}); err != nil {
		t.Fatalf("converge: %v", err)
	}
	obs, _ := f.Observe()
	if !HasIP(obs.Link("gbr-infra").Addrs, "192.168.1.111") || obs.DefaultRoute == nil {
		t.Errorf("after the change: addresses %v, default route %+v", obs.Link("gbr-infra").Addrs, obs.DefaultRoute)
	}
}

// TestDesiredCanonicalVIP: the VIP is read as the validator reads it
// (surrounding space allowed), so the planner still recognises it.
func TestDesiredCanonicalVIP(t *testing.T) {
	spec := loadExample(t, "cluster.yaml")
	spec.Cluster.VIP = " 192.168.1.100 "
	hs, err := Desired(spec, "hv1")
	if err != nil || hs.VIP != "192.168.1.100" {
		t.Fatalf("Desired: VIP %q, %v", hs.VIP, err)
	}
}

// converged returns a fake hv1 that gallium-net has already configured.
func converged(t *testing.T) (*SimKernel, *model.Spec) {
	t.Helper()
	spec := loadExample(t, "cluster.yaml")
	hs, err := Desired(spec, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	f := exampleHost()
	if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Lines, f.Writes = nil, 0
	return f, spec
}

func indexes(t *testing.T, f *SimKernel) map[string]int {
	obs, _ := f.Observe()
	out := map[string]int{}
	for _, l := range obs.Links {
		out[l.Name] = l.Index
	}
	return out
}

func TestChangesInPlace(t *testing.T) {
	tests := []struct {
		name string
		edit func(s *model.Spec)
		want []string
	}{
		// The kernel counts updelay in miimon intervals: doubling miimon
		// doubles it, so it is set again.
		{"miimon", func(s *model.Spec) { s.AdapterGroups[0].Bond.Miimon = 200 },
			[]string{"ip link set gb-infra type bond miimon 200", "ip link set gb-infra type bond updelay 1000"}},
		{"updelay", func(s *model.Spec) { s.AdapterGroups[0].Bond.UpdelayMs = intp(200) },
			[]string{"ip link set gb-infra type bond updelay 200"}},
		{"updelay off", func(s *model.Spec) { s.AdapterGroups[1].Bond.UpdelayMs = intp(0) },
			[]string{"ip link set gb-vmgroup type bond updelay 0"}},
		{"downdelay", func(s *model.Spec) { s.AdapterGroups[1].Bond.DowndelayMs = 300 },
			[]string{"ip link set gb-vmgroup type bond downdelay 300"}},
		{"miimon and delays together", func(s *model.Spec) {
			b := &s.AdapterGroups[1].Bond
			b.Miimon, b.UpdelayMs, b.DowndelayMs, b.PeerNotifyDelayMs = 50, intp(600), 150, 100
		}, []string{
			"ip link set gb-vmgroup type bond miimon 50", // updelay 1000 -> 500
			"ip link set gb-vmgroup type bond peer_notif_delay 100",
			"ip link set gb-vmgroup type bond updelay 600",
			"ip link set gb-vmgroup type bond downdelay 150",
		}},
		{"primary", func(s *model.Spec) { s.AdapterGroups[1].Bond.Primary = "eno4" },
			[]string{"ip link set gb-vmgroup type bond primary eno4"}},
		{"bond tuning", func(s *model.Spec) {
			s.AdapterGroups[1].Bond.PrimaryReselect = "failure"
			s.AdapterGroups[1].Bond.NumGratARP = 3
			s.AdapterGroups[1].Bond.PeerNotifyDelayMs = 200
		}, []string{
			"ip link set gb-vmgroup type bond primary_reselect failure",
			"ip link set gb-vmgroup type bond num_grat_arp 3",
			"ip link set gb-vmgroup type bond peer_notif_delay 200",
		}},
		{"MTU", func(s *model.Spec) { s.AdapterGroups[1].MTU = 9000 },
			[]string{"ip link set gb-vmgroup mtu 9000", "ip link set gbr-vmgroup mtu 9000"}},
		{"add a network", func(s *model.Spec) {
			s.Networks = append(s.Networks, model.Network{Name: "test", AdapterGroup: "vmgroup", VLAN: 300})
		}, []string{"bridge vlan add dev gb-vmgroup vid 300"}},
		{"remove a network", func(s *model.Spec) { s.Networks = s.Networks[1:] },
			[]string{"bridge vlan del dev gb-vmgroup vid 100"}},
		{"untagged network removed", func(s *model.Spec) { s.Networks = s.Networks[:2] },
			[]string{"bridge vlan del dev gb-vmgroup vid 1"}},
		{"management IP", func(s *model.Spec) { s.Hypervisors[0].ManagementIP = "192.168.1.111/24" },
			[]string{"ip addr del 192.168.1.101/24 dev gbr-infra", "ip addr add 192.168.1.111/24 dev gbr-infra", "ip route replace default via 192.168.1.1 dev gbr-infra"}},
		{"gateway", func(s *model.Spec) { s.Cluster.Gateway = "192.168.1.254" },
			[]string{"ip route replace default via 192.168.1.254 dev gbr-infra"}},
		{"adapter moves between groups", func(s *model.Spec) {
			s.AdapterGroups[0].Adapters["hv1"] = []string{"eno1", "eno2", "eno3"}
			s.AdapterGroups[1].Adapters["hv1"] = []string{"eno4"}
			s.AdapterGroups[1].Bond.Primary = "eno4"
		}, []string{
			"ip link set eno3 nomaster",
			"ip link set eno3 master gb-infra",
			"ip link set gb-vmgroup type bond primary eno4",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, spec := converged(t)
			before := indexes(t, f)
			tc.edit(spec)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			p, err := Converge(f, hs, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Lines(), tc.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", p, strings.Join(tc.want, "\n"))
			}
			if p.Disruptive() {
				t.Errorf("an in-place change must not be disruptive")
			}
			obs, _ := f.Observe()
			if again, err := MakePlan(hs, obs); err != nil || !again.Empty() {
				t.Errorf("not converged after the change: %v\n%s", err, again)
			}
			for _, g := range hs.Groups {
				if diff := cmp.Diff(g.BondConfig, *obs.Link(g.Bond).Bond); diff != "" {
					t.Errorf("%s reads back (-want +got):\n%s", g.Bond, diff)
				}
			}
			after := indexes(t, f)
			for _, l := range []string{"gb-infra", "gbr-infra", "gb-vmgroup", "gbr-vmgroup"} {
				if before[l] != after[l] {
					t.Errorf("%s: ifindex %d -> %d; a setting change must keep the link", l, before[l], after[l])
				}
			}
		})
	}
}

// seed runs setup writes on f and forgets them.
func seed(t *testing.T, f *SimKernel, ops ...Op) {
	t.Helper()
	for _, op := range ops {
		if err := f.Do(op); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	f.Lines, f.Writes = nil, 0
}

func TestDisruptiveStepsNeedPermission(t *testing.T) {
	tests := []struct {
		name  string
		setup []Op
		want  string
	}{
		{"bond mode", []Op{
			{Kind: OpAddBond, Link: "gb-infra", Bond: &BondConfig{Mode: "balance-rr", Miimon: 100, PrimaryReselect: "always", NumGratARP: 1}},
			{Kind: OpSetUp, Link: "eno1"}, {Kind: OpSetMaster, Link: "eno1", Master: "gb-infra"},
		}, "ip link del gb-infra  # DISRUPTIVE: bond mode balance-rr -> active-backup needs the bond re-created"},
		{"fail_over_mac with slaves", []Op{
			{Kind: OpAddBond, Link: "gb-infra", Bond: &BondConfig{Mode: "active-backup", Miimon: 100, Primary: "eno1", PrimaryReselect: "always", NumGratARP: 1, FailOverMAC: "active"}},
			{Kind: OpSetUp, Link: "eno1"}, {Kind: OpSetMaster, Link: "eno1", Master: "gb-infra"},
		}, "ip link set eno1 nomaster  # DISRUPTIVE: fail_over_mac can only change on a bond without slaves"},
		{"wrong kind", []Op{
			{Kind: OpAddBridge, Link: "gb-infra"},
		}, "ip link del gb-infra  # DISRUPTIVE: gb-infra is a bridge, gallium-net needs a bond"},
		{"group removed from the spec", []Op{
			{Kind: OpAddBond, Link: "gb-old", Bond: &BondConfig{Mode: "active-backup"}},
		}, "ip link del gb-old  # DISRUPTIVE: not in the spec any more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := exampleHost()
			seed(t, f, tc.setup...)
			hs := desiredExample(t, "hv1")
			p := planFor(t, f, hs)
			if !p.Disruptive() || p.Lines()[0] != tc.want {
				t.Fatalf("first step %q, want %q; plan:\n%s", p.Lines()[0], tc.want, p)
			}
			if err := Apply(f, p, ApplyOptions{}); !errors.Is(err, ErrDisruptive) || f.Writes != 0 {
				t.Fatalf("without AllowDisruptive: err %v, %d writes; want ErrDisruptive and no writes", err, f.Writes)
			}
			if _, err := Converge(f, hs, ApplyOptions{AllowDisruptive: true}); err != nil {
				t.Fatalf("with AllowDisruptive: %v", err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		host   func() *SimKernel
		errHas string
	}{
		{"foreign master", func() *SimKernel {
			f := exampleHost()
			f.Do(Op{Kind: OpAddBridge, Link: "br0"})
			f.Do(Op{Kind: OpSetMaster, Link: "eno2", Master: "br0"})
			return f
		}, "hypervisor hv1: adapter eno2 is enslaved to br0, which gallium-net does not manage; release it first (ip link set eno2 nomaster)"},
		{"missing adapter", func() *SimKernel { return NewSimKernel("eno1", "eno2", "eno3") },
			"hypervisor hv1: adapter eno4 does not exist on this host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs, _ := tc.host().Observe()
			_, err := MakePlan(desiredExample(t, "hv1"), obs)
			var pe *PlanError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("got %v, want a PlanError containing %q", err, tc.errHas)
			}
		})
	}
}

func TestForeignLinksAreNeverTouched(t *testing.T) {
	f := exampleHost()
	f.AddDevice("eno5")
	seed(t, f,
		Op{Kind: OpAddBridge, Link: "br0"}, Op{Kind: OpSetMaster, Link: "eno5", Master: "br0"},
		Op{Kind: OpAddBridge, Link: "virbr0"}, Op{Kind: OpAddrAdd, Link: "virbr0", Addr: "192.168.122.1/24"},
		Op{Kind: OpAddBond, Link: "bond0", Bond: &BondConfig{Mode: "802.3ad"}},
	)
	before, _ := f.Observe()
	if _, err := Converge(f, desiredExample(t, "hv1"), ApplyOptions{AllowDisruptive: true}); err != nil {
		t.Fatal(err)
	}
	after, _ := f.Observe()
	for _, name := range []string{"br0", "eno5", "virbr0", "bond0"} {
		b, a := *before.Link(name), *after.Link(name)
		b.Carrier, a.Carrier, b.OperState, a.OperState = false, false, "", ""
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s changed:\n%+v\n%+v", name, b, a)
		}
	}
	for _, line := range f.Lines {
		for _, name := range []string{"br0", "eno5", "virbr0", "bond0"} {
			if strings.Contains(line, " "+name+" ") || strings.HasSuffix(line, " "+name) {
				t.Errorf("wrote to a foreign link: %s", line)
			}
		}
	}
}

// scenarios are starting hosts and specs whose plans the rollback test
// breaks at every step.
func scenarios(t *testing.T) map[string]func() (*SimKernel, *HostState) {
	edit := func(fn func(s *model.Spec)) func() (*SimKernel, *HostState) {
		return func() (*SimKernel, *HostState) {
			f, spec := converged(t)
			fn(spec)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			return f, hs
		}
	}
	return map[string]func() (*SimKernel, *HostState){
		"from scratch": func() (*SimKernel, *HostState) { return exampleHost(), desiredExample(t, "hv1") },
		"many changes": edit(func(s *model.Spec) {
			s.AdapterGroups[0].Bond.Miimon = 50
			s.AdapterGroups[1].MTU = 9000
			s.Networks = append(s.Networks[1:], model.Network{Name: "n3", AdapterGroup: "vmgroup", VLAN: 300})
			s.Hypervisors[0].ManagementIP = "192.168.1.121/24"
			s.Cluster.Gateway = "192.168.1.254"
		}),
		"bond delays": edit(func(s *model.Spec) {
			b := &s.AdapterGroups[1].Bond
			b.Miimon, b.UpdelayMs, b.DowndelayMs = 200, intp(400), 200
			s.AdapterGroups[0].Bond.UpdelayMs = intp(0)
		}),
		"to ARP monitoring": edit(func(s *model.Spec) { arpMonitoring(s, 100) }),
		"ARP monitoring from scratch": func() (*SimKernel, *HostState) {
			spec := loadExample(t, "cluster.yaml")
			arpMonitoring(spec, 100)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			return exampleHost(), hs
		},
		"back to MII monitoring": func() (*SimKernel, *HostState) {
			f, spec := convergedARP(t)
			b := &spec.AdapterGroups[0].Bond
			b.ArpIntervalMs, b.ArpValidate = 0, ""
			model.SetDefaults(spec)
			hs, err := Desired(spec, "hv1")
			if err != nil {
				t.Fatal(err)
			}
			return f, hs
		},
		"adapter moves": edit(func(s *model.Spec) {
			s.AdapterGroups[0].Adapters["hv1"] = []string{"eno1", "eno2", "eno3"}
			s.AdapterGroups[1].Adapters["hv1"] = []string{"eno4"}
		}),
		"group removed": edit(func(s *model.Spec) {
			delete(s.AdapterGroups[1].Adapters, "hv1")
		}),
		"bond mode": func() (*SimKernel, *HostState) {
			f := exampleHost()
			seed(t, f,
				Op{Kind: OpAddBond, Link: "gb-infra", Bond: &BondConfig{Mode: "balance-rr", Miimon: 100, PrimaryReselect: "always", NumGratARP: 1}},
				Op{Kind: OpSetUp, Link: "eno2"}, Op{Kind: OpSetMaster, Link: "eno2", Master: "gb-infra"},
				Op{Kind: OpSetUp, Link: "gb-infra", On: true})
			return f, desiredExample(t, "hv1")
		},
	}
}

func TestFailureAtEachStepRestoresTheHost(t *testing.T) {
	for name, mk := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			f, hs := mk()
			p := planFor(t, f, hs)
			if p.Empty() {
				t.Fatal("empty plan")
			}
			for i := range p.Steps {
				f, hs := mk()
				before, _ := f.Observe()
				p := planFor(t, f, hs)
				f.FailAt = i + 1
				err := Apply(f, p, ApplyOptions{AllowDisruptive: true})
				var ae *ApplyError
				if !errors.As(err, &ae) || ae.Step != i || ae.UndoErr != nil {
					t.Fatalf("fail at step %d (%s): got %v", i+1, p.Steps[i].Cmd, err)
				}
				after, _ := f.Observe()
				if !reflect.DeepEqual(after.Restorable(), before.Restorable()) {
					t.Errorf("fail at step %d (%s): host not restored\nbefore %+v\nafter  %+v", i+1, p.Steps[i].Cmd, before.Restorable(), after.Restorable())
				}
			}
		})
	}
}

func TestRestorePlanReturnsToSnapshot(t *testing.T) {
	for name, mk := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			f, hs := mk()
			before, _ := f.Observe()
			if _, err := Converge(f, hs, ApplyOptions{AllowDisruptive: true}); err != nil {
				t.Fatal(err)
			}
			snap := before.Subset(hs.Adapters())
			if _, err := Restore(f, snap, nil); err != nil {
				t.Fatal(err)
			}
			after, _ := f.Observe()
			got := after.Subset(hs.Adapters()).Restorable()
			if diff := cmp.Diff(snap.Restorable(), got); diff != "" {
				t.Errorf("restore (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKernelWithoutBridgeVLANsIsRefused(t *testing.T) {
	f := exampleHost()
	f.NoVLANs = true
	obs, _ := f.Observe()
	_, err := MakePlan(desiredExample(t, "hv1"), obs)
	if err == nil || !strings.Contains(err.Error(), "no bridge VLAN filtering") {
		t.Fatalf("got %v", err)
	}
}

// TestPreviewOnAKernelWithoutBondingOrVLANs: on such a kernel `host plan`
// printed nothing and `host status` said "1 step pending" without why
// (issue 13 #5). Preview gives the plan a full kernel would run, with the
// reason apply refuses it; MakePlan (apply) still refuses.
func TestPreviewOnAKernelWithoutBondingOrVLANs(t *testing.T) {
	full, _ := exampleHost().Observe()
	want, err := MakePlan(desiredExample(t, "hv1"), full)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		noBonds, noVLs bool
		lacks          []string
	}{
		{"no bonding", true, false, []string{"no bonding driver (CONFIG_BONDING)"}},
		{"no VLAN filtering", false, true, []string{"no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"}},
		{"neither", true, true, []string{"no bonding driver", "and no bridge VLAN filtering"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := exampleHost()
			f.NoBonds, f.NoVLANs = tc.noBonds, tc.noVLs
			obs, _ := f.Observe()
			p, err := Preview(desiredExample(t, "hv1"), obs)
			if err != nil {
				t.Fatalf("preview: %v", err)
			}
			if diff := cmp.Diff(want.Lines(), p.Lines()); diff != "" {
				t.Errorf("preview steps (-full kernel +this one):\n%s", diff)
			}
			for _, l := range tc.lacks {
				if !strings.Contains(p.Refused, l) || !strings.Contains(p.Refused, "apply refuses this plan") {
					t.Errorf("Refused = %q, want it to say %q and that apply refuses", p.Refused, l)
				}
			}
			if _, err := MakePlan(desiredExample(t, "hv1"), obs); err == nil || err.Error() != p.Refused {
				t.Errorf("MakePlan: %v, want the refusal %q", err, p.Refused)
			}
			st := Status(desiredExample(t, "hv1"), obs, func(string) AdapterFacts { return AdapterFacts{} })
			got := struct {
				Converged bool
				Pending   int
				Blocked   string
			}{st.Converged, len(st.Pending), st.Blocked}
			if got.Converged || got.Pending != len(want.Steps) || got.Blocked != p.Refused {
				t.Errorf("status: %+v, want %d steps pending, blocked by %q", got, len(want.Steps), p.Refused)
			}
		})
	}
	// The simulated kernel refuses a bond like a kernel without the driver.
	f := exampleHost()
	f.NoBonds = true
	if err := f.Do(want.Steps[0].Op); err == nil || !strings.Contains(err.Error(), "no bonding driver") {
		t.Errorf("simulated kernel without bonding: %s: %v", want.Steps[0].Cmd, err)
	}
}

func intp(v int) *int { return &v }

// TestFakeBondDelaysCountMiimonIntervals pins the kernel behaviour the
// planner relies on (TestLabBuildFromSpecThenConvergedAndInPlace checks it
// on the real kernel): delays round down to a multiple of miimon and scale
// with it, and need miimon.
func TestFakeBondDelaysCountMiimonIntervals(t *testing.T) {
	f := NewSimKernel("eth0")
	bond := func() *BondConfig {
		s, _ := f.Observe()
		return s.Link("gb-x").Bond
	}
	seed(t, f, Op{Kind: OpAddBond, Link: "gb-x", Bond: &BondConfig{Mode: BondMode, Miimon: 100, Updelay: 1050, Downdelay: 200, PeerNotifyDelay: 100}})
	if b := bond(); b.Updelay != 1000 || b.Downdelay != 200 || b.PeerNotifyDelay != 100 {
		t.Errorf("created: %+v, want updelay rounded down to 1000", b)
	}
	for _, tc := range []struct {
		opt, value              string
		updelay, downdelay, pnd int
	}{
		{"miimon", "50", 500, 100, 50},
		{"updelay", "275", 250, 100, 50},
		{"miimon", "200", 1000, 400, 200},
		{"downdelay", "0", 1000, 0, 200},
	} {
		seed(t, f, Op{Kind: OpSetBond, Link: "gb-x", Option: tc.opt, Value: tc.value})
		if b := bond(); b.Updelay != tc.updelay || b.Downdelay != tc.downdelay || b.PeerNotifyDelay != tc.pnd {
			t.Errorf("after %s %s: updelay %d downdelay %d peer_notif_delay %d, want %d %d %d", tc.opt, tc.value, b.Updelay, b.Downdelay, b.PeerNotifyDelay, tc.updelay, tc.downdelay, tc.pnd)
		}
	}
	seed(t, f, Op{Kind: OpSetBond, Link: "gb-x", Option: "miimon", Value: "0"})
	if err := f.Do(Op{Kind: OpSetBond, Link: "gb-x", Option: "updelay", Value: "100"}); !errors.Is(err, syscall.EPERM) {
		t.Errorf("updelay without miimon: got %v, want EPERM", err)
	}
}

// TestPlanRefusesABondItCannotConverge: a delay off the miimon grid (which
// Desired refuses, so only a hand-made state has one) is rounded down by
// the kernel on every write; the planner stops with an error instead of
// writing it forever.
func TestPlanRefusesABondItCannotConverge(t *testing.T) {
	f, spec := converged(t)
	hs, err := Desired(spec, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	hs.Groups[1].BondConfig.Updelay = 150
	obs, _ := f.Observe()
	_, err = MakePlan(hs, obs)
	if err == nil || !strings.Contains(err.Error(), "bond gb-vmgroup does not converge") || !strings.Contains(err.Error(), "updelay 150") {
		t.Fatalf("got %v, want the planner to give up on gb-vmgroup's updelay", err)
	}
}
