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
	for _, want := range []string{"github.com/gallium/gallium-net/domains", "github.com/gallium/gallium-net/netsetup", "libvirt.org/go/libvirtxml"} {
		found := false
		for _, d := range deps {
			found = found || d == want
		}
		if !found {
			t.Errorf("the hook no longer depends on %s: update this test", want)
		}
	}
}
