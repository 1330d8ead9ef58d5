package netsetup

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/gallium/gallium-net/plugin"
)

// Why this exists: the kernel's bond announces a failover (num_grat_arp)
// only for addresses on the bond itself. gallium-net's addresses live on the
// bridge above the bond, and VM MACs behind it, so after a switch of the
// active adapter nothing tells the physical switch, which keeps sending to
// the old port until it relearns. A failover caused by a dead link is soon
// mended (the switch flushes that port); a failback to the primary is not
// (measured in the lab: every probe lost for a second). Announce does what
// the bond cannot: it sends, out of the bond (so out of the new active
// adapter), a gratuitous ARP for each IPv4 address of the bridge and a RARP
// announcement (as QEMU's announce-self) for every MAC the bridge learned on
// its other ports.

// Announce sends the announcements for bond (whose master is a bridge) and
// returns how many frames it sent.
func Announce(bond string) (int, error) {
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
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var out []net.HardwareAddr
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != bridge || a.Index == skip {
			continue
		}
		neighs, err := netlink.NeighList(a.Index, unix.AF_BRIDGE)
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

// AnnounceDelays are when, after a change of active adapter, Watch sends the
// announcements: at once, and again in case the new adapter's switch port
// was not forwarding yet (a port that just came up can take a second or
// more; the bond's updelay is what keeps traffic off it until then).
var AnnounceDelays = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

// Watch follows gallium-net's bonds in the calling thread's network
// namespace and calls Announce whenever one changes its active adapter,
// until ctx ends. report, when set, hears about every announcement. It
// returns once the subscription is in place.
func Watch(ctx context.Context, report func(bond, active string, frames int, err error)) error {
	ns, err := netns.Get()
	if err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		// This goroutine's thread joins the caller's namespace and never
		// leaves it (the runtime retires a thread still locked at exit).
		runtime.LockOSThread()
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ready <- err
			return
		}
		updates := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		defer close(done)
		if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: true}); err != nil {
			ready <- err
			return
		}
		ready <- nil
		active := map[string]int{}
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				b, isBond := u.Link.(*netlink.Bond)
				if !isBond || !plugin.Owned(b.Name) || b.ActiveSlave <= 0 {
					continue
				}
				prev, seen := active[b.Name]
				active[b.Name] = b.ActiveSlave
				if !seen || prev == b.ActiveSlave {
					continue
				}
				name := fmt.Sprint(b.ActiveSlave)
				if s, err := netlink.LinkByIndex(b.ActiveSlave); err == nil {
					name = s.Attrs().Name
				}
				start := time.Now()
				for _, d := range AnnounceDelays {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Until(start.Add(d))):
					}
					n, err := Announce(b.Name)
					if report != nil && ctx.Err() == nil {
						report(b.Name, name, n, err)
					}
				}
			}
		}
	}()
	return <-ready
}
