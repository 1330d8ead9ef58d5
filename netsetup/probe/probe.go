// Package probe checks that every adapter of a group reaches every other
// adapter of it at layer 2 (`gallium-net host verify-topology`): it sends
// raw probe frames out of each adapter, bond slaves included, and reports
// each ordered pair. It needs packet sockets only: it imports nothing of
// netsetup, nor netlink, and netsetup does not import it (the CLI hands it
// the groups of netsetup's desired state).
package probe

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EtherType is the ethertype of verify-topology probe frames: IEEE
// 802 "local experimental ethertype 1", never used by real protocols.
const EtherType = 0x88B5

// probeMagic starts every probe payload.
const probeMagic = "gallium-net-probe"

// Result says whether frames sent out of From arrived on To.
type Result struct {
	Group string `json:"group" yaml:"group"`
	From  string `json:"from" yaml:"from"`
	To    string `json:"to" yaml:"to"`
	OK    bool   `json:"ok" yaml:"ok"`
	// Detail says why a pair failed when this host can tell (an adapter
	// without carrier); empty when the frames simply never arrived.
	Detail string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

// Group is one adapter group's adapters on this host.
type Group struct {
	Name     string
	Adapters []string
}

// Options tune VerifyTopology.
type Options struct {
	// Sender names this host in the payload (for a capture on the switch).
	Sender string
	// Wait is how long to listen after the last probe (default 500 ms).
	Wait time.Duration
	// Rounds is how many probes each adapter sends (default 3), so that one
	// lost frame does not fail a pair.
	Rounds int
	// Settle is how long a link may take to come up: the adapters get this
	// long to have carrier before the first probe, and a pair that failed
	// is probed again until this much time has passed since the first
	// round (default 2 s; a negative value probes once). Right after
	// `host apply` enslaved an adapter, its switch port may not forward
	// yet: without a second chance a sound pair would be reported broken.
	Settle time.Duration
}

type probeSock struct {
	group, name string
	fd          int
	ifindex     int
}

// VerifyTopology sends probe frames out of every adapter of every group and
// reports, for every ordered pair of adapters of a group, whether a frame
// from the first arrived on the second. Each adapter gets an AF_PACKET
// socket bound to it for all protocols (ETH_P_ALL, with a kernel filter for
// EtherType): such a socket sees frames before the bond and bridge
// handle them, so it works on bond slaves, active or backup (the bond drops
// a backup slave's frames only after packet taps have seen them). Frames
// are broadcast with a random locally administered source MAC, so a switch
// never learns the bond's MAC on the wrong port. Links still coming up get
// opts.Settle to do so (see Options.Settle); a pair that fails costs
// that long.
func VerifyTopology(groups []Group, opts Options) ([]Result, error) {
	if opts.Wait == 0 {
		opts.Wait = 500 * time.Millisecond
	}
	if opts.Rounds == 0 {
		opts.Rounds = 3
	}
	if opts.Settle == 0 {
		opts.Settle = 2 * time.Second
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Adapters...)
	}
	waitRunning(names, opts.Settle)
	var socks []*probeSock
	defer func() {
		for _, s := range socks {
			unix.Close(s.fd)
		}
	}()
	for _, g := range groups {
		for _, a := range g.Adapters {
			s, err := openProbeSocket(g.Name, a)
			if err != nil {
				return nil, err
			}
			socks = append(socks, s)
		}
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	tag := hex.EncodeToString(nonce)
	got := map[probePair]bool{}
	settled := time.Now().Add(opts.Settle)
	senders := socks
	for {
		for round := 0; round < opts.Rounds; round++ {
			for _, s := range senders {
				// An adapter that is down cannot send: its pairs fail
				// (and say so through down), the others are still probed.
				if err := sendProbe(s, tag, opts.Sender); err != nil && !errors.Is(err, unix.ENETDOWN) {
					return nil, err
				}
			}
			receiveProbes(socks, tag, got, 50*time.Millisecond)
		}
		receiveProbes(socks, tag, got, opts.Wait)
		// Only the senders of pairs still failing probe again; their
		// frames still reach every receiver.
		senders = failingSenders(socks, got)
		if len(senders) == 0 || time.Now().After(settled) {
			break
		}
		receiveProbes(socks, tag, got, 200*time.Millisecond)
	}
	// Carrier as it is now, after the probes: a carrier lost just before
	// the run shows only once the kernel's linkwatch has run.
	down := linksDown(names)
	var out []Result
	for _, g := range groups {
		for _, from := range g.Adapters {
			for _, to := range g.Adapters {
				if from == to {
					continue
				}
				r := Result{Group: g.Name, From: from, To: to, OK: got[probePair{g.Name, from, to}]}
				if !r.OK {
					r.Detail = carrierDetail(down, from, to)
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// probePair is a frame's way within a group: sent out of from, seen on to.
type probePair struct{ group, from, to string }

// carrierDetail names the adapters of a failed pair that have no carrier
// ("" when both have).
func carrierDetail(down map[string]bool, from, to string) string {
	var dead []string
	for _, a := range []string{from, to} {
		if down[a] {
			dead = append(dead, a)
		}
	}
	if len(dead) == 0 {
		return ""
	}
	return strings.Join(dead, " and ") + " without carrier"
}

// failingSenders returns the sockets whose adapter has a pair, as sender,
// that no frame has proven yet.
func failingSenders(socks []*probeSock, got map[probePair]bool) []*probeSock {
	var out []*probeSock
	for _, from := range socks {
		for _, to := range socks {
			if from != to && from.group == to.group && !got[probePair{from.group, from.name, to.name}] {
				out = append(out, from)
				break
			}
		}
	}
	return out
}

// waitRunning waits up to settle for every named link to be up with
// carrier.
func waitRunning(names []string, settle time.Duration) {
	deadline := time.Now().Add(settle)
	for len(linksDown(names)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// linksDown returns the named links that are not up with carrier (IFF_UP
// and IFF_RUNNING).
func linksDown(names []string) map[string]bool {
	down := map[string]bool{}
	for _, n := range names {
		ifi, err := net.InterfaceByName(n)
		if err != nil || ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
			down[n] = true
		}
	}
	return down
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openProbeSocket(group, name string) (*probeSock, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("adapter %s (group %s): %w", name, group, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("adapter %s: packet socket (needs root): %w", name, err)
	}
	// Only probe frames reach user space: ldh [12]; jeq #0x88b5; ret all/0.
	prog := []unix.SockFilter{
		{Code: 0x28, K: 12},
		{Code: 0x15, Jt: 0, Jf: 1, K: EtherType},
		{Code: 0x06, K: 0xffff},
		{Code: 0x06, K: 0},
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("adapter %s: attach filter: %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("adapter %s: bind packet socket: %w", name, err)
	}
	// Frames that arrived between socket() and the filter are dropped
	// below by the payload check.
	return &probeSock{group: group, name: name, fd: fd, ifindex: ifi.Index}, nil
}

func sendProbe(s *probeSock, tag, sender string) error {
	src := make([]byte, 6)
	rand.Read(src)
	src[0] = src[0]&^1 | 2 // unicast, locally administered
	payload := fmt.Sprintf("%s %s %s %s %s", probeMagic, tag, s.group, s.name, sender)
	frame := make([]byte, 0, 14+len(payload)+46)
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	frame = append(frame, src...)
	frame = binary.BigEndian.AppendUint16(frame, EtherType)
	frame = append(frame, payload...)
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: s.ifindex, Halen: 6}
	copy(to.Addr[:], frame[:6])
	if err := unix.Sendto(s.fd, frame, 0, to); err != nil {
		return fmt.Errorf("adapter %s: send probe: %w", s.name, err)
	}
	return nil
}

func receiveProbes(socks []*probeSock, tag string, got map[probePair]bool, wait time.Duration) {
	deadline := time.Now().Add(wait)
	fds := make([]unix.PollFd, len(socks))
	for i, s := range socks {
		fds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	}
	buf := make([]byte, 2048)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		for i, s := range socks {
			if fds[i].Revents&unix.POLLIN == 0 {
				continue
			}
			for {
				m, from, err := unix.Recvfrom(s.fd, buf, 0)
				if err != nil {
					break
				}
				if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
					continue
				}
				grp, sender, ok := parseProbe(buf[:m], tag)
				if ok && grp == s.group && sender != s.name {
					got[probePair{grp, sender, s.name}] = true
				}
			}
		}
	}
}

// parseProbe returns the group and sending adapter of a probe frame of this
// run (tag).
func parseProbe(frame []byte, tag string) (group, adapter string, ok bool) {
	if len(frame) < 14 || binary.BigEndian.Uint16(frame[12:14]) != EtherType {
		return "", "", false
	}
	f := strings.Fields(string(bytes.TrimRight(frame[14:], "\x00")))
	if len(f) < 4 || f[0] != probeMagic || f[1] != tag {
		return "", "", false
	}
	return f[2], f[3], true
}

// Failures returns the pairs that failed, sorted.
func Failures(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if !r.OK {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	return out
}
