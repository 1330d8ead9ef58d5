package diagram

import (
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/test/testenv"

	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, name string) *model.Spec {
	t.Helper()
	s, err := specfile.Load(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGolden(t *testing.T) {
	nics := []NIC{
		{Hypervisor: "hv1", Domain: "web1", MAC: "52:54:00:00:00:01", Network: "prod"},
		{Hypervisor: "hv1", Domain: "web1", MAC: "52:54:00:00:00:02", Network: "flat"},
		{Hypervisor: "hv2", Domain: "db1", MAC: "52:54:00:00:00:03", Network: "prod"},
	}
	live := map[string]HostLive{
		"hv1": {ActiveAdapters: []string{"eno2", "eno3"}, NoCarrier: []string{"eno1"}},
		"hv2": {Down: true},
		"hv3": {ActiveAdapters: []string{"eno1", "eno3"}, HoldsVIP: true},
	}
	cases := []struct {
		file, spec string
		opt        Options
		render     func(*model.Spec, Options) (string, error)
	}{
		{"cluster-hv1.dot", "cluster.yaml", Options{Hypervisor: "hv1", NICs: nics}, DOT},
		{"cluster.mmd", "cluster.yaml", Options{NICs: nics}, Mermaid},
		{"evaluation.dot", "evaluation.yaml", Options{}, DOT},
		// After faults: hv1's eno1 cable pulled (eno2 active), hv2 down,
		// hv3 holds the VIP.
		{"cluster-live.dot", "cluster.yaml", Options{NICs: nics, Live: live}, DOT},
		{"cluster-live.mmd", "cluster.yaml", Options{Live: live}, Mermaid},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			got, err := c.render(load(t, c.spec), c.opt)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, c.file, got)
		})
	}
}

func TestOnlyOneHypervisor(t *testing.T) {
	got, err := DOT(load(t, "cluster.yaml"), Options{Hypervisor: "hv2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "cluster_hv2") || strings.Contains(got, "cluster_hv1") || strings.Contains(got, "cluster_hv3") {
		t.Errorf("want only hv2 drawn, got:\n%s", got)
	}
	// The layers: networks on the VM group, the group, its two adapters.
	for _, want := range []string{"hv2__net__prod -> hv2__grp__vmgroup", "hv2__grp__vmgroup -> hv2__ad__eno3", "hv2__grp__infra -> hv2__ad__eno1", "bond gb-infra / bridge gbr-infra"} {
		if !strings.Contains(got, want) {
			t.Errorf("diagram lacks %q", want)
		}
	}
}

func TestUnknownHypervisor(t *testing.T) {
	_, err := Mermaid(load(t, "cluster.yaml"), Options{Hypervisor: "nope"})
	if err == nil || !strings.Contains(err.Error(), "hv1, hv2, hv3") {
		t.Fatalf("want an error listing the hypervisors, got %v", err)
	}
}

// TestDOTParses feeds the output to Graphviz when it is installed, so a
// syntax slip in the writer cannot hide behind matching golden files.
func TestDOTParses(t *testing.T) {
	dot := testenv.NeedTool(t, "dot", "graphviz; make deps installs it")
	src, err := DOT(load(t, "cluster.yaml"), Options{NICs: []NIC{{Hypervisor: "hv3", Domain: `we"ird vm`, MAC: "52:54:00:aa:bb:cc", Network: "dev"}}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dot, "-Tsvg")
	cmd.Stdin = strings.NewReader(src)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<svg") {
		t.Fatalf("dot rejected the diagram: %v\n%s", err, out)
	}
}
