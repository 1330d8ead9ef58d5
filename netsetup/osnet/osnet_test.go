package osnet

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tree writes files (path inside the root -> content) under a fresh root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// brief is what a test compares of a claim.
func brief(cs []Claim) []string {
	var out []string
	for _, c := range cs {
		s := string(c.Manager) + " " + c.Where() + " " + c.What
		if len(c.Names) > 0 {
			s += " names=" + strings.Join(c.Names, ",")
		}
		if c.MAC != "" {
			s += " mac=" + c.MAC
		}
		for _, a := range c.Addresses {
			s += " addr=" + a.String()
		}
		if c.DHCP {
			s += " dhcp"
		}
		out = append(out, s)
	}
	return out
}

func scanOK(t *testing.T, root string) []Claim {
	t.Helper()
	cs, errs := Scan(root)
	for _, e := range errs {
		t.Errorf("scan: %v", e)
	}
	return cs
}

// What Debian's installer writes, plus the forms operators add by hand:
// allow-hotplug, source with a glob, source-directory, netmask, a
// continuation line, an inet6 stanza, a comment.
func TestIfupdown(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/network/interfaces": `# This file describes the network interfaces available on your system
source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eno1
iface eno1 inet static
	address 192.168.1.101/24
	gateway 192.168.1.1
	dns-nameservers 192.168.1.1
iface eno1 inet6 auto

source-directory interfaces.more
`,
		"/etc/network/interfaces.d/eno3.cfg":   "auto eno3 \\\n  eno4\niface eno3 inet static\n    address 10.0.0.5\n    netmask 255.255.255.0\n",
		"/etc/network/interfaces.more/storage": "iface ens1f0 inet dhcp\n",
		// run-parts skips names with dots.
		"/etc/network/interfaces.more/old.bak": "iface eno9 inet dhcp\n",
	})
	got := brief(scanOK(t, root))
	want := []string{
		"ifupdown /etc/network/interfaces:5 auto lo names=lo",
		"ifupdown /etc/network/interfaces:6 iface lo inet loopback names=lo",
		"ifupdown /etc/network/interfaces:9 allow-hotplug eno1 names=eno1",
		"ifupdown /etc/network/interfaces:10 iface eno1 inet static names=eno1 addr=192.168.1.101/24",
		"ifupdown /etc/network/interfaces:14 iface eno1 inet6 auto names=eno1",
		"ifupdown /etc/network/interfaces.d/eno3.cfg:1 auto eno3 names=eno3",
		"ifupdown /etc/network/interfaces.d/eno3.cfg:1 auto eno4 names=eno4",
		"ifupdown /etc/network/interfaces.d/eno3.cfg:3 iface eno3 inet static names=eno3 addr=10.0.0.5/24",
		"ifupdown /etc/network/interfaces.more/storage:1 iface ens1f0 inet dhcp names=ens1f0 dhcp",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestIfupdownErrors(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/network/interfaces": "iface eno1 inet static\n address 192.168.1.101\n\niface eno2 inet static\n address 10.1.1.1\n netmask 255.0.255.0\n",
	})
	cs, errs := Scan(root)
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "/etc/network/interfaces:1: iface eno1 inet static: address 192.168.1.101 has no prefix length") {
		t.Errorf("errors = %v; want the address without netmask and the broken mask, each with file and line", errs)
	}
	if len(cs) != 2 {
		t.Errorf("claims = %v; want both stanzas still claimed", brief(cs))
	}
	// Nothing configured at all: no claims, no errors.
	if cs, errs := Scan(t.TempDir()); len(cs) != 0 || len(errs) != 0 {
		t.Errorf("empty root: %v %v", cs, errs)
	}
}

func TestNetworkManagerKeyfiles(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/NetworkManager/system-connections/mgmt.nmconnection": `[connection]
id=mgmt
uuid=0d3f1c3e-4bd0-4e70-9a44-1c1f4c4b7a11
type=ethernet
interface-name=eno1

[ipv4]
method=manual
address1=192.168.1.101/24,192.168.1.1
dns=192.168.1.1;
`,
		"/etc/NetworkManager/system-connections/Wired connection 1.nmconnection": `[connection]
id=Wired connection 1
type=ethernet

[ethernet]
mac-address=52:54:00:AA:BB:02

[ipv4]
method=auto
`,
		"/run/NetworkManager/system-connections/any.nmconnection":  "[connection]\nid=any\ntype=ethernet\n[ipv4]\nmethod=auto\n",
		"/etc/NetworkManager/system-connections/home.nmconnection": "[connection]\nid=home\ntype=wifi\ninterface-name=wlan0\n",
	})
	got := brief(scanOK(t, root))
	want := []string{
		`NetworkManager /etc/NetworkManager/system-connections/Wired connection 1.nmconnection:6 connection "Wired connection 1" (ethernet) mac=52:54:00:aa:bb:02 dhcp`,
		`NetworkManager /etc/NetworkManager/system-connections/mgmt.nmconnection:5 connection "mgmt" (ethernet) names=eno1 addr=192.168.1.101/24`,
		`NetworkManager /run/NetworkManager/system-connections/any.nmconnection:1 connection "any" (ethernet) names=* dhcp`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestNetworkdFiles(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/systemd/network/10-mgmt.network":         "[Match]\nName=eno1\n\n[Network]\nAddress=192.168.1.101/24\nGateway=192.168.1.1\n",
		"/etc/systemd/network/20-vm.network":           "[Match]\nMACAddress=52:54:00:AA:BB:03\n\n[Network]\nDHCP=no\n\n[Address]\nAddress=10.0.0.3/24\n",
		"/etc/systemd/network/30-rest.network":         "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
		"/usr/lib/systemd/network/10-mgmt.network":     "[Match]\nName=*\n[Network]\nDHCP=yes\n",
		"/usr/lib/systemd/network/89-ethernet.network": "[Match]\nKind=!*\nType=ether\n[Network]\nDHCP=yes\n",
		// masked by an empty file of the same name in /etc
		"/etc/systemd/network/99-wired.network": "",
		"/lib/systemd/network/99-wired.network": "[Match]\nName=*\n[Network]\nDHCP=yes\n",
		"/etc/systemd/network/50-gallium.link":  "[Match]\nOriginalName=gb-*\n",
	})
	got := brief(scanOK(t, root))
	want := []string{
		"systemd-networkd /etc/systemd/network/10-mgmt.network:2 [Match] Name=eno1 names=eno1 addr=192.168.1.101/24",
		"systemd-networkd /etc/systemd/network/20-vm.network:2 [Match] MACAddress=52:54:00:aa:bb:03 mac=52:54:00:aa:bb:03 addr=10.0.0.3/24",
		"systemd-networkd /etc/systemd/network/30-rest.network:2 [Match] Name=en* eth* names=en*,eth* dhcp",
		"systemd-networkd /usr/lib/systemd/network/89-ethernet.network:2 [Match] Name=* Kind=!* Type=ether names=* dhcp",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestNetplan(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/netplan/50-cloud-init.yaml": `network:
  version: 2
  renderer: networkd
  ethernets:
    eno1:
      addresses: [192.168.1.103/24]
      routes:
        - {to: default, via: 192.168.1.1}
    lan2:
      match:
        macaddress: "52:54:00:aa:bb:04"
      set-name: eno2
      dhcp4: true
  bonds:
    bond0:
      interfaces: [eno3, eno4]
      addresses: ["10.0.0.1/24"]
`,
	})
	got := brief(scanOK(t, root))
	want := []string{
		"netplan /etc/netplan/50-cloud-init.yaml:5 ethernets: eno1 names=eno1 addr=192.168.1.103/24",
		"netplan /etc/netplan/50-cloud-init.yaml:9 ethernets: lan2 (set-name eno2) names=eno2 mac=52:54:00:aa:bb:04 dhcp",
		"netplan /etc/netplan/50-cloud-init.yaml:15 bonds: bond0 names=bond0 addr=10.0.0.1/24",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if _, errs := Scan(tree(t, map[string]string{"/etc/netplan/bad.yaml": "network: [\n"})); len(errs) != 1 || !strings.Contains(errs[0].Error(), "/etc/netplan/bad.yaml") {
		t.Errorf("broken YAML: %v; want one error naming the file", errs)
	}
}

// Who holds an adapter and the management IP, over a root where two
// managers claim things.
func TestOfAndHolding(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/network/interfaces":              "allow-hotplug eno1\niface eno1 inet static\n address 192.168.1.101/24\n",
		"/etc/systemd/network/20-vm.network":   "[Match]\nMACAddress=52:54:00:aa:bb:03\n[Network]\nDHCP=yes\n",
		"/etc/systemd/network/30-glob.network": "[Match]\nName=eno[34]\n[Network]\nDHCP=yes\n",
	})
	cs := scanOK(t, root)
	mac3, _ := net.ParseMAC("52:54:00:aa:bb:03")
	mac4, _ := net.ParseMAC("52:54:00:aa:bb:04")
	for _, c := range []struct {
		name string
		mac  net.HardwareAddr
		want int
		// eno3: networkd uses the first matching file by name only
		// (20-vm, not 30-glob).
	}{{"eno1", nil, 2}, {"eno2", nil, 0}, {"eno3", mac3, 1}, {"eno4", mac4, 1}, {"renamed0", mac3, 1}} {
		if got := Of(cs, c.name, c.mac); len(got) != c.want {
			t.Errorf("Of(%s, %v) = %v; want %d claims", c.name, c.mac, brief(got), c.want)
		}
	}
	h := Holding(cs, netip.MustParseAddr("192.168.1.101"))
	if len(h) != 1 || h[0].Where() != "/etc/network/interfaces:2" {
		t.Errorf("Holding(192.168.1.101) = %v; want the iface stanza at /etc/network/interfaces:2", brief(h))
	}
}
