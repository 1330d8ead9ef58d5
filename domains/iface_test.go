package domains

import (
	"github.com/gallium/gallium-net/test/testenv"

	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/google/go-cmp/cmp"
)

func TestInterfaceXMLGolden(t *testing.T) {
	s := testSpec(t)
	cases := []struct {
		golden, network, profile, mac string
		wantModel                     string
		wantMTU                       uint
	}{
		{"interface_modern_virtio.xml", "prod", "modern", "52:54:00:12:34:56", "virtio", 0},
		{"interface_legacy_e1000.xml", "flat", "legacy", "52:54:00:12:34:57", "e1000", 0},
		// "" is the cluster's defaultProfile, legacy in testdata/cluster.yaml.
		{"interface_default_profile.xml", "prod", "", "52:54:00:12:34:58", "e1000", 0},
		{"interface_intel_e1000e.xml", "prod", "intel", "52:54:00:12:34:59", "e1000e", 0},
		{"interface_vmware_vmxnet3.xml", "prod", "vmware", "52:54:00:12:34:5a", "vmxnet3", 0},
		// backup inherits the jumbo group's MTU 9000.
		{"interface_mtu9000.xml", "backup", "modern", "52:54:00:12:34:5b", "virtio", 9000},
		// san sets 1500 on the 9000 group: the default, so no <mtu>.
		{"interface_mtu1500.xml", "san", "modern", "52:54:00:12:34:5c", "virtio", 0},
		// Upper-case input MACs come out lower case.
		{"interface_mac_uppercase.xml", "prod", "modern", "52:54:00:AB:CD:EF", "virtio", 0},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			got, err := InterfaceXML(s, c.network, c.profile, c.mac)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, c.golden, got)

			var back libvirtxml.DomainInterface
			if err := back.Unmarshal(got); err != nil {
				t.Fatal(err)
			}
			want, err := Interface(s, c.network, c.profile, c.mac)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, &back); diff != "" {
				t.Errorf("round trip differs (-want +got):\n%s", diff)
			}
			if back.Source == nil || back.Source.Network == nil || back.Source.Network.Network != c.network {
				t.Errorf("source network is not %s: %+v", c.network, back.Source)
			}
			if back.Model == nil || back.Model.Type != c.wantModel {
				t.Errorf("model = %+v, want %s", back.Model, c.wantModel)
			}
			gotMTU := uint(0)
			if back.MTU != nil {
				gotMTU = back.MTU.Size
			}
			if gotMTU != c.wantMTU {
				t.Errorf("mtu = %d, want %d", gotMTU, c.wantMTU)
			}
			if back.MAC == nil || back.MAC.Address != strings.ToLower(c.mac) {
				t.Errorf("mac = %+v, want %s", back.MAC, strings.ToLower(c.mac))
			}
		})
	}
}

func TestInterfaceXMLErrors(t *testing.T) {
	s := testSpec(t)
	cases := []struct {
		name, network, profile, mac string
		want                        []string
	}{
		{"unknown network", "nope", "modern", "52:54:00:12:34:56", []string{`network "nope"`, "prod, flat, backup, san"}},
		{"unknown profile", "prod", "fancy", "52:54:00:12:34:56", []string{`profile "fancy"`, "modern, legacy, intel, vmware"}},
		{"empty MAC", "prod", "modern", "", []string{`"" is not a MAC`}},
		{"multicast MAC", "prod", "modern", "01:00:5e:00:00:01", []string{"multicast"}},
		{"0xFE MAC", "prod", "modern", "fe:54:00:12:34:56", []string{"starts with fe", "tap"}},
		{"all-zero MAC", "prod", "modern", "00:00:00:00:00:00", []string{"all zero"}},
		{"short MAC", "prod", "modern", "52:54:00:12:34", []string{"six hex pairs"}},
		{"EUI-64", "prod", "modern", "52:54:00:12:34:56:78:9a", []string{"six hex pairs"}},
		{"garbage", "prod", "modern", "hello", []string{`"hello"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := InterfaceXML(s, c.network, c.profile, c.mac)
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
	t.Run("profile without model", func(t *testing.T) {
		s := testSpec(t)
		s.HardwareProfiles[0].NICModel = ""
		if _, err := InterfaceXML(s, "prod", "modern", "52:54:00:12:34:56"); err == nil || !strings.Contains(err.Error(), "nicModel") {
			t.Errorf("err = %v, want one naming nicModel", err)
		}
	})
	t.Run("nil spec", func(t *testing.T) {
		if _, err := InterfaceXML(nil, "prod", "", "52:54:00:12:34:56"); err == nil {
			t.Error("no error")
		}
	})
}

func TestNormalizeMAC(t *testing.T) {
	good := map[string]string{
		"52:54:00:12:34:56": "52:54:00:12:34:56",
		"52:54:00:AB:cd:EF": "52:54:00:ab:cd:ef",
		"02:00:00:00:00:01": "02:00:00:00:00:01", // locally administered is fine
		"fc:00:00:00:00:01": "fc:00:00:00:00:01",
		// The forms model.ParseVMMAC reads, so that `nic add --mac` and
		// `nic remove` agree.
		"52-54-00-AB-CD-EF":  "52:54:00:ab:cd:ef",
		"5254.00ab.cdef":     "52:54:00:ab:cd:ef",
		" 52:54:00:12:34:56": "52:54:00:12:34:56",
	}
	for in, want := range good {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ff:ff:ff:ff:ff:ff", "53:54:00:12:34:56", "fe:00:00:00:00:01", "00:00:00:00:00:00", "52:54:00:12:34:5g", "52:54:00:12:34:56:78"} {
		if got, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) = %q, want an error", bad, got)
		}
	}
}
