package domains

import (
	"github.com/gallium/gallium-net/test/testenv"

	"reflect"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/google/go-cmp/cmp"
)

func TestNetworkXMLGolden(t *testing.T) {
	s := testSpec(t)
	cases := []struct {
		golden, network, hv string
		native              bool
		wantBridge          string
		wantVLAN            int
	}{
		{"network_prod_tagged.xml", "prod", "hv1", false, "gbr-vmgroup", 0},
		{"network_prod_tagged_native.xml", "prod", "hv1", true, "gbr-vmgroup", 100},
		{"network_flat_untagged.xml", "flat", "hv2", false, "gbr-vmgroup", 0},
		{"network_flat_untagged_native.xml", "flat", "hv2", true, "gbr-vmgroup", 0},
		{"network_backup_jumbo.xml", "backup", "hv2", false, "gbr-jumbo", 0},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			got, err := NetworkXML(s, c.network, c.hv, NetworkOptions{NativeVLAN: c.native})
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, c.golden, got)

			// Round trip through libvirtxml: what we wrote is what we meant.
			want, err := Network(s, c.network, c.hv, NetworkOptions{NativeVLAN: c.native})
			if err != nil {
				t.Fatal(err)
			}
			var back libvirtxml.Network
			if err := back.Unmarshal(got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, &back); diff != "" {
				t.Errorf("round trip differs (-want +got):\n%s", diff)
			}

			def, err := ParseNetworkXML(got)
			if err != nil {
				t.Fatal(err)
			}
			wantDef := &NetworkDef{Name: c.network, ForwardMode: "bridge", Bridge: c.wantBridge, VLAN: c.wantVLAN}
			if diff := cmp.Diff(wantDef, def); diff != "" {
				t.Errorf("ParseNetworkXML (-want +got):\n%s", diff)
			}
			if !def.Owned() {
				t.Error("gallium-net's own network is not recognised as owned")
			}
		})
	}
}

func TestNetworkOptionsFor(t *testing.T) {
	for v, want := range map[uint32]bool{9_000_000: false, 10_10_000: false, 10_999_999: false, 11_000_000: true, 12_007_000: true} {
		if got := NetworkOptionsFor(v).NativeVLAN; got != want {
			t.Errorf("NetworkOptionsFor(%d).NativeVLAN = %v, want %v", v, got, want)
		}
	}
}

func TestNetworkXMLErrors(t *testing.T) {
	s := testSpec(t)
	cases := []struct {
		name, network, hv string
		want              []string // substrings of the error
	}{
		{"unknown network", "nope", "hv1", []string{`network "nope"`, "prod, flat, backup, san"}},
		{"unknown hypervisor", "prod", "hv9", []string{`hypervisor "hv9"`, "hv1, hv2, hv3", "--hypervisor"}},
		{"group absent on hypervisor", "backup", "hv3", []string{`network "backup"`, `"jumbo"`, `hypervisor "hv3"`, "adapterGroups[jumbo].adapters"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NetworkXML(s, c.network, c.hv, NetworkOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	t.Run("network on unknown group", func(t *testing.T) {
		s := testSpec(t)
		s.Networks[0].AdapterGroup = "ghost"
		if _, err := NetworkXML(s, "prod", "hv1", NetworkOptions{}); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
			t.Errorf("error = %v, want one naming the group", err)
		}
	})
	t.Run("nil spec", func(t *testing.T) {
		if _, err := NetworkXML(nil, "prod", "hv1", NetworkOptions{}); err == nil {
			t.Error("no error")
		}
	})
}

// libvirt's own formatting of networks (single quotes, self-closing tags,
// uuid, connections), as virsh net-dumpxml prints them.
const (
	libvirtGalliumNet = `<network connections='2'>
  <name>prod</name>
  <uuid>6cec7af7-271a-4edb-b6ce-3f73b0f90af8</uuid>
  <forward mode='bridge'/>
  <bridge name='gbr-vmgroup'/>
</network>`
	libvirtDefaultNet = `<network>
  <name>default</name>
  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`
	libvirtHostBridge = `<network>
  <name>host-bridge</name>
  <forward mode='bridge'/>
  <bridge name='br0'/>
</network>`
	libvirtMacvtap = `<network>
  <name>macvtap</name>
  <forward mode='bridge'>
    <interface dev='eno4'/>
  </forward>
</network>`
)

func TestOwnedNetworkXML(t *testing.T) {
	cases := []struct {
		name, xml string
		want      bool
	}{
		{"gallium network as libvirt formats it", libvirtGalliumNet, true},
		{"libvirt default NAT network", libvirtDefaultNet, false},
		{"operator's bridge network", libvirtHostBridge, false},
		{"macvtap network", libvirtMacvtap, false},
		{"isolated network on a gallium-looking bridge", `<network><name>x</name><bridge name='gbr-vmgroup'/></network>`, false},
		{"nat network on a gallium-looking bridge", `<network><name>x</name><forward/><bridge name='gbr-vmgroup'/></network>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := OwnedNetworkXML(c.xml)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("OwnedNetworkXML = %v, want %v", got, c.want)
			}
		})
	}
	if _, err := OwnedNetworkXML("<network><name>x"); err == nil {
		t.Error("malformed XML: no error")
	}
	if _, err := OwnedNetworkXML(strings.Repeat(" ", MaxDomainXMLBytes+1)); err == nil {
		t.Error("oversized XML: no error")
	}
}

func TestParseNetworkXMLForeign(t *testing.T) {
	d, err := ParseNetworkXML(libvirtDefaultNet)
	if err != nil {
		t.Fatal(err)
	}
	want := &NetworkDef{Name: "default", UUID: "9a05da11-e96b-47f3-8253-a3a482e445f5", ForwardMode: "nat", Bridge: "virbr0",
		Extra: []string{"forward device", "ip", "mac"}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	d, err = ParseNetworkXML(`<network><name>t</name><forward mode='bridge'/><bridge name='gbr-a'/><vlan trunk='yes'><tag id='10'/><tag id='20' nativeMode='untagged'/></vlan></network>`)
	if err != nil {
		t.Fatal(err)
	}
	if d.VLAN != 0 || d.VLANSpec != "trunk=yes, tag 10, tag 20 (native untagged)" {
		t.Errorf("trunk VLAN parsed as VLAN=%d VLANSpec=%q", d.VLAN, d.VLANSpec)
	}
}

func TestNetworkDrift(t *testing.T) {
	s := testSpec(t)
	want, err := NetworkXML(s, "prod", "hv1", NetworkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantNative, err := NetworkXML(s, "prod", "hv1", NetworkOptions{NativeVLAN: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		want, have string
		diffs      []string
	}{
		{"libvirt's formatting of the same definition", want, libvirtGalliumNet, nil},
		{"bridge moved", want, strings.Replace(libvirtGalliumNet, "gbr-vmgroup", "gbr-other", 1),
			[]string{`bridge is "gbr-other", want "gbr-vmgroup"`}},
		{"native VLAN missing", wantNative, libvirtGalliumNet,
			[]string{"VLAN is none (untagged, or set by the hook), want tag 100"}},
		{"VLAN changed", wantNative, strings.Replace(wantNative, `id="100"`, `id="101"`, 1),
			[]string{"VLAN is tag 101, want tag 100"}},
		{"forward mode and extras", want, `<network><name>prod</name><forward mode='nat'/><bridge name='gbr-vmgroup'/><ip address='10.0.0.1' prefix='24'/><portgroup name='pg'/></network>`,
			[]string{`forward mode is "nat", want "bridge"`, "has ip, portgroup, which gallium-net does not define"}},
		{"renamed", want, strings.Replace(libvirtGalliumNet, "<name>prod<", "<name>prod2<", 1),
			[]string{`name is "prod2", want "prod"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drift, diffs, err := NetworkDrift(c.want, c.have)
			if err != nil {
				t.Fatal(err)
			}
			if drift != (len(c.diffs) > 0) || !reflect.DeepEqual(diffs, c.diffs) {
				t.Errorf("NetworkDrift = %v %q, want %q", drift, diffs, c.diffs)
			}
		})
	}
	if _, _, err := NetworkDrift(want, "<nope"); err == nil || !strings.Contains(err.Error(), "libvirt's definition") {
		t.Errorf("malformed have: err = %v", err)
	}
	if _, _, err := NetworkDrift("", libvirtGalliumNet); err == nil || !strings.Contains(err.Error(), "wanted definition") {
		t.Errorf("malformed want: err = %v", err)
	}
}
