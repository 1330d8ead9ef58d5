package domains

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
)

// liveInterface parses the <interface> with MAC mac out of the managed live
// test domain, the reference the helpers' output is compared with.
func liveInterface(t *testing.T, mac string) libvirtxml.DomainInterface {
	t.Helper()
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(string(readTestdata(t, "domain_managed_live.xml"))); err != nil {
		t.Fatal(err)
	}
	for _, i := range dom.Devices.Interfaces {
		if i.MAC != nil && i.MAC.Address == mac {
			return i
		}
	}
	t.Fatalf("no interface %s in domain_managed_live.xml", mac)
	return libvirtxml.DomainInterface{}
}

func parseInterface(t *testing.T, x string) libvirtxml.DomainInterface {
	t.Helper()
	var i libvirtxml.DomainInterface
	if err := i.Unmarshal(x); err != nil {
		t.Fatalf("%v: %s", err, x)
	}
	return i
}

func TestInterfaceElement(t *testing.T) {
	dom := string(readTestdata(t, "domain_managed_live.xml"))
	// The XML writes the MAC in upper case; the caller in dashes: both are
	// the same NIC.
	got, err := InterfaceElement(dom, "52-54-00-4a-00-02")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(liveInterface(t, "52:54:00:4A:00:02"), parseInterface(t, got)); diff != "" {
		t.Errorf("InterfaceElement (-want +got):\n%s", diff)
	}
	if _, err := InterfaceElement(dom, "52:54:00:00:00:99"); !errors.Is(err, ErrNoInterface) {
		t.Errorf("unknown MAC: err = %v, want ErrNoInterface", err)
	}
	if _, err := InterfaceElement("<domain", "52:54:00:4a:00:02"); err == nil {
		t.Error("malformed domain XML: no error")
	}
}

func TestInterfaceWithModel(t *testing.T) {
	dom := string(readTestdata(t, "domain_managed_live.xml"))
	got, err := InterfaceWithModel(dom, "52:54:00:4a:00:03", "e1000")
	if err != nil {
		t.Fatal(err)
	}
	// Everything but the model stays: the update replaces the whole device.
	want := liveInterface(t, "52:54:00:4a:00:03")
	want.Model = &libvirtxml.DomainInterfaceModel{Type: "e1000"}
	if diff := cmp.Diff(want, parseInterface(t, got)); diff != "" {
		t.Errorf("InterfaceWithModel (-want +got):\n%s", diff)
	}
	if _, err := InterfaceWithModel(dom, "52:54:00:00:00:99", "e1000"); !errors.Is(err, ErrNoInterface) {
		t.Errorf("unknown MAC: err = %v, want ErrNoInterface", err)
	}
}

func TestWithNetworkUUID(t *testing.T) {
	in := string(readTestdata(t, "network_prod_tagged.xml"))
	got, err := WithNetworkUUID(in, "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
	if err != nil {
		t.Fatal(err)
	}
	var want, back libvirtxml.Network
	if err := want.Unmarshal(in); err != nil {
		t.Fatal(err)
	}
	want.UUID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
	if err := back.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("WithNetworkUUID (-want +got):\n%s", diff)
	}
}

func TestLiveInterfaceXML(t *testing.T) {
	s := testSpec(t)
	dom, err := ParseDomain(readTestdata(t, "domain_managed_live.xml"))
	if err != nil {
		t.Fatal(err)
	}
	// NIC net1 runs as e1000 under profile modern (virtio): a live move
	// keeps the model it runs with, and its alias.
	n := *dom.NIC("52:54:00:4a:00:02")
	got, err := LiveInterfaceXML(s, dom, n, "prod")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Interface(s, "prod", "modern", n.MAC)
	if err != nil {
		t.Fatal(err)
	}
	want.Model = &libvirtxml.DomainInterfaceModel{Type: "e1000"}
	want.Alias = &libvirtxml.DomainAlias{Name: "net1"}
	if diff := cmp.Diff(*want, parseInterface(t, got)); diff != "" {
		t.Errorf("LiveInterfaceXML (-want +got):\n%s", diff)
	}
}
