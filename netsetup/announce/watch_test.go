package announce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gallium/gallium-net/plugin/model"
)

// subscription is one scripted netlink subscription: it gets the channel,
// done and the error callback as the library's goroutine does, and must
// close ch when it ends (as the library does).
type subscription func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, cberr func(error))

// fakeSubscribe stands in for netlink.LinkSubscribeWithOptions: call i runs
// subs[i] (nil: the subscription itself fails); it records whether every
// call listed the existing links.
type fakeSubscribe struct {
	mu          sync.Mutex
	subs        []subscription
	calls       int
	notListing  int
	failWith    error
	alwaysBurst bool
}

func (f *fakeSubscribe) subscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, o netlink.LinkSubscribeOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.calls
	f.calls++
	if !o.ListExisting {
		f.notListing++
	}
	var s subscription
	switch {
	case f.alwaysBurst:
		s = lostAfter()
	case i < len(f.subs) && f.subs[i] != nil:
		s = f.subs[i]
	default:
		return f.failWith
	}
	go s(ch, done, o.ErrorCallback)
	return nil
}

// bondUpdate: the bond with adapter ifindex base+active active. The
// ifindexes are far beyond any real link's, so Watch names the adapter by
// its index.
func bondUpdate(active int) netlink.LinkUpdate {
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: model.BondPrefix + "vm"})
	b.ActiveSlave = ifBase + active
	return netlink.LinkUpdate{Link: b}
}

// lostAfter sends updates, then fails the way the library does when the
// socket overflowed: the error callback hears ENOBUFS and the channel closes.
func lostAfter(updates ...netlink.LinkUpdate) subscription {
	return func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, cberr func(error)) {
		defer close(ch)
		for _, u := range updates {
			ch <- u
		}
		cberr(fmt.Errorf("Receive failed: %v", unix.ENOBUFS))
	}
}

// until sends updates, then lasts until Watch lets go of it.
func until(updates ...netlink.LinkUpdate) subscription {
	return func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, cberr func(error)) {
		defer close(ch)
		for _, u := range updates {
			select {
			case ch <- u:
			case <-done:
				return
			}
		}
		<-done
	}
}

const ifBase = 1 << 30

type announcement struct {
	bond, active string
}

// watchWith runs Watch against f with announcements recorded, not sent.
func watchWith(t *testing.T, f *fakeSubscribe) (context.CancelFunc, <-chan error, <-chan announcement, <-chan error) {
	t.Helper()
	oldSub, oldAnnounce, oldDelays := linkSubscribe, announce, Delays
	linkSubscribe, announce, Delays = f.subscribe, func(string) (int, error) { return 2, nil }, []time.Duration{0}
	t.Cleanup(func() { linkSubscribe, announce, Delays = oldSub, oldAnnounce, oldDelays })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	announced := make(chan announcement, 16)
	resubscribed := make(chan error, 16)
	stopped, err := Watch(ctx, func(bond, active string, n int, err error) {
		announced <- announcement{bond, active}
	}, func(cause error) { resubscribed <- cause })
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return cancel, stopped, announced, resubscribed
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
	}
	var zero T
	return zero
}

// The bug of issue 12: a receive error (ENOBUFS under a burst of link
// events) closed the library's channel and Watch returned without a word,
// deaf from then on. It must subscribe again, re-read every link and
// announce a failover that happened while it was not listening.
func TestWatchResubscribesAfterReceiveError(t *testing.T) {
	f := &fakeSubscribe{subs: []subscription{
		lostAfter(bondUpdate(1), bondUpdate(2)),
		until(bondUpdate(3)), // the listing after the loss: a failover it missed
	}}
	cancel, stopped, announced, resubscribed := watchWith(t, f)
	bond := model.BondPrefix + "vm"
	if a := receive(t, announced, "announcement of the failover 1->2"); a != (announcement{bond, fmt.Sprint(ifBase + 2)}) {
		t.Errorf("first announcement %+v, want %s active 2", a, bond)
	}
	if cause := receive(t, resubscribed, "re-subscription"); !strings.Contains(fmt.Sprint(cause), unix.ENOBUFS.Error()) {
		t.Errorf("re-subscribed because of %v, want the receive error (ENOBUFS)", cause)
	}
	if a := receive(t, announced, "announcement of the failover missed while deaf"); a != (announcement{bond, fmt.Sprint(ifBase + 3)}) {
		t.Errorf("announcement after re-subscribing %+v, want %s active 3", a, bond)
	}
	cancel()
	if err := receive(t, stopped, "end of the watch"); err != nil {
		t.Errorf("watch ended with %v after its context, want nil", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls != 2 || f.notListing != 0 {
		t.Errorf("%d subscriptions, %d of them without listing the existing links; want 2, each listing", f.calls, f.notListing)
	}
}

// When subscribing again fails, the watch stops with an error (host watch
// exits non-zero and systemd restarts it) instead of running deaf.
func TestWatchStopsWhenResubscribeFails(t *testing.T) {
	f := &fakeSubscribe{subs: []subscription{lostAfter()}, failWith: unix.EMFILE}
	_, stopped, _, _ := watchWith(t, f)
	err := receive(t, stopped, "end of the watch")
	if err == nil || !strings.Contains(err.Error(), unix.ENOBUFS.Error()) || !strings.Contains(err.Error(), unix.EMFILE.Error()) {
		t.Errorf("watch ended with %v, want the receive error and why subscribing again failed", err)
	}
}

// A subscription that is lost again at once is a fault, not a burst: after
// watchMaxLosses re-subscriptions within the window the watch stops.
func TestWatchStopsWhenLostRepeatedly(t *testing.T) {
	f := &fakeSubscribe{alwaysBurst: true}
	_, stopped, _, resubscribed := watchWith(t, f)
	err := receive(t, stopped, "end of the watch")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("lost %d times", watchMaxLosses+1)) {
		t.Errorf("watch ended with %v, want it to give up after %d losses", err, watchMaxLosses+1)
	}
	if n := len(resubscribed); n != watchMaxLosses {
		t.Errorf("re-subscribed %d times, want %d", n, watchMaxLosses)
	}
}
