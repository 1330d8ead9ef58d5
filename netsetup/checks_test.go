package netsetup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSysfs writes /sys/class/net-like files: name -> speed, carrier.
func fakeSysfs(t *testing.T, nics map[string][2]string) string {
	root := t.TempDir()
	for name, v := range nics {
		dir := filepath.Join(root, name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "speed"), []byte(v[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "carrier"), []byte(v[1]+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "operstate"), []byte("up\n"), 0o644)
	}
	return root
}

func TestCheckAdapters(t *testing.T) {
	good := map[string][2]string{"eno1": {"10000", "1"}, "eno2": {"25000", "1"}, "eno3": {"1000", "1"}, "eno4": {"1000", "1"}}
	with := func(name, speed, carrier string) map[string][2]string {
		m := map[string][2]string{}
		for k, v := range good {
			m[k] = v
		}
		if speed == "" {
			delete(m, name)
		} else {
			m[name] = [2]string{speed, carrier}
		}
		return m
	}
	tests := []struct {
		name       string
		nics       map[string][2]string
		evaluation bool
		want       []string // "severity path: message fragment"
	}{
		{"all good (25G on a 10G declaration is only a note)", good, false, []string{
			"warning hypervisors[hv1].adapters[eno2]: adapter eno2 runs at 25000 Mbps, the spec says 10000"}},
		{"slow infrastructure adapter", with("eno1", "1000", "1"), false, []string{
			"error hypervisors[hv1].adapters[eno1]: infrastructure adapter eno1 runs at 1000 Mbps; an infrastructure adapter needs at least 10 Gbps",
			"warning hypervisors[hv1].adapters[eno1]: adapter eno1 runs at 1000 Mbps, the spec says 10000",
			"warning hypervisors[hv1].adapters[eno2]"}},
		{"slow infrastructure adapter, evaluation", with("eno1", "1000", "1"), true, []string{
			"warning hypervisors[hv1].adapters[eno1]: infrastructure adapter eno1 runs at 1000 Mbps; allowed in evaluation mode",
			"warning hypervisors[hv1].adapters[eno1]: adapter eno1 runs at 1000 Mbps, the spec says 10000",
			"warning hypervisors[hv1].adapters[eno2]"}},
		{"slow VM adapter is fine", with("eno3", "100", "1"), false, []string{
			"warning hypervisors[hv1].adapters[eno2]",
			"warning hypervisors[hv1].adapters[eno3]: adapter eno3 runs at 100 Mbps, the spec says 1000"}},
		{"virtual NIC: unknown speed", with("eno1", "-1", "1"), false, []string{
			"warning hypervisors[hv1].adapters[eno1]: adapter eno1 does not report its speed",
			"warning hypervisors[hv1].adapters[eno2]"}},
		{"missing adapter", with("eno4", "", ""), false, []string{
			"error hypervisors[hv1].adapters[eno4]: adapter eno4 of hypervisor hv1 does not exist on this host",
			"warning hypervisors[hv1].adapters[eno2]"}},
		{"no carrier", with("eno3", "1000", "0"), false, []string{
			"warning hypervisors[hv1].adapters[eno2]",
			"warning hypervisors[hv1].adapters[eno3]: adapter eno3 has no carrier"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := loadExample(t, "cluster.yaml")
			spec.Cluster.Evaluation = tc.evaluation
			root := fakeSysfs(t, tc.nics)
			fs, facts := CheckAdapters(spec, "hv1", SysfsReader(root))
			if len(facts) != 4 {
				t.Errorf("facts for %d adapters, want 4", len(facts))
			}
			fs = fs.Sorted()
			var got []string
			for _, f := range fs {
				got = append(got, string(f.Severity)+" "+f.Path+": "+f.Message)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i := range tc.want {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("finding %d:\n got %s\nwant %s...", i, got[i], tc.want[i])
				}
			}
			if tc.name == "missing adapter" && !fs.HasErrors() {
				t.Error("a missing adapter must be an error")
			}
		})
	}
	if _, facts := CheckAdapters(loadExample(t, "cluster.yaml"), "hv1", SysfsReader(fakeSysfs(t, good))); facts[0].SpeedMbps != 10000 || !facts[0].Carrier {
		t.Errorf("facts: %+v", facts[0])
	}
}

// fakeNIC writes a NIC with a PCI device link and a MAC into a fake sysfs.
func fakeNIC(t *testing.T, root, name, mac, pci string) {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"speed": "10000", "carrier": "1", "operstate": "up", "address": mac} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../../../devices/pci0000:00/"+pci, filepath.Join(dir, "device")); err != nil {
		t.Fatal(err)
	}
}

// TestAdapterIdentity: hv1's eno2 carries its identity in the spec; the
// kernel renamed it (ens5), or gave its name to another NIC.
func TestAdapterIdentity(t *testing.T) {
	spec := loadExample(t, "cluster.yaml")
	h := spec.Hypervisor("hv1")
	h.Adapters[1].MAC, h.Adapters[1].PCIPath = "3c:ec:ef:00:00:02", "0000:3b:00.1"
	h.Adapters[2].MAC = "3c:ec:ef:00:00:03"
	host := func(nics map[string][2]string) string {
		root := t.TempDir()
		for name, id := range nics {
			fakeNIC(t, root, name, id[0], id[1])
		}
		// A bridge: no device, never taken for an adapter.
		if err := os.MkdirAll(filepath.Join(root, "gbr-infra"), 0o755); err != nil {
			t.Fatal(err)
		}
		return root
	}
	base := map[string][2]string{
		"eno1": {"3c:ec:ef:00:00:01", "0000:3b:00.0"},
		"eno3": {"3c:ec:ef:00:00:03", "0000:3c:00.0"},
		"eno4": {"3c:ec:ef:00:00:04", "0000:3c:00.1"},
	}
	with := func(extra map[string][2]string) map[string][2]string {
		m := map[string][2]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	errorsOf := func(root string) []string {
		fs, _ := CheckAdaptersIn(spec, "hv1", SysfsReader(root), ListAdapters(root))
		var out []string
		for _, f := range fs.Errors() {
			out = append(out, f.Path+": "+f.Message)
		}
		return out
	}
	// In place: no error.
	if errs := errorsOf(host(with(map[string][2]string{"eno2": {"3c:ec:ef:00:00:02", "0000:3b:00.1"}}))); len(errs) != 0 {
		t.Errorf("adapters in place: %v", errs)
	}
	// Renamed: eno2 is gone, ens5 has its MAC and PCI address.
	errs := errorsOf(host(with(map[string][2]string{"ens5": {"3c:ec:ef:00:00:02", "0000:3b:00.1"}})))
	if len(errs) != 1 || !strings.Contains(errs[0], "hypervisors[hv1].adapters[eno2]: adapter eno2 of hypervisor hv1 is not here under that name, but its NIC (mac 3c:ec:ef:00:00:02, pciPath 0000:3b:00.1) is: the kernel now calls it ens5") ||
		!strings.Contains(errs[0], "rename adapter eno2 to ens5 in the spec (hypervisors[hv1].adapters and adapterGroups[infra].adapters.hv1)") ||
		!strings.Contains(errs[0], "[Match] PermanentMACAddress=3c:ec:ef:00:00:02, [Link] Name=eno2") {
		t.Errorf("renamed adapter: %v", errs)
	}
	// Names swapped: eno2 is now the NIC of the spec's eno3 and the other
	// way round.
	errs = errorsOf(host(map[string][2]string{
		"eno1": base["eno1"], "eno4": base["eno4"],
		"eno2": {"3c:ec:ef:00:00:03", "0000:3c:00.0"},
		"eno3": {"3c:ec:ef:00:00:02", "0000:3b:00.1"},
	}))
	if len(errs) != 2 || !strings.Contains(strings.Join(errs, "\n"), "adapter eno2 of hypervisor hv1 is another NIC than the spec's (mac 3c:ec:ef:00:00:03, pciPath 0000:3c:00.0 here, the spec says mac 3c:ec:ef:00:00:02, pciPath 0000:3b:00.1): the spec's NIC is now called eno3") {
		t.Errorf("swapped names: %v", errs)
	}
	// Gone: no NIC has the identity.
	errs = errorsOf(host(base))
	if len(errs) != 1 || !strings.Contains(errs[0], "no NIC has its identity (mac 3c:ec:ef:00:00:02, pciPath 0000:3b:00.1)") {
		t.Errorf("gone: %v", errs)
	}
	// Facts carry the identity read from sysfs.
	_, facts := CheckAdaptersIn(spec, "hv1", SysfsReader(host(base)), nil)
	if facts[0].MAC != "3c:ec:ef:00:00:01" || facts[0].PCIPath != "0000:3b:00.0" {
		t.Errorf("facts of eno1: %+v", facts[0])
	}
}
