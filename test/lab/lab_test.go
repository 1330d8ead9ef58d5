package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, vm *lab.VM, ctx context.Context, cmd string) string {
	t.Helper()
	out, err := vm.MustRun(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAgent: commands run as root in the lab kernel, exit codes and output
// come back, a context deadline kills a command and the VM stays usable.
func TestAgent(t *testing.T) {
	lab.NeedLab(t)
	ctx := testCtx(t, 5*time.Minute)
	vm := lab.BootT(t, ctx, lab.Config{Name: "agent", NICs: []lab.NIC{{Segment: "agent-lan"}}})[0]

	a, err := lab.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(must(t, vm, ctx, "uname -r")); got != a.Kernel.Release {
		t.Errorf("uname -r = %q, want %q", got, a.Kernel.Release)
	}
	if got := strings.TrimSpace(must(t, vm, ctx, "id -u; echo $GALLIUM_LAB; hostname")); got != "0\n1\nagent" {
		t.Errorf("id/env/hostname = %q", got)
	}
	out, code, err := vm.Run(ctx, "echo out; echo err >&2; exit 3")
	if err != nil || code != 3 || out != "out\nerr\n" {
		t.Errorf("Run = %q, %d, %v; want out+err, 3, nil", out, code, err)
	}
	// Streaming: output arrives before the command ends.
	var buf syncWriter
	done := make(chan struct{})
	go func() {
		vm.Exec(ctx, "echo first; sleep 8; echo second", lab.ExecOptions{Out: &buf})
		close(done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), "first") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-done:
		t.Errorf("output was not streamed: the command had ended when %q arrived", buf.String())
	default:
	}
	<-done
	// A deadline kills the command.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	start := time.Now()
	_, _, err = vm.Run(sctx, "sleep 300")
	cancel()
	if err == nil || time.Since(start) > 30*time.Second {
		t.Errorf("Run with a 2s deadline: err=%v after %s", err, time.Since(start))
	}
	// Killed with its process group (a zombie may linger until reaped).
	waitFor(t, ctx, vm, `for s in /proc/[0-9]*/status; do grep -q '^Name:.sleep$' $s && ! grep -q '^State:.Z' $s && echo $s; done; true`, "")
	// Files in.
	data := bytes.Repeat([]byte("gallium"), 100000)
	if err := vm.Put(ctx, "/tmp/x/blob", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(must(t, vm, ctx, "wc -c </tmp/x/blob; stat -c %a /tmp/x/blob")); len(got) != 2 || got[0] != fmt.Sprint(len(data)) || got[1] != "600" {
		t.Errorf("put: size/mode = %v", got)
	}
	// Several commands at once.
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func(i int) {
			out, err := vm.MustRun(ctx, fmt.Sprintf("sleep 1; echo %d", i))
			if err == nil && strings.TrimSpace(out) != fmt.Sprint(i) {
				err = fmt.Errorf("concurrent run %d: %q", i, out)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestSegments: two VMs whose NICs share a segment exchange frames; NICs on
// different segments do not; pulling a cable (QMP set_link) drops the
// guest's carrier and the traffic, plugging it back restores both; a host
// port on a segment sees the guests' broadcasts and can inject frames.
func TestSegments(t *testing.T) {
	lab.NeedLab(t)
	ctx := testCtx(t, 5*time.Minute)
	vms := lab.BootT(t, ctx,
		lab.Config{Name: "seg-a", NICs: []lab.NIC{{ID: "a0", Segment: "shared"}, {ID: "a1", Segment: "island-a"}}},
		lab.Config{Name: "seg-b", NICs: []lab.NIC{{ID: "b0", Segment: "shared"}, {ID: "b1", Segment: "island-b"}}},
	)
	a, b := vms[0], vms[1]
	must(t, a, ctx, "ip addr add 10.99.0.1/24 dev eth0 && ip addr add 10.99.9.1/24 dev eth1 && ip link set eth0 up && ip link set eth1 up")
	must(t, b, ctx, "ip addr add 10.99.0.2/24 dev eth0 && ip addr add 10.99.9.2/24 dev eth1 && ip link set eth0 up && ip link set eth1 up")

	t.Run("ping", func(t *testing.T) {
		out := must(t, a, ctx, "ping -c 3 -W 5 10.99.0.2")
		t.Log(lastLine(out))
	})
	t.Run("isolation", func(t *testing.T) {
		if out, code, err := a.Run(ctx, "ping -c 2 -W 2 10.99.9.2"); err != nil || code == 0 {
			t.Errorf("ping across different segments: code %d, err %v: %s", code, err, out)
		}
	})
	t.Run("set_link", func(t *testing.T) {
		if err := b.SetLink("b0", false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, b, "cat /sys/class/net/eth0/carrier", "0")
		if out, code, _ := a.Run(ctx, "ping -c 2 -W 2 10.99.0.2"); code == 0 {
			t.Errorf("ping with the cable pulled: %s", out)
		}
		if err := b.SetLink("b0", true); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, b, "cat /sys/class/net/eth0/carrier", "1")
		must(t, a, ctx, "ping -c 2 -W 5 10.99.0.2")
		if err := b.SetLink("nope", false); err == nil {
			t.Error("SetLink of an unknown NIC: no error")
		}
	})
	t.Run("host-port", func(t *testing.T) {
		seg := lab.Default
		l, err := seg(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hp := l.Segment("shared").Attach("probe")
		defer hp.Close()
		// A broadcast from a guest reaches the host port.
		must(t, a, ctx, "arping -c 2 -I eth0 10.99.0.77 || true")
		if !gotFrame(hp.Frames(), 10*time.Second, func(f []byte) bool {
			return bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) && f[12] == 0x08 && f[13] == 0x06
		}) {
			t.Error("no ARP broadcast from seg-a on the host port")
		}
		// A frame from the host port reaches a guest.
		before := strings.TrimSpace(must(t, b, ctx, "cat /sys/class/net/eth0/statistics/rx_packets"))
		frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x42, 0x88, 0xb5}, make([]byte, 46)...)
		for i := 0; i < 5; i++ {
			hp.Send(frame)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			after := strings.TrimSpace(must(t, b, ctx, "cat /sys/class/net/eth0/statistics/rx_packets"))
			if after != before {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("seg-b eth0 rx_packets stayed %s after frames from the host port", before)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, st := range l.Segment("shared").Stats() {
			t.Logf("port %-10s up=%v rx=%d tx=%d dropped=%d", st.Name, st.Up, st.Rx, st.Tx, st.Dropped)
		}
	})
}

func gotFrame(ch <-chan []byte, d time.Duration, ok func([]byte) bool) bool {
	timeout := time.After(d)
	for {
		select {
		case f := <-ch:
			if ok(f) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

func waitFor(t *testing.T, ctx context.Context, vm *lab.VM, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err := vm.Run(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q = %q, want %q", vm.Name, cmd, strings.TrimSpace(out), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestLabResetAfterCablePull: a VM that reboots (Config.Reboots) comes back
// from a reset, also after one of its cables was pulled and plugged back.
// The cluster lab pulls a hypervisor's cable before rebooting it; with
// qboot a PVH kernel never booted again after that (see Boot's -bios).
func TestLabResetAfterCablePull(t *testing.T) {
	lab.NeedLab(t)
	ctx := testCtx(t, 5*time.Minute)
	vm := lab.BootT(t, ctx, lab.Config{Name: "rst", Reboots: true, NICs: []lab.NIC{{ID: "rst0", Segment: "rst-lan"}}})[0]
	reset := func(what string) {
		t.Helper()
		old, err := vm.BootID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := vm.Reset(); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := vm.AwaitReboot(rctx, old); err != nil {
			t.Fatalf("reset %s: %v", what, err)
		}
		t.Logf("reset %s: agent answered from the new boot after %s", what, time.Since(t0).Round(10*time.Millisecond))
	}
	reset("as booted")
	if err := vm.SetLink("rst0", false); err != nil {
		t.Fatal(err)
	}
	must(t, vm, ctx, "ip link set eth0 up")
	waitFor(t, ctx, vm, "cat /sys/class/net/eth0/carrier", "0")
	if err := vm.SetLink("rst0", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, vm, "cat /sys/class/net/eth0/carrier", "1")
	reset("after a cable pull")
	if got := strings.TrimSpace(must(t, vm, ctx, "ip link set eth0 up && sleep 1 && cat /sys/class/net/eth0/carrier")); got != "1" {
		t.Errorf("eth0 carrier after the reset = %q, want 1", got)
	}
}
