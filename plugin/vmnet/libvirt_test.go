package vmnet_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/vmnet"
	"github.com/gallium/gallium-net/plugin/vmnet/libvirtconn"
)

// The tests run the use cases on libvirt's test driver: the real binding
// and libvirt's own XML handling, no daemon. test:///default keeps its state
// while a connection is open and starts afresh after the last one closes, so
// each test opens its own (tests here do not run in parallel).
func openTest(t *testing.T) *libvirtconn.Conn {
	t.Helper()
	c, err := libvirtconn.Open("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testSpec(t *testing.T) *model.Spec { return vmnet.LoadTestSpec(t) }

func TestLibvirtNotFound(t *testing.T) {
	c := openTest(t)
	if _, err := c.NetworkXML("nope"); !errors.Is(err, vmnet.ErrNotFound) {
		t.Errorf("NetworkXML(nope) err = %v, want ErrNotFound", err)
	}
	if _, err := c.DomainActive("nope"); !errors.Is(err, vmnet.ErrNotFound) {
		t.Errorf("DomainActive(nope) err = %v, want ErrNotFound", err)
	}
}

func TestLibvirtDefineNetworks(t *testing.T) {
	c := openTest(t)
	s := testSpec(t)
	opt, _, err := vmnet.NetworkOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	names := vmnet.NetworksOn(s, "hv1")
	got, err := vmnet.DefineNetworks(c, s, "hv1", names, opt)
	if err != nil {
		t.Fatal(err)
	}
	actions := func(rs []vmnet.NetworkResult) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name+" "+r.Action+" "+strings.Join(r.Details, ", "))
		}
		return out
	}
	want := []string{"flat defined started, autostart on", "prod defined started, autostart on", "san defined started, autostart on"}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("first define (-want +got):\n%s", diff)
	}
	// libvirt formats the XML its own way; the drift check must still see
	// the networks in line.
	if got, err = vmnet.DefineNetworks(c, s, "hv1", names, opt); err != nil {
		t.Fatal(err)
	}
	want = []string{"flat unchanged ", "prod unchanged ", "san unchanged "}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("second define (-want +got):\n%s", diff)
	}

	// Drift: san moves to the vmgroup bridge. The test driver cannot list
	// a network's ports, so the network is stopped first (the fake covers
	// the restart of a running one).
	if err := c.StopNetwork("san"); err != nil {
		t.Fatal(err)
	}
	s.Network("san").AdapterGroup = "vmgroup"
	r, err := vmnet.DefineNetwork(c, s, "hv1", "san", opt)
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != "updated" || r.Details[len(r.Details)-1] != "started" {
		t.Errorf("drifted san: %+v, want updated and started", r)
	}
	x, err := c.NetworkXML("san")
	if err != nil {
		t.Fatal(err)
	}
	def, err := domains.ParseNetworkXML(x)
	if err != nil {
		t.Fatal(err)
	}
	if def.Bridge != "gbr-vmgroup" {
		t.Errorf("san's bridge after the redefinition: %s, want gbr-vmgroup", def.Bridge)
	}
	rows, err := vmnet.ListNetworks(c, s, "hv1", opt)
	if err != nil {
		t.Fatal(err)
	}
	var spec []string
	for _, r := range rows {
		spec = append(spec, r.Name+": "+r.Spec)
	}
	want = []string{"default: not in spec", "flat: in line", "prod: in line", "san: in line"}
	if diff := cmp.Diff(want, spec); diff != "" {
		t.Errorf("ListNetworks (-want +got):\n%s", diff)
	}
}

func TestLibvirtDefineNetworkForeignUntouched(t *testing.T) {
	c := openTest(t)
	s := testSpec(t)
	// Another team's bridge network under the spec's name.
	foreign := `<network><name>prod</name><forward mode='bridge'/><bridge name='br0'/></network>`
	if err := c.DefineNetwork(foreign); err != nil {
		t.Fatal(err)
	}
	before, err := c.NetworkXML("prod")
	if err != nil {
		t.Fatal(err)
	}
	_, err = vmnet.DefineNetwork(c, s, "hv1", "prod", domains.NetworkOptions{})
	if err == nil || !strings.Contains(err.Error(), "is not gallium-net's") {
		t.Fatalf("err = %v, want the foreign network refused", err)
	}
	after, err := c.NetworkXML("prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("the foreign network changed (-before +after):\n%s", diff)
	}
	if st, err := c.NetworkState("prod"); err != nil || st != (vmnet.NetworkState{}) {
		t.Errorf("the foreign network's state: %+v, %v; want inactive, no autostart", st, err)
	}
}
