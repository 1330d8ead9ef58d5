// Command build writes gallium-net's .deb and .rpm packages with nfpm used
// as a library (no prebuilt packaging tool is downloaded). It packages the
// binaries `make build` left in bin/, generates the man page and the shell
// completions by running the built CLI (so they cannot drift from --help),
// derives the package version from git (see version.go) and computes the
// shared-library dependencies of the binaries, which nfpm does not do.
//
//	go run ./packaging/build                      # dist/*.deb and dist/*.rpm
//	go run ./packaging/build -print-version       # the version it would use
//	go run ./packaging/build -version 1.2.3 -out /tmp/x
//
// Run it from the repository root (make packages does).
package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/gallium/gallium-net/plugin/atomicfile"
)

func main() {
	var (
		binDir       = flag.String("bin", "bin", "directory holding gallium-net and gallium-net-hook (from make build)")
		outDir       = flag.String("out", "dist", "directory the packages are written to")
		version      = flag.String("version", "", "package version (default: derived from git, see packaging/README.md)")
		arch         = flag.String("arch", runtime.GOARCH, "target architecture, Go naming (amd64, arm64)")
		formats      = flag.String("formats", "deb,rpm", "comma-separated package formats")
		printVersion = flag.Bool("print-version", false, "print the package version derived from git and exit")
		pkgDir       = flag.String("packaging", "packaging", "directory holding nfpm.yaml, the units, scripts and default config")
	)
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err := run(*binDir, *outDir, *pkgDir, *version, *arch, strings.Split(*formats, ","), *printVersion); err != nil {
		fmt.Fprintln(os.Stderr, "packaging/build:", err)
		os.Exit(1)
	}
}

func run(binDir, outDir, pkgDir, version, arch string, formats []string, printVersion bool) error {
	if version == "" {
		v, err := versionFromGit()
		if err != nil {
			return err
		}
		version = v
	} else if !validUpstream(strings.NewReplacer("~", ".", "+", ".").Replace(version)) {
		return fmt.Errorf("-version %q: want digits first, then only letters, digits, '.', '~' and '+' (valid for dpkg and rpm)", version)
	}
	if printVersion {
		fmt.Println(version)
		return nil
	}

	cliBin := filepath.Join(binDir, "gallium-net")
	hookBin := filepath.Join(binDir, "gallium-net-hook")
	for _, b := range []string{cliBin, hookBin} {
		if st, err := os.Stat(b); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("binary %s missing or not executable: run 'make build' first", b)
		}
	}

	stage, err := os.MkdirTemp("", "gallium-net-pkg-")
	if err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	defer os.RemoveAll(stage)

	// Debian and RPM policy: installed binaries carry no symbol tables.
	if cliBin, err = stripped(cliBin, stage); err != nil {
		return err
	}
	if hookBin, err = stripped(hookBin, stage); err != nil {
		return err
	}
	if err := generateDocs(cliBin, pkgDir, stage); err != nil {
		return err
	}
	if err := writeChangelog(filepath.Join(stage, "changelog.yaml"), version); err != nil {
		return err
	}
	debDeps, err := debShlibDepends(cliBin, hookBin)
	if err != nil {
		return err
	}
	rpmDeps, err := rpmElfRequires(cliBin, hookBin)
	if err != nil {
		return err
	}
	if err := writeLintianOverrides(filepath.Join(stage, "lintian-overrides"), map[string]string{
		"usr/bin/gallium-net":       cliBin,
		"usr/sbin/gallium-net-hook": hookBin,
	}); err != nil {
		return err
	}

	pkgDir, err = filepath.Abs(pkgDir)
	if err != nil {
		return err
	}
	env := map[string]string{
		"VERSION": version,
		"ARCH":    arch,
		"BIN":     filepath.Join(stage, "bin"),
		"STAGE":   stage,
		"PKG":     pkgDir,
		"EXAMPLES": func() string {
			p, _ := filepath.Abs("examples")
			return p
		}(),
	}
	cfgPath := filepath.Join(pkgDir, "nfpm.yaml")
	// nfpm expands ${X} only in some fields (not in contents without
	// "expand: true", not in scripts), so the whole file is expanded here,
	// and an unknown name is an error instead of an empty field.
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	var unknown []string
	text := os.Expand(string(raw), func(k string) string {
		v, ok := env[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	})
	if len(unknown) > 0 {
		return fmt.Errorf("%s: unknown variables %v; packaging/build defines VERSION, ARCH, BIN, STAGE, PKG and EXAMPLES", cfgPath, unknown)
	}
	config, err := nfpm.ParseWithEnvMapping(strings.NewReader(text), func(string) string { return "" })
	if err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("output directory %s: %w", outDir, err)
	}
	for _, format := range formats {
		info, err := config.Get(format)
		if err != nil {
			return fmt.Errorf("%s: format %s: %w", cfgPath, format, err)
		}
		switch format {
		case "deb":
			info.Depends = append(info.Depends, debDeps...)
		case "rpm":
			info.Depends = append(info.Depends, rpmDeps...)
		}
		info = nfpm.WithDefaults(info)
		info.Target = "" // the file name comes from ConventionalFileName
		if err := nfpm.Validate(info); err != nil {
			return fmt.Errorf("%s: format %s: %w", cfgPath, format, err)
		}
		packager, err := nfpm.Get(format)
		if err != nil {
			return err
		}
		target := filepath.Join(outDir, packager.ConventionalFileName(info))
		if err := writePackage(packager, info, target); err != nil {
			return err
		}
		slog.Info("package written", "format", format, "file", target, "version", version)
		fmt.Println(target)
	}
	return nil
}

// writePackage writes to a temporary file first so an interrupted build
// never leaves a truncated package that looks complete.
func writePackage(p nfpm.Packager, info *nfpm.Info, target string) error {
	if err := atomicfile.WriteFunc(target, 0o644, func(w io.Writer) error { return p.Package(info, w) }); err != nil {
		return fmt.Errorf("package %s: %w", target, err)
	}
	return nil
}

// generateDocs runs the built CLI to produce the man page (gzipped at
// maximum compression without a timestamp, as Debian policy and lintian
// want) and the bash and zsh completion scripts.
func generateDocs(cliBin, pkgDir, stage string) error {
	page, err := output(cliBin, "man")
	if err != nil {
		return err
	}
	if err := checkManSection1(page); err != nil {
		return fmt.Errorf("%s man: %w", cliBin, err)
	}
	if err := writeGzip(filepath.Join(stage, "gallium-net.man.gz"), page); err != nil {
		return err
	}
	// The hook's page is written by hand: it has no command line to
	// generate one from (libvirt runs it).
	hookPage, err := os.ReadFile(filepath.Join(pkgDir, "man", "gallium-net-hook.8"))
	if err != nil {
		return fmt.Errorf("the hook's man page: %w", err)
	}
	if err := writeGzip(filepath.Join(stage, "gallium-net-hook.man.gz"), hookPage); err != nil {
		return err
	}
	for _, shell := range []string{"bash", "zsh"} {
		script, err := output(cliBin, "completion", shell)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(script)) == 0 {
			return fmt.Errorf("%s completion %s printed nothing", cliBin, shell)
		}
		if err := os.WriteFile(filepath.Join(stage, "completion."+shell), script, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeGzip writes data gzip-compressed (best compression: man pages).
func writeGzip(path string, data []byte) error {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, gz.Bytes(), 0o644)
}

// checkManSection1 makes sure the page is in section 1, where pages of
// /usr/bin belong (lintian: no-manual-page, rpmlint:
// no-manual-page-for-binary otherwise). `gallium-net man` writes it so
// itself; this only catches a generator that stops doing it.
func checkManSection1(page []byte) error {
	for _, line := range strings.Split(string(page), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ".TH" {
			if f[2] != "1" {
				return fmt.Errorf("the page says section %s (%q); gallium-net man must write section 1", f[2], line)
			}
			return nil
		}
	}
	return fmt.Errorf("output has no .TH line; is this the gallium-net CLI?")
}

// stripped copies bin into dir/bin without symbol tables (Debian and RPM
// policy for installed binaries; Go's -s -w does the same at link time).
// Stripping a copy keeps `make build`'s binaries debuggable.
func stripped(bin, dir string) (string, error) {
	out := filepath.Join(dir, "bin", filepath.Base(bin))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	f, err := elf.Open(bin)
	if err != nil {
		return "", fmt.Errorf("binary %s: %w", bin, err)
	}
	hasSyms := f.Section(".symtab") != nil
	f.Close()
	if !hasSyms {
		data, err := os.ReadFile(bin)
		if err != nil {
			return "", err
		}
		return out, os.WriteFile(out, data, 0o755)
	}
	if _, err := exec.LookPath("strip"); err != nil {
		return "", fmt.Errorf("binary %s has symbols and strip is missing: install binutils", bin)
	}
	if _, err := output("strip", "--remove-section=.comment", "--remove-section=.note", "--strip-unneeded", "-o", out, bin); err != nil {
		return "", err
	}
	return out, nil
}

func output(name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// versionFromGit reads the repository state and applies packageVersion.
func versionFromGit() (string, error) {
	var g gitState
	if out, err := output("git", "describe", "--tags", "--long", "--match", "v[0-9]*", "--abbrev=7"); err == nil {
		g.Describe = strings.TrimSpace(string(out))
	}
	out, err := output("git", "log", "-1", "--format=%h %ct", "--abbrev=7")
	if err != nil {
		return "", fmt.Errorf("package version: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		return "", fmt.Errorf("package version: unexpected git log output %q", out)
	}
	g.ShortHash = fields[0]
	secs, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return "", fmt.Errorf("package version: commit time %q: %w", fields[1], err)
	}
	g.CommitTime = time.Unix(secs, 0)
	// Tracked files only: untracked scratch files do not change what a
	// commit builds, modified tracked files do.
	status, err := output("git", "status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return "", fmt.Errorf("package version: %w", err)
	}
	g.Dirty = len(bytes.TrimSpace(status)) > 0
	next, err := os.ReadFile("packaging/VERSION")
	if err != nil {
		return "", fmt.Errorf("package version: %w (run from the repository root)", err)
	}
	return packageVersion(g, strings.TrimSpace(string(next)))
}

// writeChangelog writes a one-entry chglog file: Debian wants
// changelog.Debian.gz and rpmlint wants a %changelog, and the version in it
// must match the package's. The history itself is git's.
func writeChangelog(path, version string) error {
	commit := "unknown"
	if out, err := output("git", "rev-parse", "HEAD"); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	date := time.Now().UTC()
	if out, err := output("git", "log", "-1", "--format=%ct"); err == nil {
		if secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			date = time.Unix(secs, 0).UTC() // reproducible: the commit's time, not the build's
		}
	}
	y := fmt.Sprintf(`- semver: %q
  date: %s
  packager: %q
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - commit: %q
      note: %q
`, version+"-1", date.Format(time.RFC3339), maintainer, commit,
		"Snapshot of git commit "+commit[:min(12, len(commit))]+".")
	return os.WriteFile(path, []byte(y), 0o644)
}

// maintainer must match nfpm.yaml's maintainer field (lintian compares the
// changelog trailer line with the control file).
const maintainer = "Gallium maintainers <gallium-net@gallium.dev>"
