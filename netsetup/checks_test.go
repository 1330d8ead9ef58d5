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
