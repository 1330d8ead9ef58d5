// Package announce tells the physical switch where this host's addresses
// and its VMs' MACs are after a bond failover or failback: Send announces
// one bond's bridge addresses (gratuitous ARP) and the VM MACs behind it
// (RARP), and Watch (`gallium-net host watch`) follows gallium-net's bonds
// and sends the announcements whenever one changes its active adapter.
//
// It is its own package, not part of netsetup/probe, because it is another
// job with another caller and other needs: it runs for good as a service
// and follows the kernel through netlink, where the probes of
// verify-topology run once and need only packet sockets. It imports
// nothing of netsetup (only plugin, for the names gallium-net owns), and
// netsetup does not import it.
package announce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/model"
)

// Why this exists: the kernel's bond announces a failover (num_grat_arp)
// only for addresses on the bond itself. gallium-net's addresses live on the
// bridge above the bond, and VM MACs behind it, so after a switch of the
// active adapter nothing tells the physical switch, which keeps sending to
// the old port until it relearns. A failover caused by a dead link is soon
// mended (the switch flushes that port); a failback to the primary is not
// (measured in the lab: every probe lost for a second). Send does what
// the bond cannot: it sends, out of the bond (so out of the new active
// adapter), a gratuitous ARP for each IPv4 address of the bridge and a RARP
// announcement (as QEMU's announce-self) for every MAC the bridge learned on
// its other ports.

// Send sends the announcements for bond (whose master is a bridge) and
// returns how many frames it sent.
func Send(bond string) (int, error) {
	b, err := netlink.LinkByName(bond)
	if err != nil {
		return 0, fmt.Errorf("announce %s: %w", bond, err)
	}
	var frames [][]byte
	if br, err := netlink.LinkByIndex(b.Attrs().MasterIndex); err == nil && b.Attrs().MasterIndex != 0 {
		mac := br.Attrs().HardwareAddr
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		for _, a := range addrs {
			frames = append(frames, garpFrame(mac, a.IP.To4()))
		}
		for _, m := range learnedMACs(br.Attrs().Index, b.Attrs().Index) {
			frames = append(frames, rarpFrame(m))
		}
	}
	if len(frames) == 0 {
		return 0, nil
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("announce %s: packet socket: %w", bond, err)
	}
	defer unix.Close(fd)
	sent := 0
	for _, f := range frames {
		to := &unix.SockaddrLinklayer{Ifindex: b.Attrs().Index, Protocol: htons(binary.BigEndian.Uint16(f[12:14])), Halen: 6}
		copy(to.Addr[:], f[:6])
		if err := unix.Sendto(fd, f, 0, to); err != nil {
			return sent, fmt.Errorf("announce %s: %w", bond, err)
		}
		sent++
	}
	return sent, nil
}

// learnedMACs returns the MACs the bridge learned on its ports other than
// skip (the bond): the VMs behind it.
func learnedMACs(bridge, skip int) []net.HardwareAddr {
	links, err := tap.Redump(netlink.LinkList)
	if err != nil {
		return nil
	}
	var out []net.HardwareAddr
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != bridge || a.Index == skip {
			continue
		}
		neighs, err := tap.Redump(func() ([]netlink.Neigh, error) { return netlink.NeighList(a.Index, unix.AF_BRIDGE) })
		if err != nil {
			continue
		}
		for _, n := range neighs {
			// Learned entries only: not the port's own (permanent) MAC.
			if n.State&unix.NUD_PERMANENT != 0 || n.HardwareAddr == nil || n.HardwareAddr[0]&1 != 0 {
				continue
			}
			out = append(out, n.HardwareAddr)
		}
	}
	return out
}

func ethHeader(src net.HardwareAddr, etherType uint16) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	f = append(f, src...)
	return binary.BigEndian.AppendUint16(f, etherType)
}

func pad(f []byte) []byte {
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garpFrame is a gratuitous ARP request for ip from mac.
func garpFrame(mac net.HardwareAddr, ip net.IP) []byte {
	f := ethHeader(mac, unix.ETH_P_ARP)
	f = append(f, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	f = append(f, mac...)
	f = append(f, ip...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, ip...)
	return pad(f)
}

// rarpFrame is a RARP "reverse request" for mac, the announcement QEMU
// sends after a migration.
func rarpFrame(mac net.HardwareAddr) []byte {
	f := ethHeader(mac, unix.ETH_P_RARP)
	f = append(f, 0, 1, 0x08, 0, 6, 4, 0, 3)
	f = append(f, mac...)
	f = append(f, 0, 0, 0, 0)
	f = append(f, mac...)
	f = append(f, 0, 0, 0, 0)
	return pad(f)
}

// Delays are when, after a change of active adapter, Watch sends the
// announcements: at once, and again in case the new adapter's switch port
// was not forwarding yet (a port that just came up can take a second or
// more; the bond's updelay is what keeps traffic off it until then).
var Delays = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

// linkSubscribe and announce are what Watch calls into the kernel with;
// tests replace them to force a lost subscription.
var (
	linkSubscribe = netlink.LinkSubscribeWithOptions
	announce      = Send
)

// A subscription lost more than watchMaxLosses times within
// watchLossWindow is not a burst but a fault that re-subscribing does not
// mend: Watch then gives up, and the service exits non-zero so that systemd
// restarts it (Restart=on-failure).
const (
	watchMaxLosses  = 5
	watchLossWindow = time.Minute
)

// Watch follows gallium-net's bonds in the calling thread's network
// namespace and calls Send whenever one changes its active adapter,
// until ctx ends. report, when set, hears about every announcement;
// resubscribed, when set, hears why the subscription was lost each time
// Watch had to subscribe again. It returns once the subscription is in
// place; the channel it returns then yields nil when ctx ends, or the error
// that stopped the watch for good.
//
// The netlink library closes the update channel when a receive fails (ENOBUFS
// when a burst of link events overflows the socket): Watch then subscribes
// again, listing every link, so a bond whose active adapter changed while no
// one listened is announced too.
func Watch(ctx context.Context, report func(bond, active string, frames int, err error), resubscribed func(cause error)) (<-chan error, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("watch bonds: network namespace: %w", err)
	}
	ready := make(chan error, 1)
	stopped := make(chan error, 1)
	go func() {
		// This goroutine's thread joins the caller's namespace and never
		// leaves it (the runtime retires a thread still locked at exit).
		runtime.LockOSThread()
		defer ns.Close()
		// setns needs CAP_SYS_ADMIN even into the namespace the thread
		// is already in; skip it then.
		if cur, err := netns.Get(); err != nil || !cur.Equal(ns) {
			if err == nil {
				cur.Close()
			}
			if err := netns.Set(ns); err != nil {
				ready <- fmt.Errorf("watch bonds: enter network namespace: %w", err)
				return
			}
		} else {
			cur.Close()
		}
		w := &bondWatch{ctx: ctx, report: report, active: map[string]int{}}
		sub, err := subscribeLinks()
		if err != nil {
			ready <- fmt.Errorf("watch bonds: subscribe to link updates: %w", err)
			return
		}
		ready <- nil
		stopped <- w.run(sub, resubscribed)
		close(stopped)
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return stopped, nil
}

// linkSubscription is one netlink subscription to link updates.
type linkSubscription struct {
	updates chan netlink.LinkUpdate
	done    chan struct{}
	mu      sync.Mutex
	lastErr error // the library's last complaint: why it closed updates
}

func subscribeLinks() (*linkSubscription, error) {
	s := &linkSubscription{updates: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	err := linkSubscribe(s.updates, s.done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
		},
	})
	if err != nil {
		close(s.done)
		return nil, err
	}
	return s, nil
}

// cause says why the library closed the update channel.
func (s *linkSubscription) cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr == nil {
		return errors.New("link update channel closed without an error")
	}
	return s.lastErr
}

// bondWatch is Watch's state: each owned bond's active adapter (ifindex) as
// last seen, kept across subscriptions.
type bondWatch struct {
	ctx    context.Context
	report func(bond, active string, frames int, err error)
	active map[string]int
}

// run follows sub and every subscription after it until ctx ends (nil) or
// re-subscribing fails or is needed too often (the error).
func (w *bondWatch) run(sub *linkSubscription, resubscribed func(cause error)) error {
	var losses []time.Time
	for {
		lost := w.follow(sub.updates)
		close(sub.done)
		if !lost {
			return nil
		}
		cause := sub.cause()
		now := time.Now()
		losses = append(losses, now)
		for len(losses) > 0 && now.Sub(losses[0]) > watchLossWindow {
			losses = losses[1:]
		}
		if len(losses) > watchMaxLosses {
			return fmt.Errorf("link update subscription lost %d times within %s, last: %w", len(losses), watchLossWindow, cause)
		}
		var err error
		if sub, err = subscribeLinks(); err != nil {
			return fmt.Errorf("subscribe to link updates again after %v: %w", cause, err)
		}
		if resubscribed != nil {
			resubscribed(cause)
		}
	}
}

// follow handles updates until ctx ends (false) or the library closes the
// channel (true: the subscription is lost).
func (w *bondWatch) follow(updates <-chan netlink.LinkUpdate) (lost bool) {
	for {
		select {
		case <-w.ctx.Done():
			return false
		case u, ok := <-updates:
			if !ok {
				return w.ctx.Err() == nil
			}
			b, isBond := u.Link.(*netlink.Bond)
			if !isBond || !model.Owned(b.Name) || b.ActiveSlave <= 0 {
				continue
			}
			prev, seen := w.active[b.Name]
			w.active[b.Name] = b.ActiveSlave
			if !seen || prev == b.ActiveSlave {
				continue
			}
			w.announce(b)
		}
	}
}

// announce sends b's announcements at each of Delays.
func (w *bondWatch) announce(b *netlink.Bond) {
	name := fmt.Sprint(b.ActiveSlave)
	if s, err := netlink.LinkByIndex(b.ActiveSlave); err == nil {
		name = s.Attrs().Name
	}
	start := time.Now()
	for _, d := range Delays {
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(time.Until(start.Add(d))):
		}
		n, err := announce(b.Name)
		if w.report != nil && w.ctx.Err() == nil {
			w.report(b.Name, name, n, err)
		}
	}
}
