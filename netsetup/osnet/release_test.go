package osnet

import (
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/atomicfile"
)

func writeFile(p string, b []byte, m fs.FileMode) error { return atomicfile.Write(p, b, m) }

var hv1 = Target{
	Names: []string{"eno1", "eno2", "gb-infra", "gbr-infra"},
	MAC: func(n string) net.HardwareAddr {
		if n == "eno1" {
			m, _ := net.ParseMAC("52:54:00:00:00:01")
			return m
		}
		return nil
	},
	Addr: netip.MustParseAddr("192.168.1.101"),
}

// snapshot is every file under root with its content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			out["/"+rel] = string(b)
		}
		return nil
	})
	return out
}

// release plans and writes a takeover of hv1 under root and checks that
// afterwards no manager holds any of its interfaces or its address, that a
// second takeover has nothing to do, and that RestoreFiles puts every
// byte back.
func release(t *testing.T, root string, installed map[Manager]bool) *Release {
	t.Helper()
	return releaseOf(t, root, hv1, installed)
}

func releaseOf(t *testing.T, root string, hv1 Target, installed map[Manager]bool) *Release {
	t.Helper()
	before := snapshot(t, root)
	r, err := PlanRelease(root, hv1, installed)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteEdits(root, r.Edits, writeFile); err != nil {
		t.Fatal(err)
	}
	claims := scanOK(t, root)
	for _, n := range hv1.Names {
		if cs := Of(claims, n, hv1.mac(n)); len(cs) > 0 {
			t.Errorf("after the takeover %s is still held by %v", n, brief(cs))
		}
	}
	again, err := PlanRelease(root, hv1, installed)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Empty() {
		t.Errorf("a second takeover still edits %v", again.Edits)
	}
	if err := RestoreFiles(root, r.Edits, writeFile); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, snapshot(t, root)); d != "" {
		t.Errorf("restored tree differs (-before +restored):\n%s", d)
	}
	if err := WriteEdits(root, r.Edits, writeFile); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReleaseIfupdown(t *testing.T) {
	root := tree(t, map[string]string{
		"/sbin/ifup": "",
		"/etc/network/interfaces": `# This file describes the network interfaces available on your system
source /etc/network/interfaces.d/*

# The loopback network interface
auto lo eno2
iface lo inet loopback

# The primary network interface
allow-hotplug eno1
iface eno1 inet static
	address 192.168.1.101
	netmask 255.255.255.0
	gateway 192.168.1.1 \
	  # continued
	dns-nameservers 192.168.1.1

iface eno1 inet6 auto
`,
		"/etc/network/interfaces.d/vm": "auto eno3\niface eno3 inet manual\n",
	})
	r := release(t, root, map[Manager]bool{Ifupdown: true})
	if len(r.Edits) != 1 || len(r.Reload) != 0 {
		t.Fatalf("edits %v reload %v; want one file and no reload", r.Edits, r.Reload)
	}
	want := `# This file describes the network interfaces available on your system
source /etc/network/interfaces.d/*

# The loopback network interface
#gallium-net# auto lo eno2
auto lo
iface lo inet loopback

# The primary network interface
#gallium-net# allow-hotplug eno1
#gallium-net# iface eno1 inet static
#gallium-net# 	address 192.168.1.101
#gallium-net# 	netmask 255.255.255.0
#gallium-net# 	gateway 192.168.1.1 \
#gallium-net# 	  # continued
#gallium-net# 	dns-nameservers 192.168.1.1

#gallium-net# iface eno1 inet6 auto
`
	if d := cmp.Diff(want, string(r.Edits[0].New)); d != "" {
		t.Errorf("interfaces (-want +got):\n%s", d)
	}
	if got := snapshot(t, root)["/etc/network/interfaces.d/vm"]; got != "auto eno3\niface eno3 inet manual\n" {
		t.Errorf("eno3 is not gallium-net's: its file changed to %q", got)
	}
	if !strings.Contains(r.Edits[0].Why, "iface eno1 inet static") {
		t.Errorf("why = %q", r.Edits[0].Why)
	}
}

// An installer's bridge that holds the management IP goes with its auto
// line.
func TestReleaseIfupdownBridgeWithTheAddress(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/network/interfaces": "auto vmbr0\niface vmbr0 inet static\n address 192.168.1.101/24\n bridge-ports eno1\n",
	})
	r := release(t, root, map[Manager]bool{Ifupdown: true})
	want := "#gallium-net# auto vmbr0\n#gallium-net# iface vmbr0 inet static\n#gallium-net#  address 192.168.1.101/24\n#gallium-net#  bridge-ports eno1\n"
	if d := cmp.Diff(want, string(r.Edits[0].New)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestReleaseNetworkManager(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/NetworkManager/NetworkManager.conf":                    "[main]\nplugins=ifupdown,keyfile\n[keyfile]\nunmanaged-devices=interface-name:virbr*\n",
		"/etc/NetworkManager/system-connections/eno1.nmconnection":   "[connection]\nid=eno1\ntype=ethernet\ninterface-name=eno1\n[ipv4]\nmethod=manual\naddress1=192.168.1.101/24,192.168.1.1\n",
		"/etc/NetworkManager/system-connections/by-mac.nmconnection": "[connection]\nid=m\ntype=ethernet\n[ethernet]\nmac-address=52:54:00:00:00:01\n[ipv4]\nmethod=auto\n",
		"/etc/NetworkManager/system-connections/wlan.nmconnection":   "[connection]\nid=w\ntype=ethernet\ninterface-name=wlp1\n",
		"/usr/lib/NetworkManager/conf.d/10-globally-managed.conf":    "[keyfile]\nunmanaged-devices=\n",
		"/usr/sbin/NetworkManager":                                   "",
	})
	r := release(t, root, map[Manager]bool{NetworkManager: true})
	if len(r.Edits) != 1 || r.Edits[0].Path != NMDropIn || r.Edits[0].Existed {
		t.Fatalf("edits %+v; want %s created", r.Edits, NMDropIn)
	}
	if d := cmp.Diff([]Reload{{"NetworkManager.service", []string{"nmcli", "general", "reload", "conf"}}}, r.Reload); d != "" {
		t.Error(d)
	}
	claims := scanOK(t, root)
	// The operator's own unmanaged list stays ("+=").
	if got := Of(claims, "virbr0", nil); len(got) != 0 {
		t.Errorf("virbr0: %v", brief(got))
	}
	// NetworkManager keeps what is not gallium-net's.
	if got := Of(claims, "wlp1", nil); len(got) != 1 {
		t.Errorf("wlp1 is no longer NetworkManager's: %v", brief(got))
	}
	// The management IP's profile no longer holds it.
	s := snapshot(t, root)
	if !strings.Contains(s[NMDropIn], "unmanaged-devices+=interface-name:eno1;interface-name:eno2;interface-name:gb-infra;interface-name:gbr-infra;mac:52:54:00:00:00:01\n") {
		t.Errorf("drop-in:\n%s", s[NMDropIn])
	}
}

func TestReleaseNetworkdAndNetplan(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/systemd/network/10-eno1.network":         "[Match]\nMACAddress=52:54:00:00:00:01\n[Network]\nAddress=192.168.1.101/24\n",
		"/run/systemd/network/10-netplan-eno2.network": "[Match]\nName=eno2\n[Network]\nDHCP=ipv4\n",
		"/etc/systemd/network/20-mgmt2.network":        "[Match]\nName=eno4\n[Network]\nDHCP=yes\n",
		"/etc/netplan/01-netcfg.yaml":                  "network:\n  version: 2\n  ethernets:\n    eno2:\n      dhcp4: true\n",
		"/usr/sbin/netplan":                            "",
	})
	// eno4 is not gallium-net's and networkd keeps it: wait-online stays.
	target := hv1
	target.Others, target.OthersKnown = []Adapter{{Name: "eno4"}}, true
	r := releaseOf(t, root, target, map[Manager]bool{Networkd: true, Netplan: true})
	if len(r.Edits) != 1 || r.Edits[0].Path != NetworkdDropIn {
		t.Fatalf("edits %+v", r.Edits)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "netplan") {
		t.Errorf("notes %v", r.Notes)
	}
	if got := Of(scanOK(t, root), "eno4", nil); len(got) != 1 {
		t.Errorf("eno4 is no longer networkd's: %v", brief(got))
	}
}

// A .network file that sorts before gallium-net's would still win: the
// takeover refuses with the fix instead of writing a drop-in that does
// nothing.
func TestReleaseNetworkdShadowedRefuses(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/systemd/network/00-eno1.network": "[Match]\nName=eno1\n[Network]\nAddress=192.168.1.101/24\n",
	})
	_, err := PlanRelease(root, hv1, map[Manager]bool{Networkd: true})
	if err == nil || !strings.Contains(err.Error(), "00-eno1.network matches eno1") || !strings.Contains(err.Error(), "rename it") {
		t.Fatalf("err = %v", err)
	}
}

// Managers that are not installed get nothing written.
func TestReleaseNothingInstalled(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/network/interfaces": "auto eno1\niface eno1 inet dhcp\n",
	})
	r, err := PlanRelease(root, hv1, map[Manager]bool{})
	if err != nil || !r.Empty() {
		t.Fatalf("release %+v, %v; want nothing", r, err)
	}
}

// networkd left with no adapter: systemd-networkd-wait-online would wait
// out its timeout at every boot, so the takeover skips it (and a rollback
// removes the drop-in); under --root, where the adapters are unknown, it
// only says so.
func TestReleaseNetworkdWaitOnline(t *testing.T) {
	files := map[string]string{
		"/etc/systemd/network/10-eno1.network": "[Match]\nMACAddress=52:54:00:00:00:01\n[Network]\nAddress=192.168.1.101/24\n",
		"/etc/systemd/network/20-eno9.network": "[Match]\nName=eno9\n[Network]\nDHCP=yes\n",
	}
	installed := map[Manager]bool{Networkd: true}
	target := hv1
	target.Others, target.OthersKnown = []Adapter{{Name: "wlan0"}}, true
	r := releaseOf(t, tree(t, files), target, installed)
	if len(r.Edits) != 2 || r.Edits[1].Path != WaitOnlineDropIn || r.Edits[1].Existed {
		t.Fatalf("edits %+v", r.Edits)
	}
	if !strings.Contains(string(r.Edits[1].New), "[Unit]\nConditionPathExists=!"+NetworkdDropIn+"\n") {
		t.Errorf("drop-in:\n%s", r.Edits[1].New)
	}
	if d := cmp.Diff([]Reload{{"systemd-networkd.service", []string{"networkctl", "reload"}}}, r.Reload); d != "" {
		t.Error(d)
	}

	target.Others = []Adapter{{Name: "eno9"}}
	if r := releaseOf(t, tree(t, files), target, installed); len(r.Edits) != 1 {
		t.Errorf("networkd keeps eno9, yet wait-online is skipped: %+v", r.Edits)
	}
	target.Others, target.OthersKnown = nil, false
	r = releaseOf(t, tree(t, files), target, installed)
	if len(r.Edits) != 1 || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "unknown under --root") {
		t.Errorf("--root: edits %+v notes %v", r.Edits, r.Notes)
	}
}
