//go:build cluster

// The lab hypervisor test: boots one lab hypervisor (Debian 12 root disk,
// systemd, libvirt-daemon-system, QEMU) under TCG, installs the project's .deb in it and starts a
// libvirt domain inside it (nested TCG): for working on the image. make
// test leaves it out (TestCluster's boot and install steps check the same
// of each of its hypervisors). Run it with
//
//	test/cluster/run.sh -run TestLabHypervisor
package cluster

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

var (
	labsMu sync.Mutex
	labs   []*lab.Lab
	// closers run on INT/TERM too (a whole-cluster scenario's Close).
	closers []func()
)

func closeOnSignal(f func()) {
	labsMu.Lock()
	closers = append(closers, f)
	labsMu.Unlock()
}

// newLab is a lab of its own for one test, closed at its end or on INT/TERM.
func newLab(ctx context.Context, t *testing.T) *lab.Lab {
	t.Helper()
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	labsMu.Lock()
	labs = append(labs, l)
	labsMu.Unlock()
	t.Cleanup(l.Close)
	return l
}

// begin starts every test here: it needs root (debootstrap, chroot,
// QEMU), gets 25 minutes, and the lab logs through t.
func begin(t *testing.T) context.Context {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the lab hypervisor tests need root (debootstrap, chroot, QEMU): run them as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	lab.SetLogf(t.Logf)
	return ctx
}

// TestMain closes every lab VM on INT/TERM (QEMU also dies with the test
// process through Pdeathsig; this removes the labs' folders too).
func TestMain(m *testing.M) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		labsMu.Lock()
		for _, l := range labs {
			l.Close()
		}
		for _, f := range closers {
			f()
		}
		labsMu.Unlock()
		os.Exit(130)
	}()
	os.Exit(m.Run())
}

// nestedDomain is a diskless libvirt domain with one NIC on the guest
// bridge br-test: enough for QEMU to run (SeaBIOS finds nothing to boot and
// waits) and for libvirt to create a tap and enslave it. No option ROM:
// SeaBIOS would PXE-boot through iPXE, which only burns nested-TCG CPU.
const nestedDomain = `<domain type='qemu'>
  <name>nested1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <interface type='bridge'>
      <source bridge='br-test'/>
      <mac address='52:54:00:00:07:01'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
  </devices>
</domain>
`

func TestLabHypervisor(t *testing.T) {
	ctx := begin(t)

	img, _, deb := imageAndDeb(ctx, t, Bookworm)
	t.Logf("image %s: %d MB apparent, %d MB on disk; rootfs.sh took %s; kernel %s",
		filepath.Base(img.RootFS), img.Size>>20, img.OnDisk>>20, img.BuildTime.Round(100*time.Millisecond), img.Release)
	wantVersion := hostVersion(t, deb)

	l := newLab(ctx, t)
	hv, err := Boot(ctx, l, img, Config{
		Name: "hv1",
		// Issue 7's wiring: two NICs on the infrastructure segment, two on
		// the VM segment.
		NICs:   issue7NICs("hv1"),
		Shares: []lab.Share{{Host: filepath.Dir(deb), Guest: "/dist", ReadOnly: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hv.Close() })
	t.Logf("hv1: agent answered after %s, libvirtd ready after %s; slowest units: %s", hv.BootTime.Round(100*time.Millisecond), hv.Ready.Round(100*time.Millisecond), slowestUnits(ctx, hv))

	run := func(t *testing.T, cmd string) string {
		t.Helper()
		out, err := hv.MustRun(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("userland", func(t *testing.T) {
		// The same checks TestCluster's boot step makes of each hypervisor.
		if err := checkUserland(ctx, hv, img.Release, "12."); err != nil {
			t.Error(err)
		}
		if out := run(t, "ip -br link"); !strings.Contains(out, "eno1") || !strings.Contains(out, "eno4") {
			t.Errorf("NICs eno1..eno4 missing:\n%s", out)
		}
	})

	t.Run("deb", func(t *testing.T) {
		// A tracing hook next to the package's: libvirtd (already running)
		// only sees the hook directory after the package's postinst sends
		// it SIGHUP, so the trace later proves both the reload and that
		// libvirt runs qemu.d hooks here.
		if err := hv.Put(ctx, "/etc/libvirt/hooks/qemu.d/zz-trace", []byte(traceHook), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := hv.InstallDeb(ctx, "/dist/"+filepath.Base(deb))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dpkg -i: %s", strings.TrimSpace(out))
		// The same checks TestCluster's install step makes: the binary
		// of the .deb, both hook links, libvirtd after the reload.
		if err := checkInstalled(ctx, hv, wantVersion); err != nil {
			t.Error(err)
		}
	})

	t.Run("nested-domain", func(t *testing.T) {
		run(t, "ip link add br-test type bridge && ip link set br-test up")
		if err := hv.Put(ctx, "/root/nested1.xml", []byte(nestedDomain), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := hv.Virsh(ctx, "define /root/nested1.xml"); err != nil {
			t.Fatal(err)
		} else if !strings.Contains(out, "nested1") {
			t.Fatalf("virsh define: %s", out)
		}
		start := time.Now()
		if _, err := hv.Virsh(ctx, "start nested1"); err != nil {
			logs, _, _ := hv.Run(ctx, "journalctl -b -u libvirtd -n 20 --no-pager; tail -20 /var/log/libvirt/qemu/nested1.log")
			t.Fatalf("%v\n%s", err, logs)
		}
		took := time.Since(start)
		t.Logf("virsh start (nested TCG) took %s", took.Round(10*time.Millisecond))
		defer func() {
			hv.Virsh(ctx, "destroy nested1")
			hv.Virsh(ctx, "undefine nested1")
		}()
		if out, _ := hv.Virsh(ctx, "domstate nested1"); strings.TrimSpace(out) != "running" {
			t.Errorf("domstate nested1 = %q, want running", out)
		}
		tap := strings.TrimSpace(run(t, `virsh -c qemu:///system domiflist nested1 | awk '$5 == "52:54:00:00:07:01" {print $1}'`))
		if tap == "" {
			t.Fatalf("domiflist nested1 shows no interface with MAC 52:54:00:00:07:01:\n%s", run(t, "virsh -c qemu:///system domiflist nested1"))
		}
		if out := run(t, "ip -o link show master br-test"); !strings.Contains(out, tap+":") {
			t.Errorf("tap %s is not enslaved to br-test:\n%s", tap, out)
		}
		if out := run(t, "pgrep -af qemu-system-x86_64"); !strings.Contains(out, "nested1") {
			t.Errorf("no QEMU process for nested1:\n%s", out)
		}
		if _, err := hv.Virsh(ctx, "destroy nested1"); err != nil {
			t.Errorf("virsh destroy: %v", err)
		}
		if out, _ := hv.Virsh(ctx, "domstate nested1"); strings.TrimSpace(out) != "shut off" {
			t.Errorf("after destroy, domstate nested1 = %q, want shut off", out)
		}
		trace := run(t, "cat /run/hook-trace.log")
		for _, op := range []string{"prepare begin", "start begin", "started begin", "stopped end", "release end"} {
			if !strings.Contains(trace, "nested1 "+op) {
				t.Errorf("libvirt did not run the qemu.d hooks for %q:\n%s", op, trace)
			}
		}
	})
}

// imageAndDeb is what a single-hypervisor test boots and installs: the
// lab hypervisor image (built or cached), the repository root and this
// tree's .deb (make packages).
func imageAndDeb(ctx context.Context, t *testing.T, suite Suite) (img *Image, root, deb string) {
	t.Helper()
	img, err := BuildImage(ctx, suite)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = lab.RepoRoot(); err != nil {
		t.Fatal(err)
	}
	if deb, err = LatestDeb(root); err != nil {
		t.Fatal(err)
	}
	return img, root, deb
}

// issue7NICs is issue 7's wiring of a lab hypervisor: eno1 and eno2 on the
// infrastructure segment, eno3 and eno4 on the VM segment.
func issue7NICs(name string) []lab.NIC {
	return []lab.NIC{
		{ID: name + "-eno1", Segment: "infra", Guest: "eno1"},
		{ID: name + "-eno2", Segment: "infra", Guest: "eno2"},
		{ID: name + "-eno3", Segment: "vms", Guest: "eno3"},
		{ID: name + "-eno4", Segment: "vms", Guest: "eno4"},
	}
}

// traceHook records each qemu.d hook call (libvirt passes NAME OP SUBOP
// EXTRA) in /run/hook-trace.log.
const traceHook = `#!/bin/sh
echo "$1 $2 $3" >>/run/hook-trace.log
`

// hostVersion is what the package's gallium-net prints for --version when
// run on the host: the guest must print the same.
func hostVersion(t *testing.T, deb string) string {
	t.Helper()
	v, err := debVersion(deb)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestThreeHypervisors boots issue 7's three lab hypervisors at once, each
// with two NICs on the shared infrastructure segment and two on the VM
// segment, and checks that libvirtd answers on each and that they reach
// each other over the infrastructure segment (10.99.7.0/24 exists only on
// the lab's virtual switch). It reports the boot figures under load.
func TestThreeHypervisors(t *testing.T) {
	ctx := begin(t)
	img, err := BuildImage(ctx, Bookworm)
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(ctx, t)

	names := []string{"hv1", "hv2", "hv3"}
	hvs := make([]*Hypervisor, len(names))
	errs := make([]error, len(names))
	done := make(chan int)
	start := time.Now()
	for i, n := range names {
		go func() {
			hvs[i], errs[i] = Boot(ctx, l, img, Config{Name: n, NICs: issue7NICs(n)})
			done <- i
		}()
	}
	for range names {
		<-done
	}
	all := time.Since(start)
	for i, n := range names {
		if errs[i] != nil {
			t.Fatalf("%s: %v", n, errs[i])
		}
		hv := hvs[i]
		t.Cleanup(func() { hv.Close() })
		t.Logf("%s: agent after %s, libvirtd ready after %s", n, hv.BootTime.Round(100*time.Millisecond), hv.Ready.Round(100*time.Millisecond))
	}
	t.Logf("all three ready after %s", all.Round(100*time.Millisecond))

	for i, hv := range hvs {
		if _, err := hv.MustRun(ctx, fmt.Sprintf("ip addr add 10.99.7.%d/24 dev eno1 && ip link set eno1 up && ip link set eno2 up", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for i, hv := range hvs {
		for j := range hvs {
			if i == j {
				continue
			}
			// A few tries: the first ARP on a freshly up link can be lost.
			cmd := fmt.Sprintf("ping -c 1 -W 2 10.99.7.%[1]d || ping -c 3 -W 2 10.99.7.%[1]d", j+1)
			if out, err := hv.MustRun(ctx, cmd); err != nil {
				t.Errorf("%s cannot reach %s over the infrastructure segment: %v\n%s", hv.Name, names[j], err, out)
			}
		}
		if out, err := hv.Virsh(ctx, "list --all"); err != nil {
			t.Errorf("%s: %v", hv.Name, err)
		} else if !strings.Contains(out, "Name") {
			t.Errorf("%s: virsh list: %s", hv.Name, out)
		}
	}
}
