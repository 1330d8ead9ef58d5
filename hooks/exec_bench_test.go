package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/test/testenv"
)

// buildHook builds the real hook binary (CGO_ENABLED=0, as packaged) into a
// temporary directory, or uses $GALLIUM_HOOK_BIN when set.
func buildHook(b *testing.B) string {
	if p := os.Getenv("GALLIUM_HOOK_BIN"); p != "" {
		return p
	}
	goTool, err := goCommand()
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "gallium-net-hook")
	cmd := exec.Command(goTool, "build", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the hook: %v\n%s", err, msg)
	}
	return out
}

// execLatency runs the real binary b.N times as libvirt would (qemu.d path
// in argv[0], XML on stdin) and reports median and p99 besides the mean
// (ns/op). Use -benchtime 300x (or >= 1s) for at least 200 runs.
func execLatency(b *testing.B, bin string, environ []string, op, stdin string) {
	dir := filepath.Join(b.TempDir(), "qemu.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	link := filepath.Join(dir, "gallium-net")
	if err := os.Symlink(bin, link); err != nil {
		b.Fatal(err)
	}
	n := b.N
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for range n {
		cmd := exec.Command(link, "vm1", op, "begin", "-")
		cmd.Env = environ
		cmd.Stdin = strings.NewReader(stdin)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("hook %s: %v: %s", op, err, errb.String())
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(n), "runs")
}

// BenchmarkHookExecUnmanaged: the no-op path every VM start pays for a domain
// gallium-net does not manage.
func BenchmarkHookExecUnmanaged(b *testing.B) {
	bin := buildHook(b)
	dir := b.TempDir()
	environ := []string{"PATH=/usr/bin:/bin", "GALLIUM_HOOK_STATE_DIR=" + filepath.Join(dir, "state"), "GALLIUM_HOOK_SNAPSHOT=" + filepath.Join(dir, "none.json"), "GALLIUM_HOOK_LOG=" + filepath.Join(dir, "hook.log")}
	execLatency(b, bin, environ, "start", domainXML("plain", uuid1, false, 4, "flat"))
}

// BenchmarkHookExecManaged4NICs: `start begin` of a managed domain with 4
// NICs whose taps are real (a bridge and 4 taps on this host, named gtb-*,
// connected to nothing): snapshot read, records lock and write, 4 taps read
// and checked through netlink.
func BenchmarkHookExecManaged4NICs(b *testing.B) {
	testenv.NeedRoot(b)
	bin := buildHook(b)
	const br = "gbr-gtbench"
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}}
	_ = netlink.LinkDel(bridge)
	if err := netlink.LinkAdd(bridge); err != nil {
		b.Fatalf("add bridge: %v", err)
	}
	defer netlink.LinkDel(bridge)
	if err := netlink.LinkSetUp(bridge); err != nil {
		b.Fatal(err)
	}
	xml := domainXML("vm1", uuid1, true, 4, "flat")
	for i := range 4 {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("gtb-tap%d", i)}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
		_ = netlink.LinkDel(tap)
		if err := netlink.LinkAdd(tap); err != nil {
			b.Fatalf("add tap: %v", err)
		}
		defer netlink.LinkDel(tap)
		xml = strings.Replace(xml, fmt.Sprintf(`dev="vnet%d"`, i), fmt.Sprintf(`dev="gtb-tap%d"`, i), 1)
	}
	xml = strings.ReplaceAll(xml, "gbr-vm", br)
	dir := b.TempDir()
	snap := filepath.Join(dir, "snapshot.json")
	writeTestSnapshot(b, snap)
	data, err := os.ReadFile(snap)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(snap, bytes.ReplaceAll(data, []byte("gbr-vm"), []byte(br)), 0o600); err != nil {
		b.Fatal(err)
	}
	environ := []string{"PATH=/usr/bin:/bin", "GALLIUM_HOOK_STATE_DIR=" + filepath.Join(dir, "state"), "GALLIUM_HOOK_SNAPSHOT=" + snap, "GALLIUM_HOOK_LOG=" + filepath.Join(dir, "hook.log")}
	execLatency(b, bin, environ, "start", xml)
	log, _ := os.ReadFile(filepath.Join(dir, "hook.log"))
	if !bytes.Contains(log, []byte("tap programmed")) || b.N > 1 && !bytes.Contains(log, []byte("tap already right")) {
		b.Fatalf("the hook did not program the taps:\n%s", log[:min(len(log), 2000)])
	}
}

// benchHost is a hook environment for the records benchmarks: a bridge and
// taps on this host (named gtb*, connected to nothing), the snapshot, and
// the hook linked into qemu.d and network.d as libvirt runs it.
type benchHost struct {
	bin, qemu, network, snap, dir string
	bridge                        string
}

func newBenchHost(b *testing.B, bridge string, taps []string) *benchHost {
	b.Helper()
	testenv.NeedRoot(b)
	h := &benchHost{bin: buildHook(b), dir: b.TempDir(), bridge: bridge}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	_ = netlink.LinkDel(br)
	if err := netlink.LinkAdd(br); err != nil {
		b.Fatalf("add bridge %s: %v", bridge, err)
	}
	b.Cleanup(func() { _ = netlink.LinkDel(br) })
	if err := netlink.LinkSetUp(br); err != nil {
		b.Fatal(err)
	}
	for _, name := range taps {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
		_ = netlink.LinkDel(tap)
		if err := netlink.LinkAdd(tap); err != nil {
			b.Fatalf("add tap %s: %v", name, err)
		}
		b.Cleanup(func() { _ = netlink.LinkDel(tap) })
	}
	h.snap = filepath.Join(h.dir, "snapshot.json")
	writeTestSnapshot(b, h.snap)
	data, err := os.ReadFile(h.snap)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(h.snap, bytes.ReplaceAll(data, []byte("gbr-vm"), []byte(bridge)), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{"qemu.d", "network.d"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Symlink(h.bin, filepath.Join(h.dir, d, "gallium-net")); err != nil {
			b.Fatal(err)
		}
	}
	h.qemu, h.network = filepath.Join(h.dir, "qemu.d", "gallium-net"), filepath.Join(h.dir, "network.d", "gallium-net")
	return h
}

// environ is the hook's environment with records in stateDir (on tmpfs when
// there is one, as /run is).
func (h *benchHost) environ(stateDir string) []string {
	return []string{"PATH=/usr/bin:/bin", "GALLIUM_HOOK_STATE_DIR=" + stateDir, "GALLIUM_HOOK_SNAPSHOT=" + h.snap, "GALLIUM_HOOK_LOG=" + filepath.Join(h.dir, "hook.log")}
}

// hookCall is one run of the hook as libvirt makes it.
type hookCall struct {
	prog, object, op, subop, stdin string
}

func (c hookCall) run(environ []string) error {
	cmd := exec.Command(c.prog, c.object, c.op, c.subop, "-")
	cmd.Env = environ
	cmd.Stdin = strings.NewReader(c.stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hook %s %s %s: %v: %s", c.prog, c.object, c.op, err, errb.String())
	}
	return nil
}

// benchDomainXML is domain name (uuid) with one NIC per tap on the
// benchmark's bridge, MACs 52:54:00:ID:00:0N.
func benchDomainXML(name, uuid string, id int, bridge string, taps []string) string {
	xml := strings.ReplaceAll(domainXML(name, uuid, true, len(taps), "flat"), "52:54:00:00:00:", fmt.Sprintf("52:54:00:%02x:00:", id))
	for i, tap := range taps {
		xml = strings.Replace(xml, fmt.Sprintf(`dev="vnet%d"`, i), fmt.Sprintf(`dev="%s"`, tap), 1)
	}
	return strings.ReplaceAll(xml, "gbr-vm", bridge)
}

// seedRecords records n running domains with 4 NICs each in dir, as n
// starts would have. With GALLIUM_BENCH_SEED=legacy it writes them as the
// previous hook did instead (one nics.json, which a hook of this version
// converts on its first call): the same benchmark then measures the previous
// hook through GALLIUM_HOOK_BIN.
func seedRecords(b *testing.B, dir string, n int) {
	b.Helper()
	domains := map[string]*records.Domain{}
	for i := range n {
		uuid := fmt.Sprintf("aaaaaaaa-0000-0000-0000-%012d", i)
		d := &records.Domain{UUID: uuid, Name: fmt.Sprintf("seed%04d", i), Running: true}
		for j := range 4 {
			d.NICs = append(d.NICs, records.NIC{MAC: fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>8, i&0xff, j), Network: "flat", Bridge: "gbr-seed", Tap: fmt.Sprintf("vnet%d", i*4+j), MTU: 1500})
		}
		domains[uuid] = d
	}
	if os.Getenv("GALLIUM_BENCH_SEED") == "legacy" {
		data, err := json.Marshal(map[string]any{"version": 1, "domains": domains})
		if err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "nics.json"), data, 0o600); err != nil {
			b.Fatal(err)
		}
		return
	}
	s := records.Store{Dir: dir}
	for uuid, d := range domains {
		tx, err := s.Open(uuid)
		if err != nil {
			b.Fatal(err)
		}
		c, err := tx.Put(d, true)
		tx.Close()
		if err != nil || len(c) > 0 {
			b.Fatalf("seed %s: %v %+v", uuid, err, c)
		}
	}
}

// countRecorded is the number of domains recorded in dir. With
// GALLIUM_BENCH_SEED=legacy (the previous hook under GALLIUM_HOOK_BIN) it
// reads nics.json as it is: reading it through records would convert it.
func countRecorded(b *testing.B, dir string) int {
	if os.Getenv("GALLIUM_BENCH_SEED") == "legacy" {
		var st struct{ Domains map[string]json.RawMessage }
		data, err := os.ReadFile(filepath.Join(dir, "nics.json"))
		if err != nil || json.Unmarshal(data, &st) != nil {
			b.Fatalf("records of the previous hook: %v", err)
		}
		return len(st.Domains)
	}
	st, err := records.Store{Dir: dir}.Read()
	if err != nil {
		b.Fatal(err)
	}
	return len(st.Domains)
}

// benchStateDir is a fresh records directory, on tmpfs when the machine has one.
func benchStateDir(b *testing.B) string {
	d, err := os.MkdirTemp("/dev/shm", "gallium-hook-bench-")
	if err != nil {
		return filepath.Join(b.TempDir(), "state")
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "state")
}

// goCommand is the go tool: go test puts its own first in PATH.
func goCommand() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is not in PATH (go test puts it there): %w", err)
	}
	return p, nil
}

// emptyBinary builds a static Go program that does nothing: the floor of
// any hook's cost (fork, exec, Go runtime start).
func emptyBinary(b *testing.B) string {
	goTool, err := goCommand()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module empty\n\ngo 1.22\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "empty")
	cmd := exec.Command(goTool, "build", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the empty binary: %v\n%s", err, msg)
	}
	return out
}

var recordedDomains = []int{0, 100, 1000}

// benchRecordsScaling measures one hook operation through the real binary
// with 0, 100 and 1000 other domains recorded (4 NICs each, running), and
// the empty static Go binary run the same way, interleaved in every
// iteration (in a rotating order) so that load from other processes weighs
// on all alike. setup runs untimed before the operation, reset after it.
// It reports the median of each (empty-ms, d0-ms, d100-ms, d1000-ms) and
// the ratio d1000/d0 (x1000/x0), which make bench holds to 1.3.
func benchRecordsScaling(b *testing.B, calls func(h *benchHost) (setup []hookCall, op hookCall, reset []hookCall)) {
	h := newBenchHost(b, benchBridge, benchTaps)
	setup, op, reset := calls(h)
	empty := emptyBinary(b)
	envs := make([][]string, len(recordedDomains))
	for i, n := range recordedDomains {
		dir := benchStateDir(b)
		seedRecords(b, dir, n)
		envs[i] = h.environ(dir)
		// Warm-up, untimed: the first call converts a legacy seed.
		for _, c := range append(append(append([]hookCall(nil), setup...), op), reset...) {
			if err := c.run(envs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(recordedDomains)+1)
	b.ResetTimer()
	for it := range b.N {
		for k := range len(lat) {
			slot := (it + k) % len(lat)
			if slot == len(recordedDomains) {
				c := hookCall{prog: empty, object: op.object, op: op.op, subop: op.subop, stdin: op.stdin}
				start := time.Now()
				if err := c.run(nil); err != nil {
					b.Fatal(err)
				}
				lat[slot] = append(lat[slot], time.Since(start))
				continue
			}
			b.StopTimer()
			for _, c := range setup {
				if err := c.run(envs[slot]); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			start := time.Now()
			if err := op.run(envs[slot]); err != nil {
				b.Fatal(err)
			}
			lat[slot] = append(lat[slot], time.Since(start))
			b.StopTimer()
			for _, c := range reset {
				if err := c.run(envs[slot]); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	med := func(l []time.Duration) float64 {
		slices.Sort(l)
		return float64(l[len(l)/2].Microseconds()) / 1000
	}
	for i, n := range recordedDomains {
		b.ReportMetric(med(lat[i]), fmt.Sprintf("d%d-ms", n))
	}
	b.ReportMetric(med(lat[len(recordedDomains)]), "empty-ms")
	b.ReportMetric(med(lat[2])/med(lat[0]), "x1000/x0")
	b.ReportMetric(float64(b.N), "runs")
}

const (
	benchBridge = "gbr-gtbench"
	benchUUID   = "bbbbbbbb-0000-0000-0000-000000000001"
)

var benchTaps = []string{"gtb-tap0", "gtb-tap1", "gtb-tap2", "gtb-tap3"}

// calls are the hook calls of the benchmarks' domain vm1.
func (h *benchHost) calls() (start, stopped, portCreated, portDeleted hookCall) {
	xml := benchDomainXML("vm1", benchUUID, 0, h.bridge, benchTaps)
	port := hookDataXML("flat", h.bridge, "52:54:00:00:00:01", "vm1", benchUUID)
	return hookCall{h.qemu, "vm1", "start", "begin", xml}, hookCall{h.qemu, "vm1", "stopped", "end", xml},
		hookCall{h.network, "flat", "port-created", "begin", port}, hookCall{h.network, "flat", "port-deleted", "begin", port}
}

// BenchmarkHookRecordsPortCreated: network `port-created` (a NIC of a domain
// being started is recorded), then, untimed, port-deleted.
func BenchmarkHookRecordsPortCreated(b *testing.B) {
	benchRecordsScaling(b, func(h *benchHost) ([]hookCall, hookCall, []hookCall) {
		_, _, created, deleted := h.calls()
		return nil, created, []hookCall{deleted}
	})
}

// BenchmarkHookRecordsStart: qemu `start begin` of a domain with 4 NICs whose
// taps are real (each start finds them right after the first), then,
// untimed, stopped.
func BenchmarkHookRecordsStart(b *testing.B) {
	benchRecordsScaling(b, func(h *benchHost) ([]hookCall, hookCall, []hookCall) {
		start, stopped, _, _ := h.calls()
		return nil, start, []hookCall{stopped}
	})
}

// BenchmarkHookRecordsStopped: qemu `stopped end` of a running domain with 4
// NICs, after an untimed start.
func BenchmarkHookRecordsStopped(b *testing.B) {
	benchRecordsScaling(b, func(h *benchHost) ([]hookCall, hookCall, []hookCall) {
		start, stopped, _, _ := h.calls()
		return []hookCall{start}, stopped, nil
	})
}

// BenchmarkHookStart50Concurrent: the start hooks of 50 domains with 4 NICs
// each (200 real taps, taken off the bridge before every round so that each
// start programs them), run one at a time and all at once, alternately,
// through the real binary with one records directory. It reports the median
// single start (one-ms), the wall time of the 50 one at a time (seq-ms) and
// at once (conc-ms), and conc-ms over one-ms (conc/one) and over seq-ms
// (conc/seq). Each round ends with the 50 stopped hooks, untimed.
//
// Every hook is a process that costs CPU to start, so on 2 cores 50 of them
// cannot end in the time of one whatever they wait for. The floor is 50
// empty static Go binaries run at once (floor-ms, interleaved too), and
// conc-ms over it (conc/floor) is what the hook adds to that floor when 50
// run at once: waiting for one another would show there.
func BenchmarkHookStart50Concurrent(b *testing.B) {
	const domains, nics = 50, 4
	var taps [][]string
	var all []string
	for d := range domains {
		var t []string
		for n := range nics {
			t = append(t, fmt.Sprintf("gtc%02d-%d", d, n))
		}
		taps = append(taps, t)
		all = append(all, t...)
	}
	h := newBenchHost(b, "gbr-gtconc", all)
	var starts, stops []hookCall
	for d := range domains {
		name, uuid := fmt.Sprintf("vm%02d", d), fmt.Sprintf("cccccccc-0000-0000-0000-%012d", d)
		xml := benchDomainXML(name, uuid, d+1, h.bridge, taps[d])
		starts = append(starts, hookCall{h.qemu, name, "start", "begin", xml})
		stops = append(stops, hookCall{h.qemu, name, "stopped", "end", xml})
	}
	environ := h.environ(benchStateDir(b))
	// unplug takes every tap off the bridge and checks that the round left
	// no record behind.
	unplug := func() {
		for _, c := range stops {
			if err := c.run(environ); err != nil {
				b.Fatal(err)
			}
		}
		for _, name := range all {
			l, err := netlink.LinkByName(name)
			if err != nil {
				b.Fatal(err)
			}
			if err := netlink.LinkSetNoMaster(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	checkRecorded := func() {
		if n := countRecorded(b, strings.TrimPrefix(environ[1], "GALLIUM_HOOK_STATE_DIR=")); n != domains {
			b.Fatalf("%d domains recorded after the starts, want %d", n, domains)
		}
	}
	empty := emptyBinary(b)
	var one, seq, conc, floor []time.Duration
	emptyAtOnce := func() {
		errs := make(chan error, domains)
		t0 := time.Now()
		for _, c := range starts {
			go func() { errs <- hookCall{empty, c.object, c.op, c.subop, c.stdin}.run(nil) }()
		}
		for range starts {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		floor = append(floor, time.Since(t0))
	}
	sequential := func() {
		t0 := time.Now()
		for _, c := range starts {
			start := time.Now()
			if err := c.run(environ); err != nil {
				b.Fatal(err)
			}
			one = append(one, time.Since(start))
		}
		seq = append(seq, time.Since(t0))
	}
	concurrent := func() {
		errs := make(chan error, domains)
		t0 := time.Now()
		for _, c := range starts {
			go func() { errs <- c.run(environ) }()
		}
		for range starts {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		conc = append(conc, time.Since(t0))
	}
	b.ResetTimer()
	for it := range b.N {
		for k := range 2 {
			b.StopTimer()
			unplug()
			b.StartTimer()
			if (it+k)%2 == 0 {
				sequential()
			} else {
				concurrent()
			}
			b.StopTimer()
			checkRecorded()
			if k == 1 {
				emptyAtOnce()
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	med := func(l []time.Duration) float64 {
		slices.Sort(l)
		return float64(l[len(l)/2].Microseconds()) / 1000
	}
	b.ReportMetric(med(one), "one-ms")
	b.ReportMetric(med(seq), "seq-ms")
	b.ReportMetric(med(conc), "conc-ms")
	b.ReportMetric(med(conc)/med(one), "conc/one")
	b.ReportMetric(med(conc)/med(seq), "conc/seq")
	b.ReportMetric(med(floor), "floor-ms")
	b.ReportMetric(med(conc)/med(floor), "conc/floor")
	b.ReportMetric(float64(b.N), "rounds")
}
