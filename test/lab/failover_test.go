package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallium/gallium-net/test/lab"
	"github.com/gallium/gallium-net/test/lab/labwire"
)

// Failover targets from issue 3 ("Must show"): with miimon 100 the active
// adapter switches within 300 ms and a 10 ms probe stream loses at most 30
// probes. Under TCG on a loaded machine the figures vary, so the test
// fails only when failover does not happen or traffic does not come back;
// GALLIUM_LAB_FAILOVER_STRICT=1 makes missing the targets a failure too.
const (
	targetSwitch = 300 * time.Millisecond
	targetLost   = 30
)

// probeStats is labtool probe's output.
type probeStats = labwire.ProbeStats

// bondEvent is one line of labtool watch-bond, with when the host saw it.
type bondEvent struct {
	labwire.BondEvent
	host time.Time
}

// switchResult is one measured cable change.
type switchResult struct {
	What     string        // "failover" (cable pulled) or "failback" (cable restored)
	From, To string        // active slave before and after
	Guest    time.Duration // in the guest: carrier change of the slave -> active_slave change
	Host     time.Duration // on the host: set_link sent -> the change seen through the agent
	Probes   probeStats
}

func (r switchResult) String() string {
	return fmt.Sprintf("%s %s->%s: switch %s (guest: carrier change to active_slave change), %s (host: set_link to change seen); probes lost %d of %d (longest burst %d, ranges %v)",
		r.What, r.From, r.To, r.Guest.Round(time.Millisecond), r.Host.Round(time.Millisecond), r.Probes.Lost, r.Probes.Sent, r.Probes.MaxBurst, r.Probes.LostRanges)
}

// failoverRig is the bonded VM and its peer on one segment.
type failoverRig struct {
	bonded, peer *lab.VM
	echoDone     chan error
}

// newFailoverRig boots "fo-bond" (eth0 and eth1 on segment "fo", an
// active-backup bond over them, miimon 100, primary eth0, 10.99.1.1/24) and
// "fo-peer" (eth0 on "fo", 10.99.1.2/24), and starts a UDP echo server on
// the bond.
func newFailoverRig(tb testing.TB, ctx context.Context, closeAtCleanup bool) *failoverRig {
	tb.Helper()
	cfgs := []lab.Config{
		{Name: "fo-bond", NICs: []lab.NIC{{ID: "fo-bond-eth0", Segment: "fo"}, {ID: "fo-bond-eth1", Segment: "fo"}}},
		{Name: "fo-peer", NICs: []lab.NIC{{ID: "fo-peer-eth0", Segment: "fo"}}},
	}
	var vms []*lab.VM
	if closeAtCleanup {
		vms = lab.BootT(tb, ctx, cfgs...)
	} else {
		for _, c := range cfgs {
			vm, err := lab.Boot(ctx, c)
			if err != nil {
				tb.Fatal(err)
			}
			vms = append(vms, vm)
		}
	}
	r := &failoverRig{bonded: vms[0], peer: vms[1], echoDone: make(chan error, 1)}
	mustTB(tb, r.bonded, ctx, "labtool bond -name bond0 -mode active-backup -miimon 100 -primary eth0 -slaves eth0,eth1 -addr 10.99.1.1/24")
	mustTB(tb, r.peer, ctx, "ip addr add 10.99.1.2/24 dev eth0 && ip link set eth0 up")
	mustTB(tb, r.peer, ctx, "i=0; until ping -c 1 -W 1 10.99.1.1 >/dev/null; do i=$((i+1)); [ $i -lt 30 ] || exit 1; done")
	if a := strings.TrimSpace(mustTB(tb, r.bonded, ctx, "cat /sys/class/net/bond0/bonding/active_slave")); a != "eth0" {
		tb.Fatalf("active slave %q after setup, want eth0", a)
	}
	go func() {
		_, err := r.bonded.MustRun(ctx, "labtool echo -listen :7777 -duration 30m")
		r.echoDone <- err
	}()
	return r
}

// measure pulls (up=false) or plugs back (up=true) the cable of the
// bonded VM's NIC nicID while the peer sends a probe every 10 ms to the
// bond, and returns how long the bond took to change its active slave and
// how many probes were lost.
func (r *failoverRig) measure(ctx context.Context, nicID string, up bool, wantTo string) (switchResult, error) {
	res := switchResult{What: "failover"}
	if up {
		res.What = "failback"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// Watch the bond; wait for its first lines so that it runs before the pull.
	events, watchDone := r.watchBond(ctx, 60*time.Second)
	var initial []bondEvent
	for len(initial) == 0 || initial[len(initial)-1].Event != "active" {
		select {
		case e, ok := <-events:
			if !ok {
				return res, fmt.Errorf("watch-bond ended early: %v", <-watchDone)
			}
			initial = append(initial, e)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.From = initial[len(initial)-1].Active

	// The probe stream: 10 ms for 5 s; the cable changes 2 s in.
	probeOut, probeErr := r.probe(ctx, 5*time.Second)
	time.Sleep(2 * time.Second)
	sent := time.Now()
	if err := r.bonded.SetLink(nicID, up); err != nil {
		return res, err
	}
	var carrier *bondEvent
	var changed *bondEvent
	seen := initial
	for changed == nil {
		select {
		case e, ok := <-events:
			if !ok {
				return res, fmt.Errorf("watch-bond: no active-slave change: %v", <-watchDone)
			}
			seen = append(seen, e)
			switch {
			case e.Event == "carrier" && carrier == nil && e.Up == up && e.Dev == guestName(r.bonded, nicID):
				carrier = &e
			case e.Event == "active" && e.Active != "":
				changed = &e
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.To = changed.Active
	res.Host = changed.host.Sub(sent)
	if carrier != nil {
		res.Guest = time.Duration((changed.Ms - carrier.Ms) * float64(time.Millisecond))
	}
	if err := <-watchDone; err != nil {
		return res, err
	}
	out := <-probeOut
	if err := <-probeErr; err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &res.Probes); err != nil {
		return res, fmt.Errorf("probe output %q: %v", out, err)
	}
	if res.To != wantTo {
		return res, fmt.Errorf("%s: active slave went %s -> %s, want %s", res.What, res.From, res.To, wantTo)
	}
	if carrier == nil {
		return res, fmt.Errorf("%s: the guest saw no carrier change of %s: events %+v", res.What, nicID, seen)
	}
	return res, nil
}

// watchBond runs labtool watch-bond on the bonded VM until one change of
// bond0's active adapter or timeout, and streams its lines, each stamped
// with when the host saw it. done gets the command's result (a non-zero
// exit, which means no change came, is an error).
func (r *failoverRig) watchBond(ctx context.Context, timeout time.Duration) (<-chan bondEvent, <-chan error) {
	events := make(chan bondEvent, 64)
	done := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() {
		code, err := r.bonded.Exec(ctx, fmt.Sprintf("labtool watch-bond -bond bond0 -changes 1 -timeout %s -poll 2ms", timeout), lab.ExecOptions{Out: pw})
		if err == nil && code != 0 {
			err = fmt.Errorf("watch-bond exited %d", code)
		}
		pw.Close()
		done <- err
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var e bondEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				e.host = time.Now()
				events <- e
			}
		}
		close(events)
	}()
	return events, done
}

// probe sends a probe every 10 ms from the peer to the bond for d (and a
// second's grace); the channels get labtool's output and error.
func (r *failoverRig) probe(ctx context.Context, d time.Duration) (<-chan string, <-chan error) {
	out, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		o, err := r.peer.MustRun(ctx, fmt.Sprintf("labtool probe -to 10.99.1.1:7777 -interval 10ms -duration %s -grace 1s", d))
		out <- o
		errc <- err
	}()
	return out, errc
}

func guestName(vm *lab.VM, id string) string {
	for _, n := range vm.NICs() {
		if n.ID == id {
			return n.Guest
		}
	}
	return ""
}

func mustTB(tb testing.TB, vm *lab.VM, ctx context.Context, cmd string) string {
	tb.Helper()
	out, err := vm.MustRun(ctx, cmd)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestFailover pulls the active adapter's cable of an active-backup bond
// while a 10 ms probe stream runs, measures the switch time and the lost
// probes, then restores the cable: the primary (eth0) becomes active again.
func TestFailover(t *testing.T) {
	lab.NeedLab(t)
	ctx := testCtx(t, 8*time.Minute)
	r := newFailoverRig(t, ctx, true)

	fo, err := r.measure(ctx, "fo-bond-eth0", false, "eth1")
	t.Logf("%s", fo)
	if err != nil {
		t.Fatal(err)
	}
	checkTargets(t, fo)
	fb, err := r.measure(ctx, "fo-bond-eth0", true, "eth0")
	t.Logf("%s", fb)
	if err != nil {
		t.Fatal(err)
	}
	if fb.Probes.Received == 0 {
		t.Errorf("failback: no probe answered")
	}
	logSegment(t, "fo")
	fmt.Printf("FAILOVER RESULT: switch %s (target %s), probes lost %d (target <= %d); failback switch %s, probes lost %d\n",
		fo.Guest.Round(time.Millisecond), targetSwitch, fo.Probes.Lost, targetLost, fb.Guest.Round(time.Millisecond), fb.Probes.Lost)
}

func checkTargets(t *testing.T, r switchResult) {
	t.Helper()
	if r.Probes.Received == 0 || r.Probes.Lost >= r.Probes.Sent/2 {
		t.Errorf("%s: traffic did not come back: %d of %d probes lost", r.What, r.Probes.Lost, r.Probes.Sent)
	}
	met := r.Guest <= targetSwitch && r.Probes.Lost <= targetLost
	t.Logf("%s targets (switch <= %s, lost <= %d): %v", r.What, targetSwitch, targetLost, map[bool]string{true: "met", false: "MISSED"}[met])
	if !met && os.Getenv("GALLIUM_LAB_FAILOVER_STRICT") == "1" {
		t.Errorf("%s missed the targets", r.What)
	}
}

var (
	benchOnce sync.Once
	bench     *failoverRig
)

// benchRig boots the failover VMs once for every call of the benchmark
// function (go test calls it with b.N = 1 first); TestMain closes them.
func benchRig(b *testing.B) *failoverRig {
	benchOnce.Do(func() { bench = newFailoverRig(b, context.Background(), false) })
	if bench == nil {
		b.Fatal("failover VMs did not boot")
	}
	return bench
}

// BenchmarkFailover repeats the failover and failback b.N times on one pair
// of VMs and reports the mean switch time and lost probes
// (test/lab/bench-failover.sh runs it with -benchtime 3x).
func BenchmarkFailover(b *testing.B) {
	lab.NeedLab(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := benchRig(b)
	var sw, swHost, fb time.Duration
	var lost, lostFB, worstLost int
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fo, err := r.measure(ctx, "fo-bond-eth0", false, "eth1")
		if err != nil {
			b.Fatal(err)
		}
		back, err := r.measure(ctx, "fo-bond-eth0", true, "eth0")
		if err != nil {
			b.Fatal(err)
		}
		sw += fo.Guest
		swHost += fo.Host
		fb += back.Guest
		lost += fo.Probes.Lost
		lostFB += back.Probes.Lost
		worst = max(worst, fo.Guest)
		worstLost = max(worstLost, fo.Probes.Lost)
		fmt.Printf("failover %d: %s\nfailback %d: %s\n", i+1, fo, i+1, back)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64((sw/n).Microseconds())/1000, "switch-ms")
	b.ReportMetric(float64((swHost/n).Microseconds())/1000, "host-switch-ms")
	b.ReportMetric(float64(lost)/float64(b.N), "lost-probes")
	b.ReportMetric(float64((fb/n).Microseconds())/1000, "failback-ms")
	b.ReportMetric(float64(lostFB)/float64(b.N), "failback-lost")
	fmt.Printf("FAILOVER SUMMARY over %d runs: switch mean %s worst %s (target %s); probes lost mean %.1f worst %d (target <= %d); failback mean %s, lost mean %.1f\n",
		b.N, (sw / n).Round(time.Millisecond), worst.Round(time.Millisecond), targetSwitch, float64(lost)/float64(b.N), worstLost, targetLost, (fb / n).Round(time.Millisecond), float64(lostFB)/float64(b.N))
}

func logSegment(t testing.TB, name string) {
	l, err := lab.Default(context.Background())
	if err != nil {
		return
	}
	if s := l.Segment(name); s != nil {
		for _, st := range s.Stats() {
			t.Logf("segment %s port %-14s up=%v rx=%d tx=%d dropped=%d", name, st.Name, st.Up, st.Rx, st.Tx, st.Dropped)
		}
	}
}
