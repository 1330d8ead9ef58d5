package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/test/testenv"
)

// buildHook builds the real hook binary (CGO_ENABLED=0, as packaged) into a
// temporary directory, or uses $GALLIUM_HOOK_BIN when set.
func buildHook(b *testing.B) string {
	if p := os.Getenv("GALLIUM_HOOK_BIN"); p != "" {
		return p
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
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
