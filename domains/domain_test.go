package domains

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDomainSamples(t *testing.T) {
	cases := []struct {
		file string
		want Domain
	}{
		{"domain_managed_live.xml", Domain{
			Name: "web-01", UUID: "3f1c2b6e-8d5a-4c3e-9b7f-2a1d0e6c5b4a", Managed: true,
			Meta: &Metadata{Profile: "modern", NICs: []MetadataNIC{
				{"52:54:00:4a:00:01", "prod"}, {"52:54:00:4a:00:02", "flat"}, {"52:54:00:4a:00:03", "backup"}, {"52:54:00:4a:00:04", "dev"},
			}},
			NICs: []NIC{
				{MAC: "52:54:00:4a:00:01", Type: "network", Network: "prod", Bridge: "gbr-vmgroup", Target: "vnet12", Model: "virtio", Managed: true, PortID: "8c1b0f4e-5d2a-4b7c-9e3f-1a2b3c4d5e6f", Alias: "net0"},
				{MAC: "52:54:00:4a:00:02", Type: "network", Network: "flat", Bridge: "gbr-vmgroup", Target: "vnet13", Model: "e1000", Managed: true, PortID: "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b", Alias: "net1"},
				{MAC: "52:54:00:4a:00:03", Type: "bridge", Bridge: "gbr-jumbo", Target: "vnet14", Model: "virtio", MTU: 9000, Managed: true, Alias: "net2"},
				{MAC: "52:54:00:77:88:99", Type: "network", Network: "default", Bridge: "virbr0", Target: "vnet15", Model: "rtl8139", PortID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", Alias: "net3"},
				{MAC: "52:54:00:4a:00:04", Type: "network", Network: "dev", Bridge: "gbr-vmgroup", Target: "vnet16", Model: "virtio", Managed: true, PortID: "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c", Alias: "ua-gallium-dev"},
			},
		}},
		{"domain_unmanaged.xml", Domain{
			Name: "legacy-db", UUID: "c0ffee00-1234-4abc-8def-0123456789ab",
			NICs: []NIC{
				{MAC: "52:54:00:de:ad:01", Type: "bridge", Bridge: "br0", Target: "vnet4", Model: "e1000", MTU: 1400, Alias: "net0"},
				{MAC: "52:54:00:de:ad:02", Type: "direct", Target: "macvtap0", Model: "virtio", Alias: "net1"},
				{MAC: "52:54:00:de:ad:03", Type: "user", Model: "virtio", Alias: "net2"},
			},
		}},
		{"domain_migratable.xml", Domain{
			Name: "db-02", UUID: "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", Managed: true,
			Meta: &Metadata{Profile: "legacy", NICs: []MetadataNIC{{"52:54:00:20:00:01", "san"}, {"52:54:00:20:00:02", "prod"}}},
			NICs: []NIC{
				{MAC: "52:54:00:20:00:01", Type: "bridge", Bridge: "gbr-storage", Model: "e1000", Managed: true},
				{MAC: "52:54:00:20:00:02", Type: "network", Network: "prod", Model: "e1000", Managed: true},
				{MAC: "52:54:00:20:00:03", Type: "bridge", Bridge: "br-mgmt", Model: "virtio"},
			},
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			got, err := ParseDomain(readTestdata(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&c.want, got); diff != "" {
				t.Errorf("ParseDomain (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDomainHelpers(t *testing.T) {
	d, err := ParseDomain(readTestdata(t, "domain_managed_live.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := d.NIC("52:54:00:4A:00:03"); n == nil || n.Target != "vnet14" {
		t.Errorf("NIC lookup = %+v", n)
	}
	if d.NIC("52:54:00:00:00:00") != nil {
		t.Error("NIC lookup found an absent MAC")
	}
	var macs []string
	for _, n := range d.ManagedNICs() {
		macs = append(macs, n.MAC)
	}
	if want := []string{"52:54:00:4a:00:01", "52:54:00:4a:00:02", "52:54:00:4a:00:03", "52:54:00:4a:00:04"}; !reflect.DeepEqual(macs, want) {
		t.Errorf("ManagedNICs = %v, want %v", macs, want)
	}
	if m := d.MissingNICs(); len(m) != 0 {
		t.Errorf("MissingNICs = %v", m)
	}
	d.NICs = d.NICs[:1]
	if m := d.MissingNICs(); len(m) != 3 || m[0].MAC != "52:54:00:4a:00:02" {
		t.Errorf("MissingNICs after dropping NICs = %v", m)
	}
}

// domain builds a minimal domain document around metadata and devices.
func domain(metadata, devices string) []byte {
	return []byte(`<domain type='qemu'><name>t</name><uuid>u-1</uuid><metadata>` + metadata +
		`</metadata><devices>` + devices + `</devices></domain>`)
}

const galliumOne = `<gallium:net xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1"><gallium:nic mac="52:54:00:00:00:01" network="prod"/></gallium:net>`

func TestParseDomainShapes(t *testing.T) {
	cases := []struct {
		name        string
		xml         []byte
		wantManaged bool
		wantNICs    int
	}{
		{"bare metadata element is not ours (libvirt would drop it)", domain(`<net><nic mac="52:54:00:00:00:01" network="prod"/></net>`, `<interface type='network'><mac address='52:54:00:00:00:01'/></interface>`), false, 1},
		{"our local name in another namespace", domain(`<x:net xmlns:x="urn:x"/>`, ``), false, 0},
		{"namespace declared on the root", []byte(`<domain xmlns:g="https://gallium.dev/xmlns/gallium-net/1" type='kvm'><metadata><g:net/></metadata></domain>`), true, 0},
		{"first gallium element wins", domain(galliumOne+`<g2:net xmlns:g2="https://gallium.dev/xmlns/gallium-net/1"><g2:nic mac="bad" network="x"/></g2:net>`, `<interface type='network'><mac address='52:54:00:00:00:01'/></interface>`), true, 1},
		{"no devices, no metadata", []byte(`<domain type='qemu'><name>t</name></domain>`), false, 0},
		{"empty metadata", domain(``, ``), false, 0},
		{"interface outside devices is not a NIC", []byte(`<domain><interface type='network'/><devices/></domain>`), false, 0},
		{"interface nested in a device is not a NIC", domain(``, `<hostdev><interface/></hostdev><interface type='bridge'/>`), false, 1},
		{"malformed <mtu> of an unmanaged NIC does not fail the domain", domain(``, `<interface type='bridge'><mtu size='huge'/></interface>`), false, 1},
		{"namespaced interface is not a NIC", domain(``, `<x:interface xmlns:x="urn:x"/>`), false, 0},
		{"domstatus wrapper", []byte(`<domstatus state='running' pid='1234'><monitor path='/x'/><domain type='qemu'><name>t</name><metadata>` + galliumOne + `</metadata><devices><interface type='network'><mac address='52:54:00:00:00:01'/></interface></devices></domain></domstatus>`), true, 1},
		{"prolog, comments, CDATA and PIs", []byte("<?xml version='1.0' encoding='UTF-8'?>\n<!-- c --><?pi x?>\n<domain><name><![CDATA[t]]></name><devices><!-- c --><interface type='user'/></devices></domain>\n"), false, 1},
		{"unknown elements everywhere", domain(`<a:b xmlns:a="urn:a"><a:c/></a:b>`+galliumOne, `<future-device><interface/></future-device><interface type='network'><mac address='52:54:00:00:00:01'/><future/></interface>`), true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := ParseDomain(c.xml)
			if err != nil {
				t.Fatal(err)
			}
			if d.Managed != c.wantManaged || (d.Meta != nil) != c.wantManaged {
				t.Errorf("Managed = %v (Meta %v), want %v", d.Managed, d.Meta, c.wantManaged)
			}
			if len(d.NICs) != c.wantNICs {
				t.Errorf("%d NICs, want %d: %+v", len(d.NICs), c.wantNICs, d.NICs)
			}
			if c.wantManaged && c.wantNICs > 0 && !d.NICs[0].Managed {
				t.Errorf("NIC listed in the metadata is not managed: %+v", d.NICs[0])
			}
		})
	}
}

func TestParseDomainErrors(t *testing.T) {
	cases := []struct {
		name string
		xml  []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"blank", []byte(" \n\t"), "empty"},
		{"not XML", []byte("hello"), "text before the root"},
		{"wrong root", []byte("<network><name>x</name></network>"), "root element is <network>"},
		{"namespaced root", []byte(`<d:domain xmlns:d="urn:x"/>`), "want <domain>"},
		{"domstatus without domain", []byte("<domstatus><monitor/></domstatus>"), "no <domain>"},
		{"truncated", readTestdata(t, "domain_managed_live.xml")[:2000], "malformed XML"},
		{"mismatched tags", []byte("<domain><name>x</nom></domain>"), "malformed XML"},
		{"unknown entity", []byte("<domain><name>&bogus;</name></domain>"), "malformed XML"},
		{"non-UTF-8 encoding", []byte(`<?xml version="1.0" encoding="ISO-8859-1"?><domain/>`), "malformed XML"},
		{"malformed gallium metadata", domain(`<gallium:net xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1"><gallium:nic mac="fe:00:00:00:00:01" network="prod"/></gallium:net>`, ``), "domain t: gallium-net metadata"},
		{"managed NIC with a bad MTU", domain(galliumOne, `<interface type='network'><mac address='52:54:00:00:00:01'/><mtu size='huge'/></interface>`), "domain t: NIC 52:54:00:00:00:01: <mtu size=\"huge\">"},
		{"too large", append([]byte("<domain>"), make([]byte, MaxDomainXMLBytes)...), "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := ParseDomain(c.xml)
			if err == nil {
				t.Fatalf("no error; got %+v", d)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	_, err := ParseDomain(append([]byte("<domain>"), make([]byte, MaxDomainXMLBytes)...))
	if !errors.Is(err, ErrDomainTooLarge) {
		t.Errorf("oversized input: error %v is not ErrDomainTooLarge", err)
	}
	// Exactly at the cap is still parsed.
	atCap := append(domain("", ""), bytes.Repeat([]byte(" "), MaxDomainXMLBytes-len(domain("", "")))...)
	if _, err := ParseDomain(atCap); err != nil {
		t.Errorf("input of exactly MaxDomainXMLBytes: %v", err)
	}
}

// The XML gallium-net writes is the XML the hook reads: a domain assembled
// from InterfaceXML and ElementXML parses back into the same NICs.
func TestParseDomainOfGeneratedXML(t *testing.T) {
	s := testSpec(t)
	meta := Metadata{Profile: "intel"}
	var devs strings.Builder
	for i, net := range []string{"prod", "flat", "backup"} {
		mac := []string{"52:54:00:30:00:01", "52:54:00:30:00:02", "52:54:00:30:00:03"}[i]
		x, err := InterfaceXML(s, net, "intel", mac)
		if err != nil {
			t.Fatal(err)
		}
		devs.WriteString(x)
		if err := meta.SetNIC(mac, net); err != nil {
			t.Fatal(err)
		}
	}
	el, err := meta.ElementXML()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDomain(domain(el, devs.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := []NIC{
		{MAC: "52:54:00:30:00:01", Type: "network", Network: "prod", Model: "e1000e", Managed: true},
		{MAC: "52:54:00:30:00:02", Type: "network", Network: "flat", Model: "e1000e", Managed: true},
		{MAC: "52:54:00:30:00:03", Type: "network", Network: "backup", Model: "e1000e", MTU: 9000, Managed: true},
	}
	if !reflect.DeepEqual(d.NICs, want) || !reflect.DeepEqual(d.Meta, &meta) {
		t.Errorf("got NICs %+v meta %+v\nwant NICs %+v meta %+v", d.NICs, d.Meta, want, meta)
	}
}

func BenchmarkParseDomain4NICs(b *testing.B) {
	data := readTestdata(b, "domain_4nics.xml")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := ParseDomain(data)
		if err != nil || len(d.NICs) != 4 || !d.NICs[3].Managed {
			b.Fatalf("ParseDomain: %v %+v", err, d)
		}
	}
}

func BenchmarkParseDomainUnmanaged(b *testing.B) {
	data := readTestdata(b, "domain_unmanaged.xml")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDomain(data); err != nil {
			b.Fatal(err)
		}
	}
}
