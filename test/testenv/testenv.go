// Package testenv tells tests which tier they are in and what the machine
// offers, so that a test that cannot run here skips with a reason, and a
// test run that promised a tier (make test sets GALLIUM_STRICT=1; the kernel
// lab sets GALLIUM_LAB=1) fails instead of skipping silently.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Strict reports whether missing prerequisites must fail tests (make test).
func Strict() bool { return os.Getenv("GALLIUM_STRICT") == "1" }

// InLab reports whether the test runs inside the kernel lab VM.
func InLab() bool { return os.Getenv("GALLIUM_LAB") == "1" }

// NeedRoot skips (or, in strict mode, fails) a test that needs root, for
// example to create network namespaces.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Strict() || InLab() {
		t.Fatal("this test needs root (network namespaces); make test runs as root")
	}
	t.Skip("needs root (network namespaces): run as root or via make test")
}

// NeedTool returns the path of program name, or skips a test that needs
// it (in strict mode, fails: make test installs every tool through
// test/setup/deps.sh). why says what installs it.
func NeedTool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if Strict() {
		t.Fatalf("%s is not installed (%s); make test needs it", name, why)
	}
	t.Skipf("%s not installed (%s)", name, why)
	return ""
}

// NeedKernel skips a test whose kernel feature (a module name such as
// "bonding", "8021q", or "vlan_filtering") this kernel lacks. Inside the
// kernel lab the feature must be there, so its absence fails the test; on
// the host it skips, because the lab tier runs the same test.
func NeedKernel(t testing.TB, feature string) {
	t.Helper()
	if HasKernel(feature) {
		return
	}
	if InLab() {
		t.Fatalf("kernel lab: kernel feature %s missing", feature)
	}
	t.Skipf("kernel has no %s; the kernel lab tier (make test-lab) runs this test", feature)
}

// HasKernel reports whether the running kernel offers feature.
func HasKernel(feature string) bool {
	switch feature {
	case "bonding":
		if _, err := os.Stat("/sys/class/net/bonding_masters"); err == nil {
			return true
		}
	case "8021q":
		if _, err := os.Stat("/proc/net/vlan"); err == nil {
			return true
		}
	case "vlan_filtering":
		return probeVlanFiltering()
	}
	// A module that is loaded (or built in with parameters) counts.
	if _, err := os.Stat("/sys/module/" + feature); err == nil {
		return true
	}
	// A module that loads now counts too.
	if p, err := exec.LookPath("modprobe"); err == nil {
		return exec.Command(p, "-q", feature).Run() == nil
	}
	return false
}

var (
	vlanFilteringOnce sync.Once
	vlanFilteringOK   bool
)

// probeVlanFiltering creates a bridge with vlan_filtering on in a throwaway
// network namespace and reads it back: true only if the kernel really
// filters (a kernel without CONFIG_BRIDGE_VLAN_FILTERING refuses or ignores
// the attribute). Needs root (CAP_NET_ADMIN); without it, false. The
// answer is cached for the process.
func probeVlanFiltering() bool {
	vlanFilteringOnce.Do(func() {
		done := make(chan bool, 1)
		// Its own goroutine: if the thread cannot return to the original
		// namespace, it stays locked and the runtime retires it.
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				done <- false
				return
			}
			defer orig.Close()
			ns, err := netns.New() // enters the new namespace
			if err != nil {
				runtime.UnlockOSThread()
				done <- false
				return
			}
			ok := func() bool {
				defer ns.Close()
				h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
				if err != nil {
					return false
				}
				defer h.Close()
				on := true
				br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "gprobe0"}, VlanFiltering: &on}
				if err := h.LinkAdd(br); err != nil {
					return false
				}
				l, err := h.LinkByName("gprobe0")
				if err != nil {
					return false
				}
				b, isBridge := l.(*netlink.Bridge)
				return isBridge && b.VlanFiltering != nil && *b.VlanFiltering
			}()
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			done <- ok
		}()
		vlanFilteringOK = <-done
	})
	return vlanFilteringOK
}

// EnterNetns moves the calling test's goroutine, locked to its OS thread,
// into a fresh network namespace (with lo up) for the rest of the test; the
// cleanup moves it back, and the namespace disappears with its last handle.
// It needs root (NeedRoot).
func EnterNetns(t testing.TB) {
	t.Helper()
	NeedRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Never hand a thread in the wrong namespace back to Go.
			panic("restore netns: " + err.Error())
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
}

// VethPair creates the veth pair a/b in the calling thread's network
// namespace and sets both ends up (test setup, not through the code under
// test).
func VethPair(t testing.TB, a, b string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = a
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: b}); err != nil {
		t.Fatalf("veth %s/%s: %v", a, b, err)
	}
	for _, n := range []string{a, b} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// RawSocket opens an AF_PACKET socket on dev for all frames, with a receive
// timeout of 50 ms; the test's cleanup closes it.
func RawSocket(t testing.TB, dev string) int {
	t.Helper()
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 50000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// InNetns runs fn on its own goroutine and thread inside a fresh network
// namespace, with a netlink handle of that namespace, and waits for it. The
// thread is never unlocked, so it dies with the goroutine instead of going
// back to Go's pool while still in the test namespace. fn reports failures
// with t.Errorf (not t.Fatal: it is not the test's goroutine).
func InNetns(t testing.TB, fn func(h *netlink.Handle)) {
	t.Helper()
	NeedRoot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Errorf("get netns: %v", err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		defer netns.Set(orig)
		h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
		if err != nil {
			t.Errorf("netlink handle: %v", err)
			return
		}
		defer h.Close()
		fn(h)
	}()
	<-done
}
