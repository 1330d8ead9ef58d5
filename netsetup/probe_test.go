package netsetup

import (
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

// switchWith builds a plain bridge "switch" joining the peers of n veth
// pairs gt-aN (the adapters) / gt-sN (switch ports).
func switchWith(t *testing.T, n int) []string {
	t.Helper()
	a := netlink.NewLinkAttrs()
	a.Name = "gt-sw"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: a}); err != nil {
		t.Fatal(err)
	}
	sw, _ := netlink.LinkByName("gt-sw")
	netlink.LinkSetUp(sw)
	var adapters []string
	for i := 1; i <= n; i++ {
		ad, port := fmt.Sprintf("gt-a%d", i), fmt.Sprintf("gt-s%d", i)
		vethPair(t, ad, port)
		p, _ := netlink.LinkByName(port)
		if err := netlink.LinkSetMaster(p, sw); err != nil {
			t.Fatal(err)
		}
		adapters = append(adapters, ad)
	}
	return adapters
}

func TestVerifyTopologyFindsBrokenPair(t *testing.T) {
	inNetns(t)
	adapters := switchWith(t, 3)
	groups := []ProbeGroup{{Name: "g", Adapters: adapters}}
	rs, err := VerifyTopology(groups, ProbeOptions{Sender: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 6 || len(ProbeFailures(rs)) != 0 {
		t.Fatalf("all connected: %+v", rs)
	}
	// Pull gt-a3's cable at the switch.
	p, _ := netlink.LinkByName("gt-s3")
	if err := netlink.LinkSetNoMaster(p); err != nil {
		t.Fatal(err)
	}
	rs, err = VerifyTopology(groups, ProbeOptions{Sender: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range ProbeFailures(rs) {
		got = append(got, r.From+">"+r.To)
	}
	want := []string{"gt-a1>gt-a3", "gt-a2>gt-a3", "gt-a3>gt-a1", "gt-a3>gt-a2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("failures %v, want %v", got, want)
	}
}

func TestParseProbe(t *testing.T) {
	frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5}, []byte("gallium-net-probe abc infra eno1 hv1\x00\x00")...)
	if g, a, ok := parseProbe(frame, "abc"); !ok || g != "infra" || a != "eno1" {
		t.Errorf("parse: %q %q %v", g, a, ok)
	}
	if _, _, ok := parseProbe(frame, "other-run"); ok {
		t.Error("a frame of another run must not count")
	}
	frame[13] = 0xb6
	if _, _, ok := parseProbe(frame, "abc"); ok {
		t.Error("another ethertype must not count")
	}
}
