// Package selftest proves the kernel lab from the inside: it runs as a test
// binary in a lab VM (test/lab/packages.txt) and checks that the kernel has
// what netsetup needs (bonding, 802.1q, bridge VLAN filtering), driving it
// through netlink as netsetup does, and that the lab's environment is what
// the README promises. On the host every test skips: they are for the lab.
package selftest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/test/testenv"
)

func needLab(t *testing.T) {
	t.Helper()
	if !testenv.InLab() {
		t.Skip("runs inside the kernel lab (test/lab/run.sh, make test-lab)")
	}
}

// labNICs parses GALLIUM_LAB_NICS ("eth0=lan0,eth1=lan0,...").
func labNICs(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range strings.Split(os.Getenv("GALLIUM_LAB_NICS"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// twoOnSegment returns two guest NICs cabled to the same segment.
func twoOnSegment(t *testing.T) (string, string) {
	t.Helper()
	bySeg := map[string][]string{}
	nics := labNICs(t)
	for _, n := range sortedKeys(nics) {
		bySeg[nics[n]] = append(bySeg[nics[n]], n)
	}
	for _, s := range sortedKeys(bySeg) {
		if len(bySeg[s]) >= 2 {
			return bySeg[s][0], bySeg[s][1]
		}
	}
	t.Fatalf("GALLIUM_LAB_NICS=%q has no two NICs on one segment", os.Getenv("GALLIUM_LAB_NICS"))
	return "", ""
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// iproute2 is what the shell must run for ip and bridge: the lab's busybox
// prefers its own applets (which know neither netns nor bridge VLANs) to
// $PATH, but not to shell functions.
const iproute2 = `ip() { /usr/sbin/ip "$@"; }; bridge() { /usr/sbin/bridge "$@"; }
`

func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := run(script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

func TestEnvironment(t *testing.T) {
	needLab(t)
	if os.Geteuid() != 0 {
		t.Errorf("euid %d, want root", os.Geteuid())
	}
	// The repository is shared at its host path, and tests start in their
	// package's folder, as under go test.
	wd, _ := os.Getwd()
	if !strings.HasSuffix(wd, "/test/lab/selftest") {
		t.Errorf("working directory %s, want the package's folder", wd)
	}
	if _, err := os.Stat("../../../go.mod"); err != nil {
		t.Errorf("repository not shared: %v", err)
	}
	if _, file, _, _ := runtime.Caller(0); file != "" {
		if _, err := os.Stat(file); err != nil {
			t.Errorf("source path compiled into the test is not there: %v", err)
		}
	}
	for n := range labNICs(t) {
		if _, err := netlink.LinkByName(n); err != nil {
			t.Errorf("NIC %s from GALLIUM_LAB_NICS: %v", n, err)
		}
	}
	if len(labNICs(t)) == 0 {
		t.Error("GALLIUM_LAB_NICS is empty")
	}
	// iproute2 is there, for tests and humans that want `ip`/`bridge`.
	if out := sh(t, "ip -V; bridge -V"); !strings.Contains(out, "iproute2") && !strings.Contains(out, "ip utility") {
		t.Errorf("iproute2: %s", out)
	}
}

func run(script string) ([]byte, error) {
	return exec.Command("/bin/sh", "-c", iproute2+script).CombinedOutput()
}

// TestKernelFeatures: the lab kernel has every feature that netsetup's
// tests ask for; testenv.HasKernel really probes vlan_filtering.
func TestKernelFeatures(t *testing.T) {
	needLab(t)
	for _, f := range []string{"bonding", "8021q", "vlan_filtering", "bridge", "veth", "dummy", "tun"} {
		if !testenv.HasKernel(f) {
			t.Errorf("kernel feature %s missing", f)
		}
		testenv.NeedKernel(t, f) // fails, never skips, in the lab
	}
}

func TestBondActiveBackup(t *testing.T) {
	needLab(t)
	testenv.NeedKernel(t, "bonding")
	a, b := twoOnSegment(t)
	bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: "stbond0"})
	bond.Mode = netlink.BOND_MODE_ACTIVE_BACKUP
	bond.Miimon = 100
	if err := netlink.LinkAdd(bond); err != nil {
		t.Fatalf("add bond: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("stbond0"); err == nil {
			netlink.LinkDel(l)
		}
	})
	master, err := netlink.LinkByName("stbond0")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{a, b} {
		l, err := netlink.LinkByName(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetMasterByIndex(l, master.Attrs().Index); err != nil {
			t.Fatalf("enslave %s: %v", s, err)
		}
	}
	if err := netlink.LinkSetUp(master); err != nil {
		t.Fatal(err)
	}
	got, err := netlink.LinkByName("stbond0")
	if err != nil {
		t.Fatal(err)
	}
	gb, ok := got.(*netlink.Bond)
	if !ok {
		t.Fatalf("stbond0 reads back as %T", got)
	}
	if gb.Mode != netlink.BOND_MODE_ACTIVE_BACKUP || gb.Miimon != 100 {
		t.Errorf("bond reads back mode %v miimon %d", gb.Mode, gb.Miimon)
	}
	for _, s := range []string{a, b} {
		l, _ := netlink.LinkByName(s)
		if l.Attrs().MasterIndex != master.Attrs().Index {
			t.Errorf("%s: master index %d, want %d", s, l.Attrs().MasterIndex, master.Attrs().Index)
		}
	}
	// The NICs are cabled, so one becomes active within a few miimon rounds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw, _ := os.ReadFile("/sys/class/net/stbond0/bonding/active_slave")
		if act := strings.TrimSpace(string(raw)); act == a || act == b {
			t.Logf("active slave %s", act)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no active slave after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestVLAN8021q(t *testing.T) {
	needLab(t)
	testenv.NeedKernel(t, "8021q")
	nics := sortedKeys(labNICs(t))
	parent, err := netlink.LinkByName(nics[len(nics)-1])
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "stvlan100", ParentIndex: parent.Attrs().Index}, VlanId: 100}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add vlan: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(v) })
	got, err := netlink.LinkByName("stvlan100")
	if err != nil {
		t.Fatal(err)
	}
	if gv, ok := got.(*netlink.Vlan); !ok || gv.VlanId != 100 {
		t.Errorf("stvlan100 reads back as %#v", got)
	}
}

func TestBridgeVlanFiltering(t *testing.T) {
	needLab(t)
	testenv.NeedKernel(t, "vlan_filtering")
	on := true
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "stbr0"}, VlanFiltering: &on}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) })
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "stv0"}, PeerName: "stv0p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	brl, _ := netlink.LinkByName("stbr0")
	vl, _ := netlink.LinkByName("stv0")
	if err := netlink.LinkSetMaster(vl, brl); err != nil {
		t.Fatal(err)
	}
	if err := netlink.BridgeVlanAdd(vl, 100, true, true, false, false); err != nil {
		t.Fatalf("bridge vlan add: %v", err)
	}
	if err := netlink.BridgeVlanDel(vl, 1, true, true, false, false); err != nil {
		t.Fatalf("bridge vlan del 1: %v", err)
	}
	got, _ := netlink.LinkByName("stbr0")
	if gb, ok := got.(*netlink.Bridge); !ok || gb.VlanFiltering == nil || !*gb.VlanFiltering {
		t.Errorf("stbr0 reads back without vlan_filtering: %#v", got)
	}
	vlans, err := netlink.BridgeVlanList()
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, v := range vlans[int32(vl.Attrs().Index)] {
		desc = append(desc, fmt.Sprintf("%d flags=%d", v.Vid, v.Flags))
	}
	if len(desc) != 1 || !strings.HasPrefix(desc[0], "100 ") {
		t.Errorf("stv0 VLANs %v, want only 100 (PVID, untagged)", desc)
	}
}

// TestBridgeVlanIsolation: on a VLAN-filtering bridge, hosts (network
// namespaces) on VLAN 100 reach each other and not the host on VLAN 200.
func TestBridgeVlanIsolation(t *testing.T) {
	needLab(t)
	testenv.NeedKernel(t, "vlan_filtering")
	// The veths go first, synchronously: a deleted namespace takes its end
	// of them down asynchronously, and a test run right after (-count)
	// found st-a-h still there ("File exists").
	t.Cleanup(func() {
		run("for n in st-a st-b st-c; do ip link del $n-h; ip netns del $n; done; ip link del stbr1")
	})
	sh(t, `set -e
ip link add stbr1 type bridge vlan_filtering 1
ip link set stbr1 up
i=0
for n in st-a:100 st-b:100 st-c:200; do
	ns=${n%%:*}; vid=${n##*:}; i=$((i+1))
	ip netns add $ns
	ip link add $ns-h type veth peer name eth0 netns $ns
	ip link set $ns-h master stbr1 up
	bridge vlan del dev $ns-h vid 1
	bridge vlan add dev $ns-h vid $vid pvid untagged
	ip -n $ns addr add 10.99.7.$i/24 dev eth0
	ip -n $ns link set eth0 up
	ip -n $ns link set lo up
done`)
	t.Log(sh(t, "bridge vlan show"))
	if out, err := run("ip netns exec st-a ping -c 2 -W 3 10.99.7.2"); err != nil {
		t.Errorf("VLAN 100 to VLAN 100: %v\n%s", err, out)
	}
	if out, err := run("ip netns exec st-a ping -c 2 -W 1 10.99.7.3"); err == nil {
		t.Errorf("VLAN 100 reached VLAN 200:\n%s", out)
	}
}
