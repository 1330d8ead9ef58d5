package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/test/testenv"
)

// TestLayoutTableNamesEveryPackage keeps the README's layout table whole: a
// newcomer finds every package there with its job, and no row names a
// folder that is gone.
func TestLayoutTableNamesEveryPackage(t *testing.T) {
	if testenv.InLab() {
		t.Skip("the lab guest has no go tool")
	}
	goTool := testenv.NeedTool(t, "go", "the Go toolchain")
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no '## Layout' section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)/` \\|").FindAllStringSubmatch(layout, -1) {
		rows[m[1]] = true
	}
	cmd := exec.Command(goTool, "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, _ := filepath.Abs(root)
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(abs, dir)
		if err != nil || rel == "." {
			continue
		}
		if !rows[rel] {
			t.Errorf("README.md's layout table has no row for package %s/: add one with its job", rel)
		}
	}
	for r := range rows {
		if st, err := os.Stat(filepath.Join(root, r)); err != nil || !st.IsDir() {
			t.Errorf("README.md's layout table names %s/, which is not a folder here", r)
		}
	}
}
