package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// nfpm copies files; it does not compute library dependencies the way
// dpkg-shlibdeps (debhelper) and rpm's elfdeps (rpmbuild) do. A cgo binary
// that links libvirt.so.0 without declaring it installs fine and then fails
// at run time, so both are computed here from the binaries themselves.

// dynamic reports whether an ELF binary loads shared libraries.
func dynamic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("binary %s: %w", path, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false, fmt.Errorf("binary %s: shared libraries: %w", path, err)
	}
	return len(libs) > 0, nil
}

// debShlibDepends returns the Depends entries dpkg-shlibdeps computes for
// the dynamic binaries among bins (for example "libc6 (>= 2.34)",
// "libvirt0 (>= 6.5.0)"). Static binaries need nothing.
func debShlibDepends(bins ...string) ([]string, error) {
	var dyn []string
	for _, b := range bins {
		d, err := dynamic(b)
		if err != nil {
			return nil, err
		}
		if d {
			abs, err := filepath.Abs(b)
			if err != nil {
				return nil, err
			}
			dyn = append(dyn, abs)
		}
	}
	if len(dyn) == 0 {
		return nil, nil
	}
	if _, err := exec.LookPath("dpkg-shlibdeps"); err != nil {
		return nil, fmt.Errorf("%s link shared libraries and dpkg-shlibdeps is missing: install dpkg-dev (test/setup/deps.sh does)", strings.Join(dyn, ", "))
	}
	// dpkg-shlibdeps insists on running in a source tree with debian/control.
	dir, err := os.MkdirTemp("", "gallium-net-shlibdeps-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "debian"), 0o755); err != nil {
		return nil, err
	}
	control := "Source: gallium-net\n\nPackage: gallium-net\nArchitecture: any\n"
	if err := os.WriteFile(filepath.Join(dir, "debian", "control"), []byte(control), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("dpkg-shlibdeps", append([]string{"-O", "--warnings=0"}, dyn...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("dpkg-shlibdeps %s: %w: %s", strings.Join(dyn, " "), err, msg)
	}
	return parseShlibdeps(string(out))
}

// parseShlibdeps turns "shlibs:Depends=libc6 (>= 2.34), libvirt0 (>= 6.5.0)"
// into its entries.
func parseShlibdeps(out string) ([]string, error) {
	for _, line := range strings.Split(out, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "shlibs:Depends=")
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, d)
			}
		}
		return deps, nil
	}
	return nil, fmt.Errorf("dpkg-shlibdeps printed no shlibs:Depends line: %q", out)
}

// rpmElfRequires returns the capabilities rpm's elfdeps would require for
// the dynamic binaries among bins: "libvirt.so.0()(64bit)" for each needed
// library and "libc.so.6(GLIBC_2.34)(64bit)" for each symbol version used.
// Every RPM distribution's libraries provide these, so no package names
// (which differ between Fedora, RHEL and SUSE) are guessed.
func rpmElfRequires(bins ...string) ([]string, error) {
	set := map[string]bool{}
	for _, b := range bins {
		f, err := elf.Open(b)
		if err != nil {
			return nil, fmt.Errorf("binary %s: %w", b, err)
		}
		mark := ""
		if f.Class == elf.ELFCLASS64 {
			mark = "(64bit)"
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("binary %s: shared libraries: %w", b, err)
		}
		for _, l := range libs {
			set[l+"()"+mark] = true
		}
		needs, err := f.DynamicVersionNeeds()
		if err != nil && len(libs) > 0 {
			f.Close()
			return nil, fmt.Errorf("binary %s: symbol versions: %w", b, err)
		}
		for _, n := range needs {
			for _, dep := range n.Needs {
				set[fmt.Sprintf("%s(%s)%s", n.Name, dep.Dep, mark)] = true
			}
		}
		f.Close()
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out, nil
}

// fixedLintianOverrides are deliberate departures from Debian's defaults.
const fixedLintianOverrides = `# The cluster state (spec history, MAC ledger, host snapshot) may hold
# cluster secrets; only root may read it.
non-standard-dir-perm 0700 != 0755 [var/lib/gallium-net/]
# Built by the project, not uploaded to Debian: there is no Debian bug to close.
initial-upload-closes-no-bugs
`

// staticReason says why each packaged binary may be statically linked;
// lintian flags static binaries as errors and only exempts Go binaries of
// packages built from a Debian source package that build-depends on golang-go.
var staticReason = map[string]string{
	"usr/sbin/gallium-net-hook": "# The hook is built with CGO_ENABLED=0 on purpose: libvirtd runs it during\n" +
		"# every domain start with a minimal environment, and it must load fast and\n" +
		"# depend on no shared library (DESIGN.md section 4).\n",
	"usr/bin/gallium-net": "# This build of the CLI has no cgo code, so Go linked it statically; once it\n" +
		"# links libvirt it is dynamic and this override is no longer written.\n",
}

// writeLintianOverrides writes the package's lintian overrides, each with
// its reason as the comment above it (lintian shows it). An override is
// written only for a binary that is actually static, so none goes stale.
// files maps the installed path (no leading slash) to the built binary.
func writeLintianOverrides(path string, files map[string]string) error {
	var b strings.Builder
	b.WriteString(fixedLintianOverrides)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, installed := range names {
		d, err := dynamic(files[installed])
		if err != nil {
			return err
		}
		if d {
			continue
		}
		reason, ok := staticReason[installed]
		if !ok {
			return fmt.Errorf("binary %s is statically linked and packaging/build/deps.go gives no reason for it: build it with cgo or add the reason", files[installed])
		}
		fmt.Fprintf(&b, "%sstatically-linked-binary [%s]\n", reason, installed)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
