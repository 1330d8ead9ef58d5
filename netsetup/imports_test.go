package netsetup

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/test/testenv"
)

const module = "github.com/gallium/gallium-net"

// netlinkElsewhere are the packages outside netsetup/... that may import
// netlink, each with its reason. Test files are not counted (a test may
// build the links it needs); only the packages' own code is.
var netlinkElsewhere = map[string]string{
	module + "/test/testenv":     "test helpers: network namespaces, veth pairs for the tests of every tier",
	module + "/test/lab/labtool": "the kernel lab's guest tool builds a bond the way netsetup does, to test the lab itself",
}

// goPackage is what the import rules need of `go list -json`.
type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs `go list -json` with args at the repository root.
func listPackages(t *testing.T, args ...string) []goPackage {
	t.Helper()
	if testenv.InLab() {
		t.Skip("the lab guest has no go tool; the unit tier checks the import graph")
	}
	goTool := testenv.NeedTool(t, "go", "the Go toolchain")
	cmd := exec.Command(goTool, append([]string{"list", "-json"}, args...)...)
	cmd.Dir = repoFile(t, "")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json %s: %v", strings.Join(args, " "), err)
	}
	var pkgs []goPackage
	for dec := json.NewDecoder(strings.NewReader(string(out))); ; {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isNetsetup(p string) bool {
	return p == module+"/netsetup" || strings.HasPrefix(p, module+"/netsetup/")
}

func under(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }

// TestImportRules keeps the layout of issue 12 ("one home per job"):
//   - domains (libvirt XML) and the netsetup packages (host networking)
//     never import each other;
//   - netsetup imports none of its side jobs, and tap, probe and announce
//     do not import netsetup (confirm builds on it; announce reads links
//     through tap's Redump);
//   - only netsetup packages import netlink (but netlinkElsewhere);
//   - the hook links nothing of netsetup but netsetup/tap.
//
// The hook's other rules (no libvirt binding, etcd, gRPC, cgo or YAML) are
// hooks/imports_test.go's.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t, module+"/...")
	if len(pkgs) < 10 {
		t.Fatalf("go list listed only %d packages", len(pkgs))
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			switch {
			case under(p.ImportPath, module+"/domains") && isNetsetup(imp),
				isNetsetup(p.ImportPath) && under(imp, module+"/domains"):
				t.Errorf("%s imports %s: domains and netsetup never import each other", p.ImportPath, imp)
			case p.ImportPath == module+"/netsetup" && isNetsetup(imp):
				t.Errorf("netsetup imports its side job %s: the side jobs build on netsetup or stand alone, never the reverse", imp)
			case imp == module+"/netsetup" && slices.Contains([]string{"tap", "probe", "announce"}, strings.TrimPrefix(p.ImportPath, module+"/netsetup/")):
				t.Errorf("%s imports netsetup; it stands alone (the hook links netsetup/tap)", p.ImportPath)
			case under(imp, "github.com/vishvananda/netlink") && !isNetsetup(p.ImportPath):
				seen[p.ImportPath] = true
				if why, ok := netlinkElsewhere[p.ImportPath]; ok {
					t.Logf("%s imports netlink: %s", p.ImportPath, why)
					continue
				}
				t.Errorf("%s imports %s: only netsetup packages import netlink", p.ImportPath, imp)
			}
		}
	}
	for p := range netlinkElsewhere {
		if !seen[p] {
			t.Errorf("%s no longer imports netlink: delete it from netlinkElsewhere", p)
		}
	}
}

// TestHookLinksOnlyTapOfNetsetup: the libvirt hook runs on every VM start;
// of netsetup it needs the tap programming only.
func TestHookLinksOnlyTapOfNetsetup(t *testing.T) {
	hook := listPackages(t, module+"/hooks")
	if len(hook) != 1 || hook[0].ImportPath != module+"/hooks" {
		t.Fatalf("go list: %+v", hook)
	}
	var linked []string
	for _, d := range hook[0].Deps {
		if isNetsetup(d) {
			linked = append(linked, d)
		}
	}
	if want := []string{module + "/netsetup/tap"}; !slices.Equal(linked, want) {
		t.Errorf("the hook links %v of netsetup, want only %v", linked, want)
	}
}
