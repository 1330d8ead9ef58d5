package main

import (
	"github.com/gallium/gallium-net/test/testenv"

	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseShlibdeps(t *testing.T) {
	cases := []struct {
		name, out string
		want      []string
		err       bool
	}{
		{name: "two", out: "shlibs:Depends=libc6 (>= 2.34), libvirt0 (>= 9.0.0)\n", want: []string{"libc6 (>= 2.34)", "libvirt0 (>= 9.0.0)"}},
		{name: "alternatives kept whole", out: "misc:Foo=1\nshlibs:Depends=libc6 (>= 2.34) | libc6.1, libx\n", want: []string{"libc6 (>= 2.34) | libc6.1", "libx"}},
		{name: "empty value", out: "shlibs:Depends=\n", want: nil},
		{name: "no line", out: "dpkg-shlibdeps: warning: something\n", err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseShlibdeps(c.out)
			if (err != nil) != c.err {
				t.Fatalf("parseShlibdeps() error = %v, want error %v", err, c.err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("parseShlibdeps() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestCheckManSection1(t *testing.T) {
	if err := checkManSection1([]byte(".nh\n.TH gallium-net 1\n.SH NAME\n")); err != nil {
		t.Fatalf("section 1 refused: %v", err)
	}
	if err := checkManSection1([]byte(".nh\n.TH gallium-net 8\n.SH NAME\n")); err == nil {
		t.Fatal("section 8 accepted")
	}
	if err := checkManSection1([]byte("NAME\n   gallium-net\n")); err == nil {
		t.Fatal("a page without .TH accepted")
	}
}

// goBinary builds a tiny program, static (cgo off) or dynamic (cgo on,
// linking libc), so the ELF-based functions are checked on real binaries.
func goBinary(t *testing.T, cgo bool) string {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nfunc main() {}\n"
	env := "CGO_ENABLED=0"
	if cgo {
		testenv.NeedTool(t, "gcc", "test/setup/deps.sh installs it")
		src = "package main\n\n// #include <stdlib.h>\nimport \"C\"\n\nfunc main() { C.free(nil) }\n"
		env = "CGO_ENABLED=1"
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "bin")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env, "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "bin")
}

func TestElfDependencies(t *testing.T) {
	static, dyn := goBinary(t, false), goBinary(t, true)

	reqs, err := rpmElfRequires(static)
	if err != nil || len(reqs) != 0 {
		t.Fatalf("rpmElfRequires(static) = %q, %v; want none", reqs, err)
	}
	reqs, err = rpmElfRequires(dyn)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(reqs, " ")
	if !strings.Contains(joined, "libc.so.6()(64bit)") || !strings.Contains(joined, "libc.so.6(GLIBC_") {
		t.Fatalf("rpmElfRequires(cgo binary) = %q; want libc.so.6()(64bit) and a versioned libc.so.6(GLIBC_...)(64bit)", reqs)
	}

	deps, err := debShlibDepends(static)
	if err != nil || len(deps) != 0 {
		t.Fatalf("debShlibDepends(static) = %q, %v; want none", deps, err)
	}
	testenv.NeedTool(t, "dpkg-shlibdeps", "dpkg-dev; test/setup/deps.sh installs it")
	deps, err = debShlibDepends(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) == 0 || !strings.HasPrefix(deps[0], "libc6") {
		t.Fatalf("debShlibDepends(cgo binary) = %q; want libc6 first", deps)
	}

	// Overrides: written for a static binary only, with its reason.
	path := filepath.Join(t.TempDir(), "overrides")
	if err := writeLintianOverrides(path, map[string]string{
		"usr/sbin/gallium-net-hook": static,
		"usr/bin/gallium-net":       dyn,
	}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	text := string(data)
	if !strings.Contains(text, "statically-linked-binary [usr/sbin/gallium-net-hook]") {
		t.Errorf("overrides lack the static hook:\n%s", text)
	}
	if strings.Contains(text, "[usr/bin/gallium-net]") {
		t.Errorf("overrides name the dynamic CLI:\n%s", text)
	}
	if err := writeLintianOverrides(path, map[string]string{"usr/bin/other": static}); err == nil {
		t.Error("writeLintianOverrides accepted a static binary without a written reason")
	}
}
