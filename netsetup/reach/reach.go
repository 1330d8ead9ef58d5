// Package reach answers "does this host reach that IP now?" with ICMP
// echo, as ping does: the agent's connectivity check after a rolling
// apply (the other hypervisors' management IPs and the VIP, over the
// infrastructure network). It needs a raw ICMP socket (root, or
// CAP_NET_RAW) and nothing of netsetup or netlink.
package reach

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Pinger sends echo requests from one raw socket and matches the replies.
type Pinger struct {
	conn *icmp.PacketConn
	id   int

	mu      sync.Mutex
	seq     int
	waiting map[key]chan struct{}
	closed  chan struct{}
}

type key struct {
	addr netip.Addr
	seq  int
}

// Open opens the raw ICMP socket. Close it when done.
func Open() (*Pinger, error) {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("ICMP socket (needs root or CAP_NET_RAW): %w", err)
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p := &Pinger{conn: c, id: int(binary.BigEndian.Uint16(b[:])), waiting: map[key]chan struct{}{}, closed: make(chan struct{})}
	go p.read()
	return p, nil
}

// Close closes the socket; pending pings fail.
func (p *Pinger) Close() error {
	select {
	case <-p.closed:
		return nil
	default:
	}
	close(p.closed)
	return p.conn.Close()
}

func (p *Pinger) read() {
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-p.closed:
				return
			default:
			}
			continue
		}
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok || echo.ID != p.id {
			continue
		}
		ipAddr, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(ipAddr.IP)
		if !ok {
			continue
		}
		p.mu.Lock()
		if ch, ok := p.waiting[key{addr.Unmap(), echo.Seq}]; ok {
			close(ch)
			delete(p.waiting, key{addr.Unmap(), echo.Seq})
		}
		p.mu.Unlock()
	}
}

// Ping sends one echo request to addr and waits for its reply at most
// timeout. It returns the round trip, or an error when no reply came.
func (p *Pinger) Ping(ctx context.Context, addr netip.Addr, timeout time.Duration) (time.Duration, error) {
	if !addr.Is4() {
		return 0, fmt.Errorf("ping %s: IPv4 only", addr)
	}
	p.mu.Lock()
	p.seq = (p.seq + 1) & 0xffff
	k := key{addr, p.seq}
	ch := make(chan struct{})
	p.waiting[k] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, k)
		p.mu.Unlock()
	}()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: k.seq, Data: []byte("gallium-net reach")}}
	data, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := p.conn.WriteTo(data, &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return 0, fmt.Errorf("ping %s: %w", addr, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return time.Since(start), nil
	case <-t.C:
		return 0, fmt.Errorf("ping %s: %w after %v", addr, ErrNoReply, timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-p.closed:
		return 0, errors.New("pinger closed")
	}
}

// ErrNoReply: no echo reply in time.
var ErrNoReply = errors.New("no reply")

// Any pings addr up to tries times (each waiting timeout) and returns at
// the first reply: a single lost packet right after a bond change must not
// count as unreachable.
func (p *Pinger) Any(ctx context.Context, addr netip.Addr, tries int, timeout time.Duration) (time.Duration, error) {
	var err error
	for range max(tries, 1) {
		var rtt time.Duration
		if rtt, err = p.Ping(ctx, addr, timeout); err == nil {
			return rtt, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return 0, err
}
