package tap

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/gallium/gallium-net/test/testenv"
)

// inTapNamespace runs f on a locked thread inside a fresh network namespace
// (so it touches no host link) and leaves the namespace afterwards.
func inTapNamespace(t *testing.T, f func(k Netlink)) {
	t.Helper()
	testenv.InNetns(t, func(h *netlink.Handle) { f(Netlink{Handle: h}) })
}

func addTapTestLinks(t *testing.T, k Netlink, filtering bool) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "gbr-tt", MTU: 1500}}
	if filtering {
		br.VlanFiltering = &filtering
	}
	if err := k.Handle.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	if err := k.Handle.LinkSetUp(br); err != nil {
		t.Fatalf("bridge up: %v", err)
	}
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "gtt-tap0"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
	if err := k.Handle.LinkAdd(tap); err != nil {
		t.Fatalf("add tap: %v", err)
	}
}

// TestTapNetlinkUntagged is tier 2: a real bridge (no VLAN filtering, as on
// the development kernel) and a real tap in a throwaway namespace.
func TestTapNetlinkUntagged(t *testing.T) {
	inTapNamespace(t, func(k Netlink) {
		addTapTestLinks(t, k, false)
		if err := NetworkReady(k, "gbr-tt", "gb-tt", 0); err != nil {
			t.Fatalf("NetworkReady: %v", err)
		}
		cfg := Config{Tap: "gtt-tap0", Bridge: "gbr-tt", MTU: 1400}
		res, err := Program(k, cfg)
		if err != nil {
			t.Fatalf("Program: %v", err)
		}
		if len(res.Ops) != 2 {
			t.Errorf("ops = %v, want enslave and mtu", res.Summary())
		}
		st, err := k.Link("gtt-tap0", false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Master != "gbr-tt" || st.MTU != 1400 {
			t.Errorf("tap after programming: master %q mtu %d", st.Master, st.MTU)
		}
		if res, err := Program(k, cfg); err != nil || res.Changed() {
			t.Errorf("second Program: %s, %v", res.Summary(), err)
		}
		if name, err := k.ByMAC(st.MAC); err != nil || name != "gtt-tap0" {
			t.Errorf("ByMAC(%s) = %q, %v", st.MAC, name, err)
		}
		if err := NetworkReady(k, "gbr-missing", "gb-missing", 0); err == nil {
			t.Error("NetworkReady on a missing bridge: no error")
		}
	})
}

// TestTapNetlinkTagged needs bridge VLAN filtering: the kernel lab runs it.
func TestTapNetlinkTagged(t *testing.T) {
	testenv.NeedKernel(t, "vlan_filtering")
	inTapNamespace(t, func(k Netlink) {
		addTapTestLinks(t, k, true)
		if _, err := Program(k, Config{Tap: "gtt-tap0", Bridge: "gbr-tt", VLAN: 42}); err != nil {
			t.Fatalf("Program: %v", err)
		}
		st, err := k.Link("gtt-tap0", true)
		if err != nil {
			t.Fatal(err)
		}
		if want := []VLAN{{VID: 42, PVID: true, Untagged: true}}; !slices.Equal(st.VLANs, want) {
			t.Errorf("tap VLANs = %v, want %v", st.VLANs, want)
		}
	})
}

// TestRedumpRetriesInterruptedDumps: an interrupted dump is read again, any
// other error is returned at once, and a dump that never settles names the
// interruption.
func TestRedumpRetriesInterruptedDumps(t *testing.T) {
	calls := 0
	got, err := Redump(func() (int, error) {
		calls++
		if calls < 3 {
			return -1, netlink.ErrDumpInterrupted
		}
		return 7, nil
	})
	if got != 7 || err != nil || calls != 3 {
		t.Errorf("Redump = %d, %v after %d calls; want 7, nil after 3", got, err, calls)
	}
	boom := errors.New("boom")
	calls = 0
	if _, err := Redump(func() (int, error) { calls++; return 0, boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Redump of a failing dump = %v after %d calls; want boom after 1", err, calls)
	}
	calls = 0
	if _, err := Redump(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted }); !errors.Is(err, netlink.ErrDumpInterrupted) || calls != dumpAttempts {
		t.Errorf("Redump of a never-settling dump = %v after %d calls; want ErrDumpInterrupted after %d", err, calls, dumpAttempts)
	}
}

// TestTapNetlinkDuringLinkChurn is tier 2: the hook's reads (find a tap by
// MAC, read a bridge with its VLANs) succeed while another writer creates
// and deletes links in the same namespace, as libvirt does while other
// domains start. Before Redump the kernel's interrupted dumps failed them.
func TestTapNetlinkDuringLinkChurn(t *testing.T) {
	inTapNamespace(t, func(k Netlink) {
		addTapTestLinks(t, k, false)
		st, err := k.Link("gtt-tap0", false)
		if err != nil {
			t.Fatal(err)
		}
		// A dump interrupted needs one that spans several netlink messages:
		// a hypervisor with dozens of VMs has hundreds of links.
		for i := range 300 {
			if err := k.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("gtt-b%d", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		ns, err := netns.Get() // InNetns's thread is in the test namespace
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		churn, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer churn.Close()
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				la := netlink.NewLinkAttrs()
				la.Name = fmt.Sprintf("gtt-c%d", n%8)
				v := &netlink.Veth{LinkAttrs: la, PeerName: fmt.Sprintf("gtt-p%d", n%8)}
				_ = churn.LinkDel(v)
				_ = churn.LinkAdd(v)
				n++
			}
		}()
		var interrupted, reads int
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); reads++ {
			if _, err := k.Handle.LinkList(); errors.Is(err, netlink.ErrDumpInterrupted) {
				interrupted++ // the raw dump, for the log: what Redump absorbs
			}
			if name, err := k.ByMAC(st.MAC); err != nil || name != "gtt-tap0" {
				t.Errorf("ByMAC during churn = %q, %v", name, err)
				break
			}
			if _, err := k.Link("gbr-tt", true); err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
				t.Errorf("Link with VLANs during churn: %v", err)
				break
			}
		}
		close(stop)
		t.Logf("%d reads while %d links were created and deleted; %d raw link dumps were interrupted", reads, <-done, interrupted)
	})
}
