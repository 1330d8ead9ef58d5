package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

// pkgSpec is one line of test/lab/packages.txt:
//
//	PKG [nics=SEG,SEG,...] [timeout=DURATION] [mem=MB]
type pkgSpec struct {
	Dir     string // ./netsetup
	NICs    []string
	Timeout time.Duration
	MemMB   int
}

var defaultNICs = []string{"lan0", "lan0", "lan1", "lan1"}

func parseSpec(line string) (pkgSpec, error) {
	f := strings.Fields(line)
	s := pkgSpec{Dir: f[0], NICs: defaultNICs, Timeout: 10 * time.Minute}
	if !strings.HasPrefix(s.Dir, "./") {
		s.Dir = "./" + s.Dir
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "nics":
			s.NICs = strings.Split(v, ",")
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				return s, fmt.Errorf("%s: %v", kv, err)
			}
			s.Timeout = d
		case "mem":
			if _, err := fmt.Sscan(v, &s.MemMB); err != nil {
				return s, fmt.Errorf("%s: %v", kv, err)
			}
		default:
			return s, fmt.Errorf("unknown option %q", kv)
		}
	}
	return s, nil
}

func readList(path string) ([]pkgSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var specs []pkgSpec
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		s, err := parseSpec(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		specs = append(specs, s)
	}
	return specs, sc.Err()
}

// runTests builds each package's test binary (static) on the host, boots
// one lab VM per package, runs the binary inside with -test.v and
// GALLIUM_LAB=1, and streams its output. It prints go test's closing line
// per package ("ok" or "FAIL") and returns 1 if anything failed or could
// not run.
func runTests(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("test", flag.ExitOnError)
	list := fs.String("list", "test/lab/packages.txt", "package list")
	run := fs.String("run", "", "only tests matching this regexp (-test.run)")
	count := fs.Int("count", 1, "run each test `N` times (-test.count), to chase a flaky one")
	fs.Parse(args)
	root, err := lab.RepoRoot()
	if err != nil {
		return 1, err
	}
	if err := os.Chdir(root); err != nil {
		return 1, err
	}
	var specs []pkgSpec
	if fs.NArg() > 0 {
		for _, a := range fs.Args() {
			s, err := parseSpec(a)
			if err != nil {
				return 1, err
			}
			specs = append(specs, s)
		}
	} else if specs, err = readList(*list); err != nil {
		return 1, err
	}
	module, err := modulePath(root)
	if err != nil {
		return 1, err
	}
	if _, err := lab.Prepare(ctx); err != nil {
		fmt.Printf("FAIL\tkernel lab: cannot prepare: %v\n", err)
		return 1, err
	}
	runDir, err := os.MkdirTemp("", "gallium-lab-run-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(runDir)
	os.Chmod(runDir, 0o755)

	failed := 0
	for _, s := range specs {
		importPath := strings.TrimSuffix(module+filepath.Clean("/"+s.Dir), "/")
		ok, err := runPackage(ctx, root, runDir, importPath, s, *run, *count)
		if err != nil {
			fmt.Printf("--- FAIL: %s (kernel lab)\n    %v\n", importPath, strings.ReplaceAll(err.Error(), "\n", "\n    "))
		}
		if !ok {
			failed++
		}
		if ctx.Err() != nil {
			return 1, ctx.Err()
		}
	}
	if failed > 0 {
		return 1, nil
	}
	return 0, nil
}

func modulePath(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("no module line in go.mod")
	}
	return string(m[1]), nil
}

func runPackage(ctx context.Context, root, runDir, importPath string, s pkgSpec, runRE string, count int) (bool, error) {
	start := time.Now()
	name := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(strings.TrimPrefix(filepath.Clean(s.Dir), "./")), "-")
	name = strings.Trim(name, "-")
	if len(name) > 24 {
		name = name[len(name)-24:]
	}
	bin := filepath.Join(runDir, "bin", name+".test")
	fmt.Printf("=== lab: %s: building the test binary\n", importPath)
	os.MkdirAll(filepath.Dir(bin), 0o755)
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, s.Dir)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	out, err := build.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "no Go files in") {
			// Listed in packages.txt to run in the lab: losing its tests
			// must not pass.
			fmt.Printf("FAIL\t%s [no Go files: remove it from packages.txt or restore its tests]\n", importPath)
			return false, nil
		}
		fmt.Print(string(out))
		fmt.Printf("FAIL\t%s [build failed]\n", importPath)
		return false, nil
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Printf("FAIL\t%s [no test files: remove it from packages.txt or restore its tests]\n", importPath)
		return false, nil
	}

	var nics []lab.NIC
	var nicEnv []string
	for i, seg := range s.NICs {
		g := fmt.Sprintf("eth%d", i)
		nics = append(nics, lab.NIC{ID: g, Segment: seg, Guest: g})
		nicEnv = append(nicEnv, g+"="+seg)
	}
	vmName := "t-" + name
	if len(vmName) > 32 {
		vmName = vmName[:32]
	}
	vm, err := lab.Boot(ctx, lab.Config{
		Name:  vmName,
		NICs:  nics,
		MemMB: s.MemMB,
		// The repository at the same path as on the host: test binaries
		// find their files through paths compiled in (runtime.Caller) as
		// well as relative to the package folder.
		Shares: []lab.Share{{Host: runDir, Guest: "/host"}, {Host: root, Guest: root, ReadOnly: true}},
	})
	if err != nil {
		fmt.Printf("FAIL\t%s\t%.3fs [lab VM did not boot]\n", importPath, time.Since(start).Seconds())
		return false, err
	}
	defer vm.Close()
	fmt.Printf("=== lab: %s: VM %s booted in %s; running %s\n", importPath, vm.Name, vm.BootTime.Round(time.Millisecond), filepath.Base(bin))

	cmd := fmt.Sprintf("/host/bin/%s -test.v -test.count=%d -test.timeout %s", filepath.Base(bin), count, s.Timeout)
	if runRE != "" {
		cmd += " -test.run '" + strings.ReplaceAll(runRE, "'", `'\''`) + "'"
	}
	tctx, cancel := context.WithTimeout(ctx, s.Timeout+2*time.Minute)
	defer cancel()
	code, err := vm.Exec(tctx, cmd, lab.ExecOptions{
		Dir: filepath.Join(root, filepath.Clean(s.Dir)),
		Env: []string{"GALLIUM_LAB=1", "GALLIUM_STRICT=1", "GALLIUM_LAB_NICS=" + strings.Join(nicEnv, ",")},
		Out: os.Stdout,
	})
	secs := time.Since(start).Seconds()
	if err != nil {
		fmt.Printf("\nFAIL\t%s\t%.3fs [in the lab VM: %v]\n", importPath, secs, err)
		return false, nil
	}
	if code != 0 {
		fmt.Printf("FAIL\t%s\t%.3fs\n", importPath, secs)
		return false, nil
	}
	fmt.Printf("ok  \t%s\t%.3fs\n", importPath, secs)
	return true, nil
}
