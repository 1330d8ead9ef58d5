package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/test/testenv"
)

// TestHookImportGraph keeps the hook small, static and safe: it runs on every
// VM start, so it must not link the cgo libvirt binding (it never calls
// libvirt: that would deadlock libvirtd), etcd or gRPC.
func TestHookImportGraph(t *testing.T) {
	if testenv.InLab() {
		t.Skip("the lab guest has no go tool; the unit tier checks the import graph")
	}
	// go test puts its GOROOT/bin first in PATH (Go 1.19 and later).
	goTool := testenv.NeedTool(t, "go", "the Go toolchain")
	cmd := exec.Command(goTool, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps (CGO_ENABLED=0): %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), deps)
	}
	forbidden := []string{"libvirt.org/go/libvirt", "go.etcd.io/etcd", "google.golang.org/grpc", "go.etcd.io/bbolt", "runtime/cgo"}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the hook depends on %s; keep it out of hooks/ (and of the packages the hook imports)", d)
			}
		}
	}
	checkHookYAML(t, goTool)
	for _, want := range []string{"github.com/gallium/gallium-net/domains", "github.com/gallium/gallium-net/netsetup/tap", "libvirt.org/go/libvirtxml"} {
		found := false
		for _, d := range deps {
			found = found || d == want
		}
		if !found {
			t.Errorf("the hook no longer depends on %s: update this test", want)
		}
	}
}

// yamlPackages are the YAML parsers in the module graph. The hook reads only
// JSON (the host snapshot), so it must link none of them.
var yamlPackages = []string{"gopkg.in/yaml.v3", "gopkg.in/yaml.v2", "go.yaml.in/yaml", "sigs.k8s.io/yaml"}

// checkHookYAML fails when a package of the hook's graph imports a YAML
// parser. The model (plugin/model) is in the graph through domains and
// netsetup, so it imports none: strict YAML loading lives in plugin/specfile,
// which the hook must never import.
func checkHookYAML(t *testing.T, goTool string) {
	t.Helper()
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -f (CGO_ENABLED=0): %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		for _, imp := range fields[1:] {
			for _, y := range yamlPackages {
				if imp == y || strings.HasPrefix(imp, y+"/") {
					t.Errorf("the hook links the YAML parser %s through %s; the hook reads only JSON", imp, pkg)
				}
			}
		}
	}
}
