package vmnet

import (
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

//go:embed testdata/cluster.yaml
var clusterYAML []byte

// testSpec parses testdata/cluster.yaml afresh (tests change their copy)
// and checks that it is valid, so that a test never runs on a spec the
// tool would refuse.
func testSpec(t testing.TB) *model.Spec {
	t.Helper()
	s, err := specfile.Parse(clusterYAML, "testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fs := model.Validate(s); fs.HasErrors() {
		t.Fatalf("testdata/cluster.yaml is invalid: %v", fs.Errors())
	}
	return s
}

// fakeNet is a network of fakeConn.
type fakeNet struct {
	xml   string
	state NetworkState
	ports int
}

// fakeDom is a domain of fakeConn: its persistent and (when running) live
// definitions.
type fakeDom struct {
	config, live *libvirtxml.Domain
}

// fakeConn is an in-memory Conn. calls records every change, so that a test
// can check that a converged host gets none and a foreign network is never
// touched.
type fakeConn struct {
	version uint32
	nets    map[string]*fakeNet
	doms    map[string]*fakeDom
	calls   []string
	// fail makes the named call ("AttachDevice", ...) fail.
	fail map[string]error
}

func newFakeConn() *fakeConn {
	return &fakeConn{version: 9000000, nets: map[string]*fakeNet{}, doms: map[string]*fakeDom{}}
}

func (f *fakeConn) change(call string, args ...any) error {
	f.calls = append(f.calls, fmt.Sprint(append([]any{call}, args...)...))
	return f.fail[call]
}

func (f *fakeConn) LibVersion() (uint32, error) { return f.version, nil }

func (f *fakeConn) NetworkNames() ([]string, error) {
	var out []string
	for n := range f.nets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeConn) net(name string) (*fakeNet, error) {
	n, ok := f.nets[name]
	if !ok {
		return nil, fmt.Errorf("network %s: %w", name, ErrNotFound)
	}
	return n, nil
}

func (f *fakeConn) NetworkXML(name string) (string, error) {
	n, err := f.net(name)
	if err != nil {
		return "", err
	}
	return n.xml, nil
}

func (f *fakeConn) DefineNetwork(x string) error {
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		return err
	}
	if err := f.change("define ", n.Name); err != nil {
		return err
	}
	if old, ok := f.nets[n.Name]; ok {
		if n.UUID != old.uuid() {
			return fmt.Errorf("network %s exists with another UUID", n.Name)
		}
		old.xml = x
		return nil
	}
	if n.UUID == "" {
		n.UUID = fmt.Sprintf("00000000-0000-0000-0000-%012d", len(f.nets)+1)
		x, _ = n.Marshal()
	}
	f.nets[n.Name] = &fakeNet{xml: x}
	return nil
}

func (n *fakeNet) uuid() string {
	var x libvirtxml.Network
	_ = x.Unmarshal(n.xml)
	return x.UUID
}

func (f *fakeConn) NetworkState(name string) (NetworkState, error) {
	n, err := f.net(name)
	if err != nil {
		return NetworkState{}, err
	}
	return n.state, nil
}

func (f *fakeConn) NetworkPorts(name string) (int, error) {
	n, err := f.net(name)
	if err != nil {
		return 0, err
	}
	return n.ports, nil
}

func (f *fakeConn) StartNetwork(name string) error {
	n, err := f.net(name)
	if err != nil {
		return err
	}
	if n.state.Active {
		return errors.New("network is already active")
	}
	n.state.Active = true
	return f.change("start ", name)
}

func (f *fakeConn) StopNetwork(name string) error {
	n, err := f.net(name)
	if err != nil {
		return err
	}
	n.state.Active = false
	return f.change("stop ", name)
}

func (f *fakeConn) SetNetworkAutostart(name string, on bool) error {
	n, err := f.net(name)
	if err != nil {
		return err
	}
	n.state.Autostart = on
	return f.change("autostart ", name)
}

func (f *fakeConn) DomainNames() ([]string, error) {
	var out []string
	for n := range f.doms {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeConn) dom(name string) (*fakeDom, error) {
	d, ok := f.doms[name]
	if !ok {
		return nil, fmt.Errorf("domain %s: %w", name, ErrNotFound)
	}
	return d, nil
}

func (f *fakeConn) DomainActive(name string) (bool, error) {
	d, err := f.dom(name)
	if err != nil {
		return false, err
	}
	return d.live != nil, nil
}

func (f *fakeConn) DomainXML(name string, live bool) (string, error) {
	d, err := f.dom(name)
	if err != nil {
		return "", err
	}
	if live {
		return d.live.Marshal()
	}
	return d.config.Marshal()
}

// each runs edit on the definitions scope names.
func (d *fakeDom) each(scope Scope, edit func(*libvirtxml.Domain) error) error {
	if scope.Live && d.live == nil {
		return errors.New("domain is not running")
	}
	for _, x := range []struct {
		on  bool
		dom *libvirtxml.Domain
	}{{scope.Config, d.config}, {scope.Live, d.live}} {
		if x.on {
			if err := edit(x.dom); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeConn) SetMetadata(name, x string, scope Scope) error {
	d, err := f.dom(name)
	if err != nil {
		return err
	}
	if err := f.change("metadata ", name); err != nil {
		return err
	}
	// libvirt puts the element into the namespace it is given.
	m, err := domains.ParseMetadata(x)
	if err != nil {
		return err
	}
	el, err := m.ElementXML()
	if err != nil {
		return err
	}
	return d.each(scope, func(dom *libvirtxml.Domain) error {
		dom.Metadata = &libvirtxml.DomainMetadata{XML: el}
		return nil
	})
}

func (f *fakeConn) AttachDevice(name, x string, scope Scope) error {
	d, err := f.dom(name)
	if err != nil {
		return err
	}
	if err := f.change("attach ", name); err != nil {
		return err
	}
	return d.each(scope, func(dom *libvirtxml.Domain) error { return attachInterface(dom, x) })
}

func (f *fakeConn) DetachDevice(name, x string, scope Scope) error {
	d, err := f.dom(name)
	if err != nil {
		return err
	}
	if err := f.change("detach ", name); err != nil {
		return err
	}
	return d.each(scope, func(dom *libvirtxml.Domain) error { return detachInterface(dom, x) })
}

func (f *fakeConn) UpdateDevice(name, x string, scope Scope) error {
	d, err := f.dom(name)
	if err != nil {
		return err
	}
	if err := f.change("update ", name); err != nil {
		return err
	}
	return d.each(scope, func(dom *libvirtxml.Domain) error { return updateInterface(dom, x) })
}

// The device edits below do what libvirt does to a definition, for the fake
// and for the test driver (which implements none of the device calls).

func parseIface(x string) (*libvirtxml.DomainInterface, string, error) {
	var i libvirtxml.DomainInterface
	if err := i.Unmarshal(x); err != nil {
		return nil, "", err
	}
	if i.MAC == nil {
		return nil, "", errors.New("interface without a MAC")
	}
	mac, err := domains.NormalizeMAC(i.MAC.Address)
	return &i, mac, err
}

func ifaceIndex(dom *libvirtxml.Domain, mac string) int {
	if dom.Devices == nil {
		return -1
	}
	for k, i := range dom.Devices.Interfaces {
		if i.MAC != nil {
			if m, _ := domains.NormalizeMAC(i.MAC.Address); m == mac {
				return k
			}
		}
	}
	return -1
}

func attachInterface(dom *libvirtxml.Domain, x string) error {
	i, mac, err := parseIface(x)
	if err != nil {
		return err
	}
	if ifaceIndex(dom, mac) >= 0 {
		return fmt.Errorf("MAC %s is already in use", mac)
	}
	if dom.Devices == nil {
		dom.Devices = &libvirtxml.DomainDeviceList{}
	}
	dom.Devices.Interfaces = append(dom.Devices.Interfaces, *i)
	return nil
}

func detachInterface(dom *libvirtxml.Domain, x string) error {
	_, mac, err := parseIface(x)
	if err != nil {
		return err
	}
	k := ifaceIndex(dom, mac)
	if k < 0 {
		return fmt.Errorf("no interface %s", mac)
	}
	dom.Devices.Interfaces = append(dom.Devices.Interfaces[:k], dom.Devices.Interfaces[k+1:]...)
	return nil
}

func updateInterface(dom *libvirtxml.Domain, x string) error {
	i, mac, err := parseIface(x)
	if err != nil {
		return err
	}
	k := ifaceIndex(dom, mac)
	if k < 0 {
		return fmt.Errorf("no interface %s", mac)
	}
	// libvirt keeps a running NIC's tap across an update.
	if i.Target == nil {
		i.Target = dom.Devices.Interfaces[k].Target
	}
	dom.Devices.Interfaces[k] = *i
	return nil
}

// addDomain adds a domain named name with NICs of the given MACs on network
// default (not gallium-net's); running gives it a live definition too.
func (f *fakeConn) addDomain(t *testing.T, name string, running bool, macs ...string) {
	t.Helper()
	mk := func() *libvirtxml.Domain {
		d := &libvirtxml.Domain{Type: "kvm", Name: name, UUID: fmt.Sprintf("%08d-0000-0000-0000-000000000000", len(f.doms)+1), Devices: &libvirtxml.DomainDeviceList{}}
		for _, m := range macs {
			d.Devices.Interfaces = append(d.Devices.Interfaces, libvirtxml.DomainInterface{
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: m},
				Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: "default"}},
			})
		}
		return d
	}
	d := &fakeDom{config: mk()}
	if running {
		d.live = mk()
	}
	f.doms[name] = d
}
