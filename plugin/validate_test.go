package plugin

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// loadExample parses one of the examples/ specs; each call returns a fresh
// copy that a test may change.
func loadExample(t testing.TB, name string) *Spec {
	t.Helper()
	data, err := os.ReadFile("../examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data, name)
	if err != nil {
		t.Fatalf("examples/%s: %v", name, err)
	}
	return s
}

func production(t testing.TB) *Spec { return loadExample(t, "cluster.yaml") }
func evaluation(t testing.TB) *Spec { return loadExample(t, "evaluation.yaml") }

// find returns the findings at path with severity sev.
func find(fs Findings, sev Severity, path string) Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == sev && f.Path == path {
			out = append(out, f)
		}
	}
	return out
}

func TestExamplesValidate(t *testing.T) {
	t.Run("production", func(t *testing.T) {
		fs := Validate(production(t))
		for _, f := range fs {
			t.Errorf("examples/cluster.yaml: unexpected finding: %s", f)
		}
	})
	t.Run("evaluation", func(t *testing.T) {
		fs := Validate(evaluation(t))
		if fs.HasErrors() {
			t.Errorf("examples/evaluation.yaml has errors: %v", fs.Errors())
		}
		// Only the evaluation warning: one per hypervisor that is not fit
		// for production, saying so.
		if len(fs) != 1 {
			t.Fatalf("want exactly the evaluation warning, got %d findings: %v", len(fs), fs)
		}
		f := fs[0]
		if f.Severity != SeverityWarning || f.Path != "hypervisors[hv1]" || !strings.Contains(f.Message, "not supported for production") {
			t.Errorf("want the evaluation warning at hypervisors[hv1], got %s", f)
		}
	})
}

// rule is one validation case: a change to a valid spec that breaks one
// rule, and the finding it must give.
type rule struct {
	name string
	eval bool // start from the evaluation example instead of production
	mod  func(s *Spec)
	sev  Severity
	path string
	// phrase must occur in the finding's message.
	phrase string
}

func hv(s *Spec, name string) *Hypervisor        { return s.Hypervisor(name) }
func grp(s *Spec, name string) *AdapterGroup     { return s.Group(name) }
func netw(s *Spec, name string) *Network         { return s.Network(name) }
func prof(s *Spec, name string) *HardwareProfile { return s.Profile(name) }
func intp(v int) *int                            { return &v }

var ruleCases = []rule{
	// cluster name
	{"cluster name missing", false, func(s *Spec) { s.Cluster.Name = "" }, SeverityError, "cluster.name", "has no name"},
	{"cluster name not a DNS label", false, func(s *Spec) { s.Cluster.Name = "Lab_1" }, SeverityError, "cluster.name", "DNS label"},
	{"cluster name too long", false, func(s *Spec) { s.Cluster.Name = strings.Repeat("a", 64) }, SeverityError, "cluster.name", "longer than 63"},
	{"cluster name ends with dash", false, func(s *Spec) { s.Cluster.Name = "lab-" }, SeverityError, "cluster.name", "starting and ending with a letter or digit"},

	// subnet
	{"subnet missing", false, func(s *Spec) { s.Cluster.Subnet = "" }, SeverityError, "cluster.subnet", "no management subnet"},
	{"subnet malformed", false, func(s *Spec) { s.Cluster.Subnet = "192.168.1/24" }, SeverityError, "cluster.subnet", "not a subnet in CIDR form"},
	{"subnet without prefix length", false, func(s *Spec) { s.Cluster.Subnet = "192.168.1.0" }, SeverityError, "cluster.subnet", "add the prefix length"},
	{"subnet with host bits", false, func(s *Spec) { s.Cluster.Subnet = "192.168.1.7/24" }, SeverityError, "cluster.subnet", "write the network address, 192.168.1.0/24"},
	{"subnet too small", false, func(s *Spec) { s.Cluster.Subnet = "192.168.1.100/31" }, SeverityError, "cluster.subnet", "too small"},
	// 3 hypervisors, the VIP and the gateway need 5 addresses: a /29 (the
	// advice was "at most /30", which holds 2).
	{"subnet /32 advice fits the cluster", false, func(s *Spec) { s.Cluster.Subnet = "192.168.1.100/32" }, SeverityError, "cluster.subnet", "needs 5 (3 hypervisor(s), the VIP and the gateway): use a prefix of at most /29"},
	{"subnet /30 too small for 3 hypervisors", false, func(s *Spec) {
		s.Cluster.Subnet, s.Cluster.Gateway = "192.168.1.100/30", ""
	}, SeverityError, "cluster.subnet", "needs 4 (3 hypervisor(s) and the VIP): use a prefix of at most /29"},
	// IPv6 management is refused, naming each missing part (issue 13 #1).
	{"IPv6 subnet", false, func(s *Spec) { s.Cluster.Subnet = "fd00:1::/64" }, SeverityError, "cluster.subnet", "IPv6 management is not supported: host apply observes and manages only the IPv4 default route"},
	{"IPv6 management IP (dual stack)", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "fd00:1::2/64" }, SeverityError, "hypervisors[hv2].managementIP", "unsolicited neighbour advertisements"},
	{"IPv6 VIP", false, func(s *Spec) { s.Cluster.VIP = "fd00:1::100" }, SeverityError, "cluster.vip", "keepalived configuration holds an IPv4 VIP only"},
	{"IPv6 everywhere: the addresses point to the subnet's finding", false, func(s *Spec) {
		s.Cluster.Subnet, s.Cluster.VIP = "fd00:1::/64", "fd00:1::100"
	}, SeverityError, "cluster.vip", "IPv6 management is not supported (see cluster.subnet)"},
	{"IPv6 gateway", false, func(s *Spec) { s.Cluster.Gateway = "fd00:1::1" }, SeverityError, "cluster.gateway", "IPv4 default route"},

	// management IPs
	{"management IP missing", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "" }, SeverityError, "hypervisors[hv2].managementIP", "no management IP"},
	{"management IP malformed", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.1.300/24" }, SeverityError, "hypervisors[hv2].managementIP", "not an address in CIDR form"},
	{"management IP without prefix length", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.1.102" }, SeverityError, "hypervisors[hv2].managementIP", "add /24"},
	{"management IP prefix length differs", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.1.102/16" }, SeverityError, "hypervisors[hv2].managementIP", "write 192.168.1.102/24"},
	{"management IP outside subnet", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.2.102/24" }, SeverityError, "hypervisors[hv2].managementIP", "outside the management subnet"},
	{"management IP is network address", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.1.0/24" }, SeverityError, "hypervisors[hv2].managementIP", "network address"},
	{"management IP is broadcast", false, func(s *Spec) { hv(s, "hv2").ManagementIP = "192.168.1.255/24" }, SeverityError, "hypervisors[hv2].managementIP", "broadcast address"},
	{"management IPs not distinct", false, func(s *Spec) { hv(s, "hv3").ManagementIP = "192.168.1.101/24" }, SeverityError, "hypervisors[hv3].managementIP", `also the management IP of "hv1"`},

	// VIP
	{"VIP missing", false, func(s *Spec) { s.Cluster.VIP = "" }, SeverityError, "cluster.vip", "no virtual IP"},
	{"VIP malformed", false, func(s *Spec) { s.Cluster.VIP = "vip.example" }, SeverityError, "cluster.vip", "not an IP address"},
	{"VIP with prefix length", false, func(s *Spec) { s.Cluster.VIP = "192.168.1.100/24" }, SeverityError, "cluster.vip", "write the bare address, 192.168.1.100"},
	{"VIP outside subnet", false, func(s *Spec) { s.Cluster.VIP = "10.0.0.1" }, SeverityError, "cluster.vip", "outside the management subnet"},
	{"VIP is broadcast", false, func(s *Spec) { s.Cluster.VIP = "192.168.1.255" }, SeverityError, "cluster.vip", "broadcast address"},
	{"VIP is network address", false, func(s *Spec) { s.Cluster.VIP = "192.168.1.0" }, SeverityError, "cluster.vip", "network address"},
	{"VIP equals a management IP", false, func(s *Spec) { s.Cluster.VIP = "192.168.1.102" }, SeverityError, "cluster.vip", `also the management IP of "hv2"`},

	// gateway
	{"gateway malformed", false, func(s *Spec) { s.Cluster.Gateway = "router" }, SeverityError, "cluster.gateway", "not an IP address"},
	{"gateway outside subnet", false, func(s *Spec) { s.Cluster.Gateway = "192.168.7.1" }, SeverityError, "cluster.gateway", "outside the management subnet"},
	{"gateway equals VIP", false, func(s *Spec) { s.Cluster.Gateway = "192.168.1.100" }, SeverityError, "cluster.gateway", "also the cluster VIP"},
	{"gateway equals management IP", false, func(s *Spec) { s.Cluster.Gateway = "192.168.1.103" }, SeverityError, "cluster.gateway", `also the management IP of "hv3"`},

	// MAC prefix
	{"MAC prefix multicast", false, func(s *Spec) { s.Cluster.MACPrefix = "53:54:00" }, SeverityError, "cluster.macPrefix", "multicast"},
	{"MAC prefix starts with fe", false, func(s *Spec) { s.Cluster.MACPrefix = "fe:54:00" }, SeverityError, "cluster.macPrefix", "libvirt refuses"},
	{"MAC prefix is a whole MAC", false, func(s *Spec) { s.Cluster.MACPrefix = "52:54:00:12:34:56" }, SeverityError, "cluster.macPrefix", "1 to 5 bytes"},
	{"MAC prefix too long", false, func(s *Spec) { s.Cluster.MACPrefix = "52:54:00:12:34:56:78" }, SeverityError, "cluster.macPrefix", "more than 5 bytes"},
	{"MAC prefix not hex", false, func(s *Spec) { s.Cluster.MACPrefix = "52:5g:00" }, SeverityError, "cluster.macPrefix", "not hex bytes"},

	// MTU
	{"cluster MTU too small", false, func(s *Spec) { s.Cluster.MTU = 67 }, SeverityError, "cluster.mtu", "out of range"},
	{"cluster MTU too large", false, func(s *Spec) { s.Cluster.MTU = 9217 }, SeverityError, "cluster.mtu", "68 to 9216"},
	{"group MTU out of range", false, func(s *Spec) { grp(s, "vmgroup").MTU = 65536 }, SeverityError, "adapterGroups[vmgroup].mtu", "out of range"},
	{"network MTU out of range", false, func(s *Spec) { netw(s, "prod").MTU = 10 }, SeverityError, "networks[prod].mtu", "out of range"},
	{"network MTU above group", false, func(s *Spec) { netw(s, "prod").MTU = 9000 }, SeverityError, "networks[prod].mtu", "above the MTU 1500 of its adapter group"},

	// hypervisor names
	{"no hypervisors", false, func(s *Spec) { s.Hypervisors = nil }, SeverityError, "hypervisors", "no hypervisors"},
	{"hypervisor name missing", false, func(s *Spec) { s.Hypervisors[0].Name = "" }, SeverityError, "hypervisors[0].name", "has no name"},
	{"hypervisor name not a host name", false, func(s *Spec) { hv(s, "hv2").Name = "hv_2" }, SeverityError, "hypervisors[hv_2].name", "not a valid host name"},
	{"hypervisor names differ only in case", false, func(s *Spec) { hv(s, "hv3").Name = "HV1" }, SeverityError, "hypervisors[HV1].name", `differs from "hv1" (entry 1) only in case`},
	{"hypervisor names not unique", false, func(s *Spec) { hv(s, "hv3").Name = "hv1" }, SeverityError, "hypervisors[hv1]", "used by entries 1 and 3"},

	// adapters
	{"adapter listed twice", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "eno3" }, SeverityError, "hypervisors[hv1].adapters[eno3]", "listed twice"},
	{"adapter name too long", false, func(s *Spec) {
		hv(s, "hv1").Adapters[3].Name = "enp0s31f6verylong"
	}, SeverityError, "hypervisors[hv1].adapters[enp0s31f6verylong].name", "15-byte limit"},
	{"adapter name with colon", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "eno4:1" }, SeverityError, `hypervisors[hv1].adapters["eno4:1"].name`, "contains ':'"},
	{"adapter name with slash", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "eno/4" }, SeverityError, `hypervisors[hv1].adapters["eno/4"].name`, "contains '/'"},
	{"adapter name dot", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = ".." }, SeverityError, "hypervisors[hv1].adapters[..].name", "not allowed"},
	{"adapter name empty", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "" }, SeverityError, "hypervisors[hv1].adapters[3].name", "is empty"},
	{"adapter name reserved for bonds", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "gb-x" }, SeverityError, "hypervisors[hv1].adapters[gb-x].name", `starts with "gb-"`},
	{"adapter name reserved for bridges", false, func(s *Spec) { hv(s, "hv1").Adapters[3].Name = "gbr-x" }, SeverityError, "hypervisors[hv1].adapters[gbr-x].name", `starts with "gbr-"`},
	{"adapter speed negative", false, func(s *Spec) { hv(s, "hv1").Adapters[0].SpeedMbps = -1 }, SeverityError, "hypervisors[hv1].adapters[eno1].speedMbps", "negative"},

	// group names and derived kernel names
	{"group name missing", false, func(s *Spec) { s.AdapterGroups[1].Name = "" }, SeverityError, "adapterGroups[1].name", "has no name"},
	{"group name with space", false, func(s *Spec) { s.AdapterGroups[1].Name = "vm group" }, SeverityError, `adapterGroups["vm group"].name`, "not allowed"},
	{"group names not unique", false, func(s *Spec) { s.AdapterGroups[1].Name = "infra" }, SeverityError, "adapterGroups[infra]", "used by entries 1 and 2"},
	{"group name too long for bridge", false, func(s *Spec) {
		renameGroup(s, "vmgroup", "vmgroupfast1") // gbr-vmgroupfast1 is 16 bytes
	}, SeverityError, "adapterGroups[vmgroupfast1].name", "at most 11 characters"},
	{"derived bridge name collides with adapter", false, func(s *Spec) {
		// Only reachable if an adapter has a reserved name; both are told.
		hv(s, "hv1").Adapters[3].Name = "gbr-vmgroup"
	}, SeverityError, "adapterGroups[vmgroup].name", `already adapter "gbr-vmgroup" of hypervisor "hv1"`},

	// group membership
	{"group without adapters", false, func(s *Spec) { grp(s, "vmgroup").Adapters = nil }, SeverityError, "adapterGroups[vmgroup].adapters", "has no adapters"},
	{"group names unknown hypervisor", false, func(s *Spec) { grp(s, "vmgroup").Adapters["hv9"] = []string{"eno3"} }, SeverityError, "adapterGroups[vmgroup].adapters[hv9]", "not under hypervisors"},
	{"group names unknown adapter", false, func(s *Spec) { grp(s, "vmgroup").Adapters["hv1"] = []string{"eno3", "eth9"} }, SeverityError, "adapterGroups[vmgroup].adapters[hv1]", `"eth9" is not an adapter of hypervisor "hv1"`},
	{"adapter listed twice in a group", false, func(s *Spec) { grp(s, "vmgroup").Adapters["hv1"] = []string{"eno3", "eno4", "eno3"} }, SeverityError, "adapterGroups[vmgroup].adapters[hv1]", "listed twice in group"},
	{"adapter in two groups", false, func(s *Spec) { grp(s, "vmgroup").Adapters["hv2"] = []string{"eno3", "eno4", "eno2"} }, SeverityError, "adapterGroups[vmgroup].adapters[hv2]", `already in adapter group "infra"`},

	// bond tuning
	{"miimon zero", false, func(s *Spec) { grp(s, "infra").Bond.Miimon = 0 }, SeverityError, "adapterGroups[infra].bond.miimon", "out of range"},
	{"miimon too large", false, func(s *Spec) { grp(s, "infra").Bond.Miimon = 10001 }, SeverityError, "adapterGroups[infra].bond.miimon", "1 to 10000"},
	{"primary not in group", false, func(s *Spec) { grp(s, "infra").Bond.Primary = "eno3" }, SeverityError, "adapterGroups[infra].bond.primary", "not an adapter of group"},
	{"primaryReselect unknown", false, func(s *Spec) { grp(s, "infra").Bond.PrimaryReselect = "never" }, SeverityError, "adapterGroups[infra].bond.primaryReselect", "always, better, failure"},
	{"numGratArp too large", false, func(s *Spec) { grp(s, "infra").Bond.NumGratARP = 256 }, SeverityError, "adapterGroups[infra].bond.numGratArp", "0 to 255"},
	{"numGratArp negative", false, func(s *Spec) { grp(s, "infra").Bond.NumGratARP = -1 }, SeverityError, "adapterGroups[infra].bond.numGratArp", "out of range"},
	{"peerNotifyDelay not a multiple of miimon", false, func(s *Spec) { grp(s, "infra").Bond.PeerNotifyDelayMs = 150 }, SeverityError, "adapterGroups[infra].bond.peerNotifyDelayMs", "use 100 or 200"},
	{"peerNotifyDelay negative", false, func(s *Spec) { grp(s, "infra").Bond.PeerNotifyDelayMs = -100 }, SeverityError, "adapterGroups[infra].bond.peerNotifyDelayMs", "negative"},
	{"peerNotifyDelay huge", false, func(s *Spec) { grp(s, "infra").Bond.PeerNotifyDelayMs = 1 << 40 }, SeverityError, "adapterGroups[infra].bond.peerNotifyDelayMs", "5 minutes"},
	{"updelay not a multiple of miimon", false, func(s *Spec) { grp(s, "infra").Bond.UpdelayMs = intp(150) }, SeverityError, "adapterGroups[infra].bond.updelayMs", "use 100 or 200"},
	{"updelay negative", false, func(s *Spec) { grp(s, "infra").Bond.UpdelayMs = intp(-100) }, SeverityError, "adapterGroups[infra].bond.updelayMs", "negative"},
	{"updelay huge", false, func(s *Spec) { grp(s, "infra").Bond.UpdelayMs = intp(300100) }, SeverityError, "adapterGroups[infra].bond.updelayMs", "5 minutes"},
	// The default updelay was fitted to the default miimon; a miimon set
	// afterwards (here by hand, past SetDefaults) is checked against it.
	{"miimon that the updelay is not a multiple of", false, func(s *Spec) { grp(s, "vmgroup").Bond.Miimon = 300 }, SeverityError, "adapterGroups[vmgroup].bond.updelayMs", "use 900 or 1200"},
	{"downdelay not a multiple of miimon", false, func(s *Spec) { grp(s, "vmgroup").Bond.DowndelayMs = 250 }, SeverityError, "adapterGroups[vmgroup].bond.downdelayMs", "use 200 or 300"},
	{"downdelay negative", false, func(s *Spec) { grp(s, "vmgroup").Bond.DowndelayMs = -1 }, SeverityError, "adapterGroups[vmgroup].bond.downdelayMs", "negative"},
	{"downdelay huge", false, func(s *Spec) { grp(s, "vmgroup").Bond.DowndelayMs = 1 << 40 }, SeverityError, "adapterGroups[vmgroup].bond.downdelayMs", "5 minutes"},

	// infrastructure group
	{"no adapter groups", false, func(s *Spec) { s.AdapterGroups = nil }, SeverityError, "adapterGroups", "no adapter groups"},
	{"no infrastructure group", false, func(s *Spec) { grp(s, "infra").Infrastructure = false }, SeverityError, "adapterGroups", "no infrastructure group"},
	{"two infrastructure groups", false, func(s *Spec) { grp(s, "vmgroup").Infrastructure = true }, SeverityError, "adapterGroups[vmgroup].infrastructure", "exactly one"},
	{"infrastructure group missing on a hypervisor", false, func(s *Spec) { delete(grp(s, "infra").Adapters, "hv3") }, SeverityError, "adapterGroups[infra].adapters[hv3]", "must be on every hypervisor"},

	// production layout
	{"hypervisor without adapters", false, func(s *Spec) { hv(s, "hv2").Adapters = nil }, SeverityError, "hypervisors[hv2].adapters", "has no adapters"},
	{"production hypervisor with 3 adapters", false, func(s *Spec) {
		hv(s, "hv2").Adapters = hv(s, "hv2").Adapters[:3]
		grp(s, "vmgroup").Adapters["hv2"] = []string{"eno3"}
	}, SeverityError, "hypervisors[hv2].adapters", "needs at least 4"},
	{"production hypervisor with 1 adapter", false, func(s *Spec) {
		hv(s, "hv2").Adapters = hv(s, "hv2").Adapters[:1]
		grp(s, "infra").Adapters["hv2"] = []string{"eno1"}
		delete(grp(s, "vmgroup").Adapters, "hv2")
	}, SeverityError, "hypervisors[hv2].adapters", "set cluster.evaluation: true"},
	{"infrastructure group with 1 adapter", false, func(s *Spec) { grp(s, "infra").Adapters["hv1"] = []string{"eno1"} }, SeverityError, "adapterGroups[infra].adapters[hv1]", "needs at least 2"},
	{"infrastructure adapter under 10 Gbps", false, func(s *Spec) { hv(s, "hv1").Adapters[1].SpeedMbps = 1000 }, SeverityError, "adapterGroups[infra].adapters[hv1]", `"eno2" of "hv1" runs at 1000 Mbps`},
	{"no VM group on a hypervisor", false, func(s *Spec) { delete(grp(s, "vmgroup").Adapters, "hv1") }, SeverityError, "hypervisors[hv1]", "no VM adapter group"},
	{"VM group with 1 adapter", false, func(s *Spec) { grp(s, "vmgroup").Adapters["hv2"] = []string{"eno3"} }, SeverityError, "adapterGroups[vmgroup].adapters[hv2]", "needs at least 2"},
	{"infrastructure adapter speed missing", false, func(s *Spec) { hv(s, "hv1").Adapters[0].SpeedMbps = 0 }, SeverityWarning, "hypervisors[hv1].adapters[eno1].speedMbps", "at least 10 Gbps"},
	{"VM adapter speed missing", false, func(s *Spec) { hv(s, "hv1").Adapters[2].SpeedMbps = 0 }, SeverityWarning, "hypervisors[hv1].adapters[eno3].speedMbps", "no speedMbps"},
	{"VM adapter under 1 Gbps", false, func(s *Spec) { hv(s, "hv1").Adapters[2].SpeedMbps = 100 }, SeverityWarning, "hypervisors[hv1].adapters[eno3].speedMbps", "at least 1000 Mbps"},

	// evaluation mode
	{"evaluation single adapter", true, func(s *Spec) {}, SeverityWarning, "hypervisors[hv1]", "not supported for production"},
	{"evaluation with a production layout", false, func(s *Spec) { s.Cluster.Evaluation = true }, SeverityWarning, "cluster.evaluation", "set cluster.evaluation: false"},
	{"evaluation still needs adapters", true, func(s *Spec) {
		s.Hypervisors[0].Adapters = nil
		s.AdapterGroups[0].Adapters = map[string][]string{}
	}, SeverityError, "hypervisors[hv1].adapters", "has no adapters"},
	{"evaluation still needs the infrastructure group", true, func(s *Spec) { s.AdapterGroups[0].Infrastructure = false }, SeverityError, "adapterGroups", "no infrastructure group"},

	// networks
	{"network name missing", false, func(s *Spec) { s.Networks[0].Name = "" }, SeverityError, "networks[0].name", "has no name"},
	{"network name with slash", false, func(s *Spec) { s.Networks[0].Name = "a/b" }, SeverityError, `networks["a/b"].name`, "not allowed"},
	{"network names not unique", false, func(s *Spec) { netw(s, "dev").Name = "prod" }, SeverityError, "networks[prod]", "used by entries 1 and 2"},
	{"network without group", false, func(s *Spec) { netw(s, "prod").AdapterGroup = "" }, SeverityError, "networks[prod].adapterGroup", "names no adapter group"},
	{"network names unknown group", false, func(s *Spec) { netw(s, "prod").AdapterGroup = "vmgrp" }, SeverityError, "networks[prod].adapterGroup", "does not exist"},
	{"VLAN too large", false, func(s *Spec) { netw(s, "prod").VLAN = 4095 }, SeverityError, "networks[prod].vlan", "1 to 4094"},
	{"VLAN negative", false, func(s *Spec) { netw(s, "prod").VLAN = -5 }, SeverityError, "networks[prod].vlan", "out of range"},
	{"VLAN 1 tagged (the native VLAN)", false, func(s *Spec) { netw(s, "prod").VLAN = 1 }, SeverityError, "networks[prod].vlan", "untagged (native) traffic"},
	{"VLAN used twice on a group", false, func(s *Spec) { netw(s, "dev").VLAN = 100 }, SeverityError, "networks[dev].vlan", `and so has network "prod"`},
	{"two untagged networks on a group", false, func(s *Spec) { netw(s, "dev").VLAN = 0 }, SeverityError, "networks[flat].vlan", "one untagged"},
	{"network named like libvirt's NAT network", false, func(s *Spec) { netw(s, "dev").Name = "default" }, SeverityWarning, "networks[default].name", "libvirt's stock NAT network"},
	{"untagged VM network on infrastructure group", false, func(s *Spec) { netw(s, "flat").AdapterGroup = "infra" }, SeverityWarning, "networks[flat].adapterGroup", "management VLAN"},
	{"tagged VM network on infrastructure group", false, func(s *Spec) { netw(s, "prod").AdapterGroup = "infra" }, SeverityWarning, "networks[prod].adapterGroup", "infrastructure adapters"},

	// hardware profiles
	{"NIC model unknown", false, func(s *Spec) { prof(s, "legacy").NICModel = "ne2000" }, SeverityError, "hardwareProfiles[legacy].nicModel", "use one of virtio, e1000"},
	{"NIC model wrong case", false, func(s *Spec) { prof(s, "modern").NICModel = "VirtIO" }, SeverityError, "hardwareProfiles[modern].nicModel", `write "virtio"`},
	{"NIC model missing", false, func(s *Spec) { prof(s, "modern").NICModel = "" }, SeverityError, "hardwareProfiles[modern].nicModel", "no NIC model"},
	{"profile name missing", false, func(s *Spec) { s.HardwareProfiles[0].Name = "" }, SeverityError, "hardwareProfiles[0].name", "has no name"},
	{"profile names not unique", false, func(s *Spec) { s.HardwareProfiles[1].Name = "modern" }, SeverityError, "hardwareProfiles[modern]", "used twice"},
	{"default profile unknown", false, func(s *Spec) { s.Cluster.DefaultProfile = "fast" }, SeverityError, "cluster.defaultProfile", "not a hardware profile"},
}

// renameGroup renames a group and the networks' references to it.
func renameGroup(s *Spec, from, to string) {
	grp(s, from).Name = to
	for i := range s.Networks {
		if s.Networks[i].AdapterGroup == from {
			s.Networks[i].AdapterGroup = to
		}
	}
}

func TestValidateRules(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range ruleCases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			s := production(t)
			if tc.eval {
				s = evaluation(t)
			}
			tc.mod(s)
			fs := Validate(s)
			got := find(fs, tc.sev, tc.path)
			if len(got) == 0 {
				t.Fatalf("want a %s at %s, got:\n%s", tc.sev, tc.path, dump(fs))
			}
			for _, f := range got {
				if strings.Contains(f.Message, tc.phrase) {
					return
				}
			}
			t.Fatalf("want a %s at %s saying %q, got:\n%s", tc.sev, tc.path, tc.phrase, dump(got))
		})
	}
}

// TestClusterMTUReportedOnce: a bad cluster MTU was reported three times,
// at cluster.mtu and again for each group that inherited it (issue 13 #8).
func TestClusterMTUReportedOnce(t *testing.T) {
	data, err := os.ReadFile("../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse([]byte(strings.Replace(string(data), "  name: lab\n", "  name: lab\n  mtu: 70000\n", 1)), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range Validate(s) {
		got = append(got, f.Path)
	}
	if diff := cmp.Diff([]string{"cluster.mtu"}, got); diff != "" {
		t.Errorf("finding paths (-want +got):\n%s", diff)
	}
}

func dump(fs Findings) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	if b.Len() == 0 {
		return "  (no findings)\n"
	}
	return b.String()
}

// TestValidateAllowed: changes that look suspicious but are fine must give
// no finding at all.
func TestValidateAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(s *Spec)
	}{
		{"same VLAN on different groups", func(s *Spec) {
			s.Networks = append(s.Networks, Network{Name: "storage", AdapterGroup: "vmgroup", VLAN: 300})
			grp(s, "vmgroup").MTU = 9000
			netw(s, "prod").MTU = 9000
		}},
		{"locally administered MAC prefix", func(s *Spec) { s.Cluster.MACPrefix = "02:00" }},
		{"one-byte MAC prefix", func(s *Spec) { s.Cluster.MACPrefix = "0a" }},
		{"five-byte MAC prefix with dashes", func(s *Spec) { s.Cluster.MACPrefix = "52-54-00-12-34" }},
		{"no gateway", func(s *Spec) { s.Cluster.Gateway = "" }},
		{"MTU limits", func(s *Spec) { s.Cluster.MTU = 68; grp(s, "vmgroup").MTU = 9216; netw(s, "prod").MTU = 9216 }},
		{"VLAN limits", func(s *Spec) { netw(s, "prod").VLAN = 2; netw(s, "dev").VLAN = 4094 }},
		{"bond tuning limits", func(s *Spec) {
			b := &grp(s, "infra").Bond
			b.Miimon, b.NumGratARP, b.PeerNotifyDelayMs, b.PrimaryReselect, b.Primary = 10000, 255, 300000, "failure", "eno2"
			b.UpdelayMs, b.DowndelayMs = intp(300000), 300000
		}},
		{"no updelay", func(s *Spec) { grp(s, "infra").Bond.UpdelayMs = intp(0) }},
		{"delays on a small miimon", func(s *Spec) {
			b := &grp(s, "vmgroup").Bond
			b.Miimon, b.UpdelayMs, b.DowndelayMs = 7, intp(7), 14
		}},
		{"primary on some hypervisors only", func(s *Spec) {
			hv(s, "hv3").Adapters[0].Name = "enp1s0"
			grp(s, "infra").Adapters["hv3"] = []string{"enp1s0", "eno2"}
		}},
		{"group name of 11 characters", func(s *Spec) { renameGroup(s, "vmgroup", "vmgroup-abc") }},
		{"fully qualified hypervisor names", func(s *Spec) {
			hv(s, "hv1").Name = "hv1.example.com"
			g := grp(s, "infra")
			g.Adapters["hv1.example.com"] = g.Adapters["hv1"]
			delete(g.Adapters, "hv1")
			g = grp(s, "vmgroup")
			g.Adapters["hv1.example.com"] = g.Adapters["hv1"]
			delete(g.Adapters, "hv1")
		}},
		{"extra adapters outside any group", func(s *Spec) {
			hv(s, "hv1").Adapters = append(hv(s, "hv1").Adapters, Adapter{Name: "eno5"})
		}},
		{"subnet just large enough", func(s *Spec) {
			// 3 hypervisors, the VIP and the gateway: 5 of a /29's 6.
			s.Cluster.Subnet, s.Cluster.VIP, s.Cluster.Gateway = "192.168.1.0/29", "192.168.1.5", "192.168.1.6"
			for i := range s.Hypervisors {
				s.Hypervisors[i].ManagementIP = "192.168.1." + string(rune('1'+i)) + "/29"
			}
		}},
		{"more profiles and another default", func(s *Spec) {
			s.HardwareProfiles = append(s.HardwareProfiles, HardwareProfile{Name: "vmware", NICModel: "vmxnet3"}, HardwareProfile{Name: "old", NICModel: "ne2k_pci"})
			s.Cluster.DefaultProfile = "vmware"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := production(t)
			tc.mod(s)
			if fs := Validate(s); len(fs) != 0 {
				t.Errorf("want no findings, got:\n%s", dump(fs))
			}
		})
	}
}

// TestValidateMessages: every finding of every rule case says what to
// change, and its path names the object.
func TestValidateMessages(t *testing.T) {
	n := 0
	for _, tc := range ruleCases {
		s := production(t)
		if tc.eval {
			s = evaluation(t)
		}
		tc.mod(s)
		for _, f := range Validate(s) {
			n++
			if f.Severity != SeverityError && f.Severity != SeverityWarning {
				t.Errorf("%s: bad severity: %s", tc.name, f)
			}
			if f.Path == "" || strings.ContainsAny(f.Path, " \n") && !strings.Contains(f.Path, `"`) {
				t.Errorf("%s: bad path: %s", tc.name, f)
			}
			// "what is wrong: what to do"
			if !strings.Contains(f.Message, ": ") || len(f.Message) < 40 {
				t.Errorf("%s: message does not say what to change: %s", tc.name, f)
			}
		}
	}
	if n < len(ruleCases) {
		t.Fatalf("want at least one finding per case, got %d for %d cases", n, len(ruleCases))
	}
}

// brokenEverywhere is the production example with every rule case's change
// applied at once (a change whose target an earlier one removed is
// skipped): a spec broken in very many ways.
func brokenEverywhere(t testing.TB) *Spec {
	s := production(t)
	for _, tc := range ruleCases {
		if tc.eval || strings.HasPrefix(tc.name, "no ") {
			continue // keep hypervisors and groups to break
		}
		func() {
			defer func() { _ = recover() }() // the test's own change, not Validate
			tc.mod(s)
		}()
	}
	return s
}

func TestValidateDeterministic(t *testing.T) {
	build := func() *Spec {
		s := brokenEverywhere(t)
		// Map iteration must not leak into the order.
		for i := 0; i < 20; i++ {
			s.AdapterGroups[0].Adapters["hvx"+string(rune('a'+i))] = []string{"eno1"}
		}
		return s
	}
	want := Validate(build())
	if len(want) < 30 {
		t.Fatalf("want many findings from a spec broken in many ways, got:\n%s", dump(want))
	}
	for i := 0; i < 10; i++ {
		if got := Validate(build()); !reflect.DeepEqual(got, want) {
			t.Fatalf("run %d differs:\n%s\nwant:\n%s", i, dump(got), dump(want))
		}
	}
}

func TestValidateDoesNotChangeSpec(t *testing.T) {
	s := production(t)
	netw(s, "prod").VLAN = 5000
	before, _ := json.Marshal(s)
	Validate(s)
	after, _ := json.Marshal(s)
	if string(before) != string(after) {
		t.Errorf("Validate changed the spec:\n%s\n%s", before, after)
	}
}

// TestValidateOddSpecs: specs Parse would never produce, or produces from
// hostile input, give findings and never panic.
func TestValidateOddSpecs(t *testing.T) {
	huge := int(^uint(0) >> 1)
	for name, s := range map[string]*Spec{
		"nil":   nil,
		"empty": {},
		"nil maps and empty lists": {
			Hypervisors:      []Hypervisor{{}, {}},
			AdapterGroups:    []AdapterGroup{{}, {Infrastructure: true}, {Infrastructure: true, Adapters: map[string][]string{"": nil}}},
			Networks:         []Network{{}, {}},
			HardwareProfiles: []HardwareProfile{{}, {}},
		},
		"huge numbers": {
			Cluster:     Cluster{Name: "x", Subnet: "10.0.0.0/8", VIP: "10.0.0.1", MTU: huge},
			Hypervisors: []Hypervisor{{Name: "h", ManagementIP: "10.0.0.2/8", Adapters: []Adapter{{Name: "a", SpeedMbps: huge}, {Name: "b", SpeedMbps: -huge - 1}}}},
			AdapterGroups: []AdapterGroup{{Name: "g", Infrastructure: true, MTU: -huge - 1, Adapters: map[string][]string{"h": {"a", "b"}},
				Bond: BondTuning{Miimon: huge, NumGratARP: huge, PeerNotifyDelayMs: huge, UpdelayMs: intp(-huge - 1), DowndelayMs: huge}}},
			Networks: []Network{{Name: "n", AdapterGroup: "g", VLAN: huge, MTU: huge}, {Name: "m", AdapterGroup: "g", VLAN: -huge - 1}},
		},
		"peerNotifyDelay near max": {
			AdapterGroups: []AdapterGroup{{Name: "g", Bond: BondTuning{Miimon: 7, PeerNotifyDelayMs: 299999}}},
		},
		"hostile strings": {
			Cluster:       Cluster{Name: strings.Repeat("\xff", 100), Subnet: "::ffff:10.0.0.0/104", VIP: "fe80::1%eth0", Gateway: "10.0.0.1/8", MACPrefix: ":::::"},
			Hypervisors:   []Hypervisor{{Name: strings.Repeat("é", 100), ManagementIP: "/", Adapters: []Adapter{{Name: "\x00"}}}},
			AdapterGroups: []AdapterGroup{{Name: "]", Adapters: map[string][]string{strings.Repeat("é", 100): {"\x00", "\x00"}}, Bond: BondTuning{Primary: "\n"}}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			fs := Validate(s)
			if !fs.HasErrors() {
				t.Errorf("want errors, got:\n%s", dump(fs))
			}
			for _, f := range fs {
				if len(f.Path) > 400 || len(f.Message) > 2000 {
					t.Errorf("finding too long (%d, %d bytes): %.200s", len(f.Path), len(f.Message), f)
				}
			}
		})
	}
}

func TestValueValidators(t *testing.T) {
	ok := []error{
		IsVLAN(1), IsVLAN(4094), IsMTU(68), IsMTU(9216), IsNICModel("pcnet"), IsInterfaceName("enp1s0f0"),
		IsClusterName("lab"), IsClusterName("0-a"), IsHostname("hv1.example.com"), IsHostname("HV1"),
		IsObjectName("a.b_c-d"), IsMiimon(1), IsPrimaryReselect("better"), IsNumGratARP(0),
		IsPeerNotifyDelay(0, 100), IsPeerNotifyDelay(300, 100), IsSpeed(0),
		IsBondDelay("updelayMs", 0, 100), IsBondDelay("updelayMs", 1000, 100), IsBondDelay("downdelayMs", 299999, 7), IsBondDelay("updelayMs", 150, 0),
	}
	for i, err := range ok {
		if err != nil {
			t.Errorf("ok value %d: %v", i, err)
		}
	}
	bad := []error{
		IsVLAN(0), IsVLAN(4095), IsMTU(67), IsMTU(9217), IsNICModel("virtio-net"), IsInterfaceName("a b"),
		IsClusterName("-lab"), IsClusterName("lab.x"), IsHostname("hv1..x"), IsHostname("-hv"),
		IsObjectName(".hidden"), IsObjectName(strings.Repeat("a", 64)), IsMiimon(0), IsPrimaryReselect(""),
		IsNumGratARP(256), IsPeerNotifyDelay(1, 100), IsSpeed(-1),
		IsBondDelay("updelayMs", 50, 100), IsBondDelay("updelayMs", -100, 100), IsBondDelay("downdelayMs", 300001, 1),
	}
	for i, err := range bad {
		if err == nil {
			t.Errorf("bad value %d: no error", i)
		}
	}
}
