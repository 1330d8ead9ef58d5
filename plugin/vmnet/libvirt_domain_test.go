package vmnet_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/vmnet"
	"github.com/gallium/gallium-net/plugin/vmnet/libvirtconn"
)

// testDriver is the test driver's connection with the device calls it
// lacks (virDomainAttachDeviceFlags and friends are not implemented there)
// done as libvirt does them to a persistent definition: the <interface>
// added, removed or replaced, and the domain defined again. Everything else,
// metadata included, is the real binding on the real driver.
type testDriver struct{ *libvirtconn.Conn }

func (c testDriver) editConfig(domain string, scope vmnet.Scope, edit func(ifs []libvirtxml.DomainInterface, mac string, i libvirtxml.DomainInterface) []libvirtxml.DomainInterface, x string) error {
	if scope.Live || !scope.Config {
		return errors.New("the test driver changes no running domain's devices")
	}
	var i libvirtxml.DomainInterface
	if err := i.Unmarshal(x); err != nil {
		return err
	}
	mac, err := domains.NormalizeMAC(i.MAC.Address)
	if err != nil {
		return err
	}
	cur, err := c.DomainXML(domain, false)
	if err != nil {
		return err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(cur); err != nil {
		return err
	}
	if d.Devices == nil {
		d.Devices = &libvirtxml.DomainDeviceList{}
	}
	d.Devices.Interfaces = edit(d.Devices.Interfaces, mac, i)
	out, err := d.Marshal()
	if err != nil {
		return err
	}
	dom, err := c.Libvirt().DomainDefineXML(out)
	if err != nil {
		return err
	}
	return dom.Free()
}

func without(ifs []libvirtxml.DomainInterface, mac string) (rest []libvirtxml.DomainInterface, at int) {
	at = -1
	for k, i := range ifs {
		if m, _ := domains.NormalizeMAC(i.MAC.Address); m == mac {
			at = k
			continue
		}
		rest = append(rest, i)
	}
	return rest, at
}

func (c testDriver) AttachDevice(domain, x string, scope vmnet.Scope) error {
	return c.editConfig(domain, scope, func(ifs []libvirtxml.DomainInterface, _ string, i libvirtxml.DomainInterface) []libvirtxml.DomainInterface {
		return append(ifs, i)
	}, x)
}

func (c testDriver) DetachDevice(domain, x string, scope vmnet.Scope) error {
	return c.editConfig(domain, scope, func(ifs []libvirtxml.DomainInterface, mac string, _ libvirtxml.DomainInterface) []libvirtxml.DomainInterface {
		rest, _ := without(ifs, mac)
		return rest
	}, x)
}

func (c testDriver) UpdateDevice(domain, x string, scope vmnet.Scope) error {
	return c.editConfig(domain, scope, func(ifs []libvirtxml.DomainInterface, mac string, i libvirtxml.DomainInterface) []libvirtxml.DomainInterface {
		if _, at := without(ifs, mac); at >= 0 {
			ifs[at] = i
		}
		return ifs
	}, x)
}

// defineVM defines a stopped domain vm1 with no NICs.
func defineVM(t *testing.T, c *libvirtconn.Conn) {
	t.Helper()
	d, err := c.Libvirt().DomainDefineXML(`<domain type='test'><name>vm1</name><memory>1048576</memory><os><type>hvm</type></os></domain>`)
	if err != nil {
		t.Fatal(err)
	}
	_ = d.Free()
}

// nics is the persistent definition's NICs ("MAC network model") and the
// metadata's profile and NICs, as libvirt returns them.
func nics(t *testing.T, c vmnet.Conn, name string) []string {
	t.Helper()
	d, err := vmnet.LoadDomain(c, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range d.Config.NICs {
		out = append(out, "nic "+n.MAC+" "+d.Config.NetworkOf(n)+" "+n.Model)
	}
	if m := d.Config.Meta; m != nil {
		out = append(out, "profile "+m.Profile)
		for _, n := range m.NICs {
			out = append(out, "meta "+n.MAC+" "+n.Network)
		}
	}
	return out
}

func TestLibvirtNICAddProfileRemove(t *testing.T) {
	ctx := context.Background()
	lc := openTest(t)
	c := testDriver{lc}
	s := testSpec(t)
	defineVM(t, lc)

	added, err := vmnet.AddNIC(ctx, c, s, vmnet.LocalMACs{}, nil, vmnet.NewNIC{Domain: "vm1", Network: "prod", Hypervisor: "hv1", MAC: "52-54-00-aa-00-10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vmnet.AddNIC(ctx, c, s, vmnet.LocalMACs{}, nil, vmnet.NewNIC{Domain: "vm1", Network: "flat", MAC: "52:54:00:aa:00:11"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"nic 52:54:00:aa:00:10 prod virtio", "nic 52:54:00:aa:00:11 flat virtio",
		"profile ", "meta 52:54:00:aa:00:10 prod", "meta 52:54:00:aa:00:11 flat",
	}
	if diff := cmp.Diff(want, nics(t, c, "vm1")); diff != "" {
		t.Errorf("after nic add (-want +got):\n%s", diff)
	}
	if _, err := vmnet.AddNIC(ctx, c, s, vmnet.LocalMACs{}, nil, vmnet.NewNIC{Domain: "vm1", Network: "prod", MAC: added.MAC}); err == nil {
		t.Error("the same MAC twice: no error")
	}

	// Profile change: metadata, then the persistent NICs' model.
	if _, err := vmnet.SetProfile(c, s, "vm1", "legacy", true); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"nic 52:54:00:aa:00:10 prod e1000", "nic 52:54:00:aa:00:11 flat e1000",
		"profile legacy", "meta 52:54:00:aa:00:10 prod", "meta 52:54:00:aa:00:11 flat",
	}
	if diff := cmp.Diff(want, nics(t, c, "vm1")); diff != "" {
		t.Errorf("after vm profile legacy --update-nics (-want +got):\n%s", diff)
	}

	if _, err := vmnet.RemoveNIC(c, "vm1", "52-54-00-AA-00-10"); err != nil {
		t.Fatal(err)
	}
	want = []string{"nic 52:54:00:aa:00:11 flat e1000", "profile legacy", "meta 52:54:00:aa:00:11 flat"}
	if diff := cmp.Diff(want, nics(t, c, "vm1")); diff != "" {
		t.Errorf("after nic remove (-want +got):\n%s", diff)
	}
}

// The test driver's running domain "test": a profile change writes the
// metadata of both definitions through the real virDomainSetMetadata.
func TestLibvirtProfileOfRunningDomain(t *testing.T) {
	c := openTest(t)
	s := testSpec(t)
	ch, err := vmnet.SetProfile(c, s, "test", "legacy", false)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Active || ch.Set != "legacy" || len(ch.NICs) != 0 {
		t.Errorf("SetProfile: %+v", ch)
	}
	d, err := vmnet.LoadDomain(c, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*domains.Domain{d.Config, d.Live} {
		if x.Meta == nil || x.Meta.Profile != "legacy" {
			t.Errorf("metadata %+v, want profile legacy", x.Meta)
		}
	}
	p, err := vmnet.ShowProfile(c, s, "test")
	if err != nil {
		t.Fatal(err)
	}
	if p.Set != "legacy" || p.Profile.NICModel != "e1000" {
		t.Errorf("ShowProfile: %+v", p)
	}
}
