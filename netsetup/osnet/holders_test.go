package osnet

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// hv1 of examples/cluster.yaml as Debian's installer leaves it (ifupdown
// holds eno1 and the management IP), plus a networkd catch-all that would
// adopt every link, an inert NetworkManager profile, and eno3 matched by MAC.
func TestCheckOSManagers(t *testing.T) {
	s, err := specfile.Load("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mgmt := netip.MustParsePrefix("192.168.1.101/24")
	claims := []Claim{
		{Manager: Ifupdown, File: "/etc/network/interfaces", Line: 9, Names: []string{"eno1"}, What: "allow-hotplug eno1"},
		{Manager: Ifupdown, File: "/etc/network/interfaces", Line: 10, Names: []string{"eno1"}, Addresses: []netip.Prefix{mgmt}, What: "iface eno1 inet static"},
		{Manager: Networkd, File: "/usr/lib/systemd/network/99-all.network", Line: 2, Names: []string{"*"}, DHCP: true, What: "[Match] Name=*"},
		{Manager: NetworkManager, File: "/etc/NetworkManager/system-connections/x.nmconnection", Line: 6, MAC: "52:54:00:00:00:03", What: `connection "x" (ethernet)`},
		{Manager: NetworkManager, File: "/etc/NetworkManager/system-connections/any.nmconnection", Line: 1, Names: []string{"*"}, What: `connection "any" (ethernet)`},
	}
	mac := func(name string) net.HardwareAddr {
		if name == "eno3" {
			m, _ := net.ParseMAC("52:54:00:00:00:03")
			return m
		}
		return nil
	}
	// ifupdown installed, networkd not enabled, NetworkManager installed.
	installed := map[Manager]bool{Ifupdown: true, NetworkManager: true}
	findings, held := CheckOSManagers(s, "hv1", claims, installed, mac)
	got := map[string][]string{}
	for _, h := range held {
		for _, c := range h.Claims {
			got[h.Object] = append(got[h.Object], c.Where())
		}
	}
	want := map[string][]string{
		"adapter eno1": {"/etc/network/interfaces:9", "/etc/network/interfaces:10", "/usr/lib/systemd/network/99-all.network:2", "/etc/NetworkManager/system-connections/any.nmconnection:1"},
		"adapter eno2": {"/usr/lib/systemd/network/99-all.network:2", "/etc/NetworkManager/system-connections/any.nmconnection:1"},
		"adapter eno3": {"/usr/lib/systemd/network/99-all.network:2", "/etc/NetworkManager/system-connections/x.nmconnection:6", "/etc/NetworkManager/system-connections/any.nmconnection:1"},
		"adapter eno4": {"/usr/lib/systemd/network/99-all.network:2", "/etc/NetworkManager/system-connections/any.nmconnection:1"},
		// networkd's catch-all would adopt the bonds and bridges; the
		// "any ethernet" profile would not.
		"link gb-infra":               {"/usr/lib/systemd/network/99-all.network:2"},
		"link gbr-infra":              {"/usr/lib/systemd/network/99-all.network:2"},
		"link gb-vmgroup":             {"/usr/lib/systemd/network/99-all.network:2"},
		"link gbr-vmgroup":            {"/usr/lib/systemd/network/99-all.network:2"},
		"management IP 192.168.1.101": {"/etc/network/interfaces:10"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	// Warnings only for what an installed manager holds: networkd's files
	// are inert here, so the links are not warned about.
	paths := map[string]bool{}
	for _, f := range findings {
		if f.Severity != model.SeverityWarning {
			t.Errorf("finding %+v: want a warning", f)
		}
		paths[f.Path] = true
		if !strings.Contains(f.Message, "make it let go of") {
			t.Errorf("finding %s has no fix: %s", f.Path, f.Message)
		}
	}
	for _, p := range []string{"hypervisors[hv1].adapters[eno1]", "hypervisors[hv1].adapters[eno3]", "hypervisors[hv1].managementIP"} {
		if !paths[p] {
			t.Errorf("no warning for %s (warnings: %v)", p, paths)
		}
	}
	if paths["adapterGroups[infra]"] {
		t.Errorf("warned about gb-infra though only the inert networkd file names it")
	}
	for _, h := range held {
		if h.Object == "link gb-infra" && (len(h.Inert) != 1 || h.Inert[0] != Networkd) {
			t.Errorf("link gb-infra: inert %v, want systemd-networkd", h.Inert)
		}
	}
	if f, _ := CheckOSManagers(s, "hv9", claims, installed, mac); !f.HasErrors() {
		t.Error("unknown hypervisor accepted")
	}
}
