// Package vip_test runs the floating VIP for real on this machine: three
// network namespaces act as hypervisors on a shared bridge (in a fourth
// namespace), each runs keepalived with the configuration gallium-net
// renders, and a client namespace asks by ARP who answers for the VIP.
package vip_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/plugin/vip"
	"github.com/gallium/gallium-net/test/testenv"
)

// The spec of the test cluster: 10.77.0.0/24 exists only inside the test's
// namespaces.
const specYAML = `cluster:
  name: gviptest
  subnet: 10.77.0.0/24
  vip: 10.77.0.100
  evaluation: true
hypervisors:
  - {name: hv1, managementIP: 10.77.0.11/24, adapters: [{name: eno1, speedMbps: 10000}]}
  - {name: hv2, managementIP: 10.77.0.12/24, adapters: [{name: eno1, speedMbps: 10000}]}
  - {name: hv3, managementIP: 10.77.0.13/24, adapters: [{name: eno1, speedMbps: 10000}]}
adapterGroups:
  - name: infra
    infrastructure: true
    adapters: {hv1: [eno1], hv2: [eno1], hv3: [eno1]}
networks:
  - {name: mgmt, adapterGroup: infra}
`

const (
	vipAddr  = "10.77.0.100"
	clientIP = "10.77.0.50/24"
	// maxTakeover and maxDual are the bounds; maxSilentTakeover
	// is issue 16's for a holder that dies without a goodbye (3 adverts of
	// 200 ms and a skew, then the ARP answer).
	maxTakeover       = 4 * time.Second
	maxSilentTakeover = time.Second
	// hogWatch is how long the CPU-hog test watches for a false takeover.
	hogWatch = 20 * time.Second
	maxDual  = time.Second
	// maxFirstDual bounds two holders at the first election, when every
	// keepalived starts within milliseconds: two can time out together
	// and stay MASTER until one hears the other's advert (0 or 0.8-0.9 s
	// measured, runs of 2026-12-04; the takeover bound is maxDual).
	maxFirstDual = 2 * time.Second
	sampleEvery  = 100 * time.Millisecond
)

type lab struct {
	t      *testing.T
	prefix string
	dir    string
	hvs    []string // namespace per hypervisor
	sw, cl string
	procs  map[string]*exec.Cmd
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab builds the namespaces: in each hypervisor namespace a bridge
// gbr-infra with a veth "gb-infra" standing in for the bond (this kernel
// has no bonding), its peer on the switch bridge; a client on the switch.
func newLab(t *testing.T) *lab {
	l := &lab{t: t, prefix: fmt.Sprintf("gvip%04x", rand.IntN(0x10000)), dir: t.TempDir(), procs: map[string]*exec.Cmd{}}
	l.sw, l.cl = l.prefix+"-sw", l.prefix+"-cl"
	for i := 1; i <= 3; i++ {
		l.hvs = append(l.hvs, fmt.Sprintf("%s-hv%d", l.prefix, i))
	}
	t.Cleanup(l.cleanup)
	for _, ns := range append([]string{l.sw, l.cl}, l.hvs...) {
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	for i, ns := range l.hvs {
		port := fmt.Sprintf("p%d", i+1)
		run(t, "ip", "-n", ns, "link", "add", "gbr-infra", "type", "bridge")
		run(t, "ip", "-n", ns, "link", "add", "gb-infra", "type", "veth", "peer", "name", port, "netns", l.sw)
		run(t, "ip", "-n", ns, "link", "set", "gb-infra", "master", "gbr-infra")
		run(t, "ip", "-n", ns, "link", "set", "gb-infra", "up")
		run(t, "ip", "-n", ns, "link", "set", "gbr-infra", "up")
		run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", 11+i), "dev", "gbr-infra")
		run(t, "ip", "-n", l.sw, "link", "set", port, "master", "br0")
		run(t, "ip", "-n", l.sw, "link", "set", port, "up")
	}
	run(t, "ip", "-n", l.cl, "link", "add", "eth0", "type", "veth", "peer", "name", "pc", "netns", l.sw)
	run(t, "ip", "-n", l.cl, "addr", "add", clientIP, "dev", "eth0")
	run(t, "ip", "-n", l.cl, "link", "set", "eth0", "up")
	run(t, "ip", "-n", l.sw, "link", "set", "pc", "master", "br0")
	run(t, "ip", "-n", l.sw, "link", "set", "pc", "up")
	return l
}

func (l *lab) cleanup() {
	for name, p := range l.procs {
		if p.Process != nil && p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGKILL)
			_ = p.Wait()
		}
		if l.t.Failed() {
			if log, err := os.ReadFile(filepath.Join(l.dir, name+".log")); err == nil {
				l.t.Logf("keepalived log of %s:\n%s", name, lastLines(string(log), 30))
			}
		}
	}
	for _, ns := range append([]string{l.sw, l.cl}, l.hvs...) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// start runs keepalived in hypervisor namespace i with the rendered config,
// in the foreground, with its own pid files.
func (l *lab) start(i int, conf []byte) {
	t := l.t
	name := fmt.Sprintf("hv%d", i+1)
	path := filepath.Join(l.dir, name+".conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.hvs[i], "keepalived", "-n", "-l", "-D", "-P",
		"-f", path,
		"-p", filepath.Join(l.dir, name+".pid"),
		"-r", filepath.Join(l.dir, name+"-vrrp.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start keepalived in %s: %v", l.hvs[i], err)
	}
	l.procs[name] = cmd
}

// holders returns the indexes of hypervisor namespaces that carry the VIP.
func (l *lab) holders() []int {
	var out []int
	for i, ns := range l.hvs {
		b, err := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "gbr-infra").Output()
		if err == nil && strings.Contains(string(b), " "+vipAddr+"/") {
			out = append(out, i)
		}
	}
	return out
}

func (l *lab) mac(i int) string {
	out := run(l.t, "ip", "-n", l.hvs[i], "-o", "link", "show", "gbr-infra")
	m := regexp.MustCompile(`link/ether ([0-9a-f:]+)`).FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("no MAC in %q", out)
	}
	return m[1]
}

var replyRE = regexp.MustCompile(`(?i)reply from ` + regexp.QuoteMeta(vipAddr) + ` \[([0-9a-f:]+)\]`)

// whoAnswers asks by ARP from the client who has the VIP and returns the
// answering MAC; "" when nobody answered within wait (rounded up to whole
// seconds). arping returns as soon as the reply is in.
func (l *lab) whoAnswers(wait time.Duration) string {
	secs := int((wait + time.Second - 1) / time.Second) // arping takes whole seconds
	out, _ := exec.Command("ip", "netns", "exec", l.cl, "arping", "-c", "1", "-w", fmt.Sprint(secs), "-I", "eth0", vipAddr).CombinedOutput()
	m := replyRE.FindStringSubmatch(string(out))
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// sampler records, every 100 ms, how many namespaces hold the VIP, and the
// longest stretch during which two or more did (since the last reset).
type sampler struct {
	mu       sync.Mutex
	samples  int
	dualFrom time.Time
	maxDual  time.Duration
	// dualWho is who held the VIP during the longest dual hold (hvN
	// names), to tell a slow goodbye from two backups' race.
	dualWho []string
	last    []int
}

// reset returns the longest dual hold so far and who held the VIP then,
// and starts measuring afresh.
func (s *sampler) reset() (time.Duration, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, who := s.maxDual, s.dualWho
	s.maxDual, s.dualWho, s.dualFrom = 0, nil, time.Time{}
	return d, who
}

func (s *sampler) run(ctx context.Context, l *lab) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h := l.holders()
			s.mu.Lock()
			s.samples++
			s.last = h
			if len(h) > 1 {
				if s.dualFrom.IsZero() {
					s.dualFrom = now
				}
				if d := now.Sub(s.dualFrom); d >= s.maxDual {
					s.maxDual = d
					s.dualWho = nil // a new slice: reset handed the old one out
					for _, i := range h {
						s.dualWho = append(s.dualWho, fmt.Sprintf("hv%d", i+1))
					}
				}
			} else {
				s.dualFrom = time.Time{}
			}
			s.mu.Unlock()
		}
	}
}

// carrierCheck stands in for the bond liveness check: this kernel has no
// bonding, the stand-in "bond" is a veth, so the check looks at its
// carrier instead of the bond's active adapter. Everything else is the
// rendered config.
const carrierCheck = "grep -qx 1 /sys/class/net/gb-infra/carrier"

// startCluster builds the namespaces and runs keepalived in each
// hypervisor namespace with its rendered config, check being the liveness
// check's shell command.
func startCluster(t *testing.T, check string) *lab {
	testenv.NeedRoot(t)
	for _, tool := range []string{"keepalived", "arping", "ip"} {
		testenv.NeedTool(t, tool, "the VIP tests run keepalived in namespaces: run test/setup/deps.sh")
	}
	spec, err := specfile.Parse([]byte(specYAML), "gviptest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t)
	for i, h := range spec.Hypervisors {
		conf, err := vip.Render(spec, h.Name, vip.Options{CheckScript: "/bin/sh -c '" + check + "'"})
		if err != nil {
			t.Fatal(err)
		}
		l.start(i, conf)
	}
	return l
}

// singleHolder waits up to wait for exactly one namespace to hold the VIP
// for settle without a change: keepalived processes start a few ms apart,
// and the first election may hand the VIP over once before it settles.
func (l *lab) singleHolder(wait time.Duration) int {
	const settle = 2 * time.Second
	deadline := time.Now().Add(wait)
	holder, since := -1, time.Now()
	for time.Now().Before(deadline) {
		cur := -1
		if h := l.holders(); len(h) == 1 {
			cur = h[0]
		}
		if cur != holder {
			holder, since = cur, time.Now()
		}
		if holder >= 0 && time.Since(since) >= settle {
			return holder
		}
		time.Sleep(sampleEvery)
	}
	return -1
}

// A liveness check that takes longer than its interval (a host starved of
// CPU: all three lab hypervisors were, once, under TCG) must not put the
// hypervisors in FAULT: with the old check (1 s, 2 failures) every one of
// them dropped the VIP at once. The bond's carrier is still tracked at
// once through track_interface (TestVIPFailover).
func TestVIPSurvivesASlowLivenessCheck(t *testing.T) {
	l := startCluster(t, "sleep 3; "+carrierCheck)
	first := l.singleHolder(25 * time.Second)
	if first < 0 {
		t.Fatalf("no single VIP holder within 25 s with a 3 s liveness check (holders: %v)", l.holders())
	}
	// 9 s (the old settings never elected a holder at all): the 3 s check
	// outlasts its 2 s interval, and keepalived skips a run that falls
	// while the last one still goes, without counting it as a failure.
	for end := time.Now().Add(9 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if h := l.holders(); len(h) != 1 || h[0] != first {
			t.Fatalf("the VIP left hv%d while its slow liveness check still passed (holders now %v)", first+1, h)
		}
	}
	t.Logf("hv%d held the VIP for 9 s of 3 s liveness checks", first+1)
}

func TestVIPFailover(t *testing.T) {
	l := startCluster(t, carrierCheck)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s sampler
	go s.run(ctx, l)

	// The first election: all start BACKUP; after the master-down interval
	// (3 adverts and a skew, under a second) the first to time out wins.
	// With nopreempt that need not be hv1: the keepalived processes start
	// a few ms apart.
	first := l.singleHolder(20 * time.Second)
	if first < 0 {
		t.Fatalf("no single VIP holder within 20 s (holders: %v)", l.holders())
	}
	if got, want := l.whoAnswers(2*time.Second), l.mac(first); got != want {
		t.Fatalf("VIP answered from %q, want hv%d's %s", got, first+1, want)
	}

	firstDual, firstWho := s.reset()
	t.Logf("first election: hv%d holds the VIP; longest dual hold %v %v", first+1, firstDual, firstWho)
	if firstDual > maxFirstDual {
		t.Errorf("at the first election two namespaces held the VIP for %v %v, more than %v", firstDual, firstWho, maxFirstDual)
	}

	// Stop the holder's keepalived as an operator or a shutdown would.
	stopped := fmt.Sprintf("hv%d", first+1)
	t0 := time.Now()
	if err := l.procs[stopped].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Watch the namespaces closely (every 20 ms) for the VIP to appear on
	// another one, then ask the client who answers: the takeover is done
	// when the VIP answers from the new holder's MAC.
	var onAddr, takeover time.Duration
	newHolder := -1
	for newHolder < 0 && time.Since(t0) < 10*time.Second {
		for _, i := range l.holders() {
			if i != first {
				newHolder = i
			}
		}
		if newHolder < 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if newHolder >= 0 {
		onAddr = time.Since(t0)
		want := l.mac(newHolder)
		for time.Since(t0) < 10*time.Second {
			if l.whoAnswers(time.Second) == want {
				takeover = time.Since(t0)
				break
			}
		}
		if takeover == 0 {
			t.Errorf("hv%d holds the VIP but the client's ARP is not answered from its MAC %s", newHolder+1, want)
		}
	}
	_ = l.procs[stopped].Wait()
	if newHolder < 0 {
		t.Fatalf("no other namespace answered for the VIP within 10 s of stopping %s (holders: %v)", stopped, l.holders())
	}
	// Let the sampler watch the settled state for a moment.
	time.Sleep(time.Second)
	cancel()
	s.mu.Lock()
	t.Logf("VIP takeover: %s stopped; hv%d had the address after %v and answered ARP after %v; %d samples every %v, longest dual hold %v %v",
		stopped, newHolder+1, onAddr.Round(time.Millisecond), takeover.Round(time.Millisecond), s.samples, sampleEvery, s.maxDual, s.dualWho)
	if takeover > maxTakeover {
		t.Errorf("takeover took %v, more than %v", takeover, maxTakeover)
	}
	if s.maxDual > maxDual {
		t.Errorf("two namespaces held the VIP for %v, more than %v", s.maxDual, maxDual)
	}
	if len(s.last) != 1 || s.last[0] != newHolder {
		t.Errorf("after takeover the holders are %v, want only hv%d", s.last, newHolder+1)
	}
	s.mu.Unlock()

	// Second failure: the new holder's infrastructure "bond" loses its
	// last adapter. The tracked interface puts keepalived in FAULT, which
	// drops the VIP; the holder cannot send a goodbye over a dead link, so
	// the last hypervisor takes over after the master-down interval
	// (3 adverts + skew): what the others see of a holder that dies.
	third := 3 - first - newHolder
	linkTakeover, dual := l.cutAndWait(newHolder, third)
	t.Logf("VIP takeover after hv%d lost its infrastructure link: hv%d answered after %v; longest dual hold %v", newHolder+1, third+1, linkTakeover.Round(time.Millisecond), dual)
	if linkTakeover > maxSilentTakeover {
		t.Errorf("takeover after a link failure took %v, more than %v", linkTakeover, maxSilentTakeover)
	}
	if dual > maxDual {
		t.Errorf("two namespaces held the VIP for %v after the link failure", dual)
	}
}

// cutAndWait cuts holder's infrastructure link (no goodbye gets out) and
// waits until next alone holds the VIP and answers ARP for it; it returns
// how long that took and the longest time two namespaces held the VIP.
func (l *lab) cutAndWait(holder, next int) (time.Duration, time.Duration) {
	t := l.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s sampler
	go s.run(ctx, l)
	t1 := time.Now()
	run(t, "ip", "-n", l.hvs[holder], "link", "set", "gb-infra", "down")
	var took time.Duration
	want := l.mac(next)
	for time.Since(t1) < 15*time.Second {
		if h := l.holders(); len(h) == 1 && h[0] == next && l.whoAnswers(time.Second) == want {
			took = time.Since(t1)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if took == 0 {
		t.Fatalf("hv%d lost its infrastructure link but hv%d did not take the VIP within 15 s (holders %v)", holder+1, next+1, l.holders())
	}
	return took, s.maxDual
}

// hogs runs n busy loops (ordinary processes, as VMs' vCPU threads are)
// until the test ends.
func hogs(t *testing.T, n int) {
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
}

// A hypervisor whose every core is busy (its VMs) must keep the VIP: no
// false takeover while busy loops take twice as many CPUs as the machine
// has; and the takeover after the holder's link dies stays under the
// bound beside them. keepalived's VRRP process runs at a real-time
// priority (the rendered vrrp_rt_priority), so its adverts go out on time.
func TestVIPUnderCPUHogs(t *testing.T) {
	if os.Getenv("GALLIUM_SERIAL_TESTS") != "1" {
		t.Skip("busy loops on every core would starve the tests of the packages running beside it: the lab tier runs it alone (GALLIUM_SERIAL_TESTS=1)")
	}
	l := startCluster(t, carrierCheck)
	first := l.singleHolder(20 * time.Second)
	if first < 0 {
		t.Fatalf("no single VIP holder within 20 s (holders: %v)", l.holders())
	}
	n := 2 * runtime.NumCPU()
	hogs(t, n)
	changes, samples := 0, 0
	for end := time.Now().Add(hogWatch); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		samples++
		if h := l.holders(); len(h) != 1 || h[0] != first {
			changes++
			t.Logf("holders %v at sample %d (hv%d held it)", h, samples, first+1)
		}
	}
	t.Logf("%d busy loops beside the cluster for %v: %d of %d samples (20 ms apart) saw another holder than hv%d", n, hogWatch, changes, samples, first+1)
	if changes > 0 {
		t.Errorf("false takeover under CPU hogs: %d samples saw the VIP off hv%d or held twice", changes, first+1)
	}
	next := (first + 1) % 3
	// The next holder is the highest priority among the others; the cut
	// one goes to FAULT.
	if other := (first + 2) % 3; vip.Priority(other, 3) > vip.Priority(next, 3) {
		next = other
	}
	took, dual := l.cutAndWait(first, next)
	t.Logf("beside %d busy loops: hv%d's link cut, hv%d answered for the VIP after %v; longest dual hold %v", n, first+1, next+1, took.Round(time.Millisecond), dual)
	if took > maxSilentTakeover {
		t.Errorf("takeover beside CPU hogs took %v, more than %v", took, maxSilentTakeover)
	}
}
