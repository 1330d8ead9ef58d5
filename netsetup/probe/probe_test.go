package probe

import (
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/gallium/gallium-net/test/testenv"
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
		testenv.VethPair(t, ad, port)
		p, _ := netlink.LinkByName(port)
		if err := netlink.LinkSetMaster(p, sw); err != nil {
			t.Fatal(err)
		}
		adapters = append(adapters, ad)
	}
	return adapters
}

func TestVerifyTopologyFindsBrokenPair(t *testing.T) {
	testenv.EnterNetns(t)
	adapters := switchWith(t, 3)
	groups := []Group{{Name: "g", Adapters: adapters}}
	rs, err := VerifyTopology(groups, Options{Sender: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 6 || len(Failures(rs)) != 0 {
		t.Fatalf("all connected: %+v", rs)
	}
	// Pull gt-a3's cable at the switch.
	p, _ := netlink.LinkByName("gt-s3")
	if err := netlink.LinkSetNoMaster(p); err != nil {
		t.Fatal(err)
	}
	rs, err = VerifyTopology(groups, Options{Sender: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range Failures(rs) {
		got = append(got, r.From+">"+r.To)
	}
	want := []string{"gt-a1>gt-a3", "gt-a2>gt-a3", "gt-a3>gt-a1", "gt-a3>gt-a2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("failures %v, want %v", got, want)
	}
}

// A switch port that starts forwarding only after the first probes (as
// right after `host apply` enslaved the adapter) must not fail its pairs:
// failing pairs are probed again until Settle has passed.
func TestVerifyTopologyWaitsForAPortComingUp(t *testing.T) {
	testenv.EnterNetns(t)
	adapters := switchWith(t, 3)
	p, _ := netlink.LinkByName("gt-s3")
	if err := netlink.LinkSetNoMaster(p); err != nil {
		t.Fatal(err)
	}
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns) // the goroutine runs on another thread
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	plugged := make(chan error, 1)
	go func() {
		time.Sleep(700 * time.Millisecond) // after the first pass (3 rounds + 500 ms)
		sw, err := h.LinkByName("gt-sw")
		if err == nil {
			err = h.LinkSetMaster(p, sw)
		}
		plugged <- err
	}()
	rs, err := VerifyTopology([]Group{{Name: "g", Adapters: adapters}}, Options{Sender: "test", Settle: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-plugged; err != nil {
		t.Fatal(err)
	}
	if f := Failures(rs); len(rs) != 6 || len(f) != 0 {
		t.Fatalf("the port came up within Settle, yet: %+v", f)
	}
}

// An adapter without carrier (its switch port is down) or down itself
// fails its pairs and the result says which adapter; the other pairs of
// the group are still probed.
func TestVerifyTopologyNamesAnAdapterWithoutCarrier(t *testing.T) {
	testenv.EnterNetns(t)
	adapters := switchWith(t, 4)
	for _, n := range []string{"gt-s3", "gt-a4"} {
		l, _ := netlink.LinkByName(n)
		if err := netlink.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := VerifyTopology([]Group{{Name: "g", Adapters: adapters}}, Options{Sender: "test", Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rs {
		if !r.OK {
			got[r.From+">"+r.To] = r.Detail
		}
	}
	want := map[string]string{
		"gt-a1>gt-a3": "gt-a3 without carrier", "gt-a1>gt-a4": "gt-a4 without carrier",
		"gt-a2>gt-a3": "gt-a3 without carrier", "gt-a2>gt-a4": "gt-a4 without carrier",
		"gt-a3>gt-a1": "gt-a3 without carrier", "gt-a3>gt-a2": "gt-a3 without carrier",
		"gt-a3>gt-a4": "gt-a3 and gt-a4 without carrier", "gt-a4>gt-a3": "gt-a4 and gt-a3 without carrier",
		"gt-a4>gt-a1": "gt-a4 without carrier", "gt-a4>gt-a2": "gt-a4 without carrier",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("failed pairs\n got %v\nwant %v", got, want)
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
