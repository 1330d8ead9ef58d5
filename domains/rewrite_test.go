package domains

import (
	"github.com/gallium/gallium-net/test/testenv"

	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
)

func TestRewriteDomainUnchanged(t *testing.T) {
	for _, file := range []string{"domain_managed_live.xml", "domain_unmanaged.xml", "domain_migratable.xml"} {
		in := readTestdata(t, file)
		for name, fn := range map[string]func(*NIC) bool{
			"returns false":        func(*NIC) bool { return false },
			"returns true, same":   func(*NIC) bool { return true },
			"changes then says no": func(n *NIC) bool { n.Bridge = "gbr-x"; return false },
			"sets the same values": func(n *NIC) bool { n.Bridge = strings.Clone(n.Bridge); return true },
			"nil rewrite":          nil,
			"only flips Managed":   func(n *NIC) bool { n.Managed = !n.Managed; return true },
		} {
			t.Run(file+"/"+name, func(t *testing.T) {
				out, changed, err := RewriteDomain(in, fn)
				if err != nil {
					t.Fatal(err)
				}
				if changed || !bytes.Equal(out, in) {
					t.Errorf("changed=%v, output differs=%v; want unchanged", changed, !bytes.Equal(out, in))
				}
			})
		}
	}
}

func TestRewriteDomainOnlyManagedNICs(t *testing.T) {
	var seen []string
	in := readTestdata(t, "domain_managed_live.xml")
	if _, _, err := RewriteDomain(in, func(n *NIC) bool { seen = append(seen, n.MAC); return false }); err != nil {
		t.Fatal(err)
	}
	want := "52:54:00:4a:00:01 52:54:00:4a:00:02 52:54:00:4a:00:03 52:54:00:4a:00:04"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("rewrite saw %s, want the managed NICs %s", got, want)
	}
	seen = nil
	if _, _, err := RewriteDomain(readTestdata(t, "domain_unmanaged.xml"), func(n *NIC) bool { seen = append(seen, n.MAC); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Errorf("rewrite called for NICs of an unmanaged domain: %v", seen)
	}
}

// A migration target whose storage bridge has another name: the bridge NIC
// moves, everything else stays byte for byte.
func TestRewriteDomainBridge(t *testing.T) {
	in := readTestdata(t, "domain_migratable.xml")
	out, changed, err := RewriteDomain(in, func(n *NIC) bool {
		if n.Type == "bridge" && n.Bridge == "gbr-storage" {
			n.Bridge = "gbr-jumbo"
			n.MTU = 9000
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("changed = false")
	}
	testenv.Golden(t, "rewrite_migratable_bridge.xml", string(out))
	d, err := ParseDomain(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []NIC{
		{MAC: "52:54:00:20:00:01", Type: "bridge", Bridge: "gbr-jumbo", Model: "e1000", MTU: 9000, Managed: true},
		{MAC: "52:54:00:20:00:02", Type: "network", Network: "prod", Model: "e1000", Managed: true},
		{MAC: "52:54:00:20:00:03", Type: "bridge", Bridge: "br-mgmt", Model: "virtio"},
	}
	for i := range want {
		if diff := cmp.Diff(want[i], d.NICs[i]); diff != "" {
			t.Errorf("NIC %d (-want +got):\n%s", i, diff)
		}
	}
	// Only the first interface element changed.
	start := bytes.Index(in, []byte("<interface type='bridge'>"))
	end := bytes.Index(in, []byte("<interface type='network'>"))
	if !bytes.HasPrefix(out, in[:start]) || !bytes.HasSuffix(out, in[end:]) {
		t.Error("bytes outside the rewritten <interface> changed")
	}
	// The rewritten element keeps what the NIC struct does not carry.
	var iface libvirtxml.DomainInterface
	if err := iface.Unmarshal(string(out[start : len(out)-len(in)+end])); err != nil {
		t.Fatal(err)
	}
	if iface.Address == nil || iface.Address.PCI == nil || *iface.Address.PCI.Bus != 1 {
		t.Errorf("PCI address lost: %+v", iface.Address)
	}
}

// Network to bridge and back, target and model edits on the live sample.
func TestRewriteDomainFields(t *testing.T) {
	in := readTestdata(t, "domain_managed_live.xml")
	out, changed, err := RewriteDomain(in, func(n *NIC) bool {
		switch n.MAC {
		case "52:54:00:4a:00:01": // network -> bridge
			n.Type, n.Network, n.PortID = "bridge", "", ""
			return true
		case "52:54:00:4a:00:03": // bridge -> network
			n.Type, n.Network, n.Bridge = "network", "backup", ""
			return true
		case "52:54:00:4a:00:04": // drop runtime values, change model
			n.Target, n.Alias, n.Model, n.MTU = "", "", "e1000e", 1400
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("changed = false")
	}
	d, err := ParseDomain(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string]NIC{
		"52:54:00:4a:00:01": {MAC: "52:54:00:4a:00:01", Type: "bridge", Bridge: "gbr-vmgroup", Target: "vnet12", Model: "virtio", Managed: true, Alias: "net0"},
		"52:54:00:4a:00:02": {MAC: "52:54:00:4a:00:02", Type: "network", Network: "flat", Bridge: "gbr-vmgroup", Target: "vnet13", Model: "e1000", Managed: true, PortID: "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b", Alias: "net1"},
		"52:54:00:4a:00:03": {MAC: "52:54:00:4a:00:03", Type: "network", Network: "backup", Target: "vnet14", Model: "virtio", MTU: 9000, Managed: true, Alias: "net2"},
		"52:54:00:4a:00:04": {MAC: "52:54:00:4a:00:04", Type: "network", Network: "dev", Bridge: "gbr-vmgroup", Model: "e1000e", MTU: 1400, Managed: true, PortID: "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c"},
	}
	if len(d.NICs) != 5 {
		t.Fatalf("%d NICs after rewrite, want 5", len(d.NICs))
	}
	for _, n := range d.NICs {
		if w, ok := want[n.MAC]; ok && n != w {
			t.Errorf("NIC %s (-want +got):\n%s", n.MAC, cmp.Diff(w, n))
		}
	}
	if !bytes.Contains(out, []byte("<qemu:commandline>")) || !bytes.Contains(out, []byte("<nova:net>not ours")) {
		t.Error("content outside the interfaces was lost")
	}
}

func TestRewriteDomainErrors(t *testing.T) {
	in := readTestdata(t, "domain_managed_live.xml")
	cases := []struct {
		name string
		fn   func(*NIC) bool
		want string
	}{
		{"MAC change", func(n *NIC) bool { n.MAC = "52:54:00:ff:ff:ff"; return true }, "may not change the MAC"},
		{"unsupported type", func(n *NIC) bool { n.Type = "direct"; return true }, `type "direct"`},
		{"bridge without bridge", func(n *NIC) bool { n.Type, n.Bridge = "bridge", ""; return true }, "needs a source bridge"},
		{"network without network", func(n *NIC) bool { n.Type, n.Network = "network", ""; return true }, "needs a source network"},
		{"MTU out of range", func(n *NIC) bool { n.MTU = 70000; return true }, "out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, changed, err := RewriteDomain(in, c.fn)
			if err == nil {
				t.Fatalf("no error (changed=%v)\n%s", changed, out)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "domain web-01: NIC 52:54:00:4a:00:01") {
				t.Errorf("error %q does not name the domain, NIC and %q", err, c.want)
			}
		})
	}
	if _, _, err := RewriteDomain([]byte("<domain"), func(*NIC) bool { return true }); err == nil {
		t.Error("malformed input: no error")
	}
}
