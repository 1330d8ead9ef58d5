package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Segment is a virtual L2 segment: a learning Ethernet switch inside the
// host process, reached by QEMU's `-netdev dgram` over unix datagram
// sockets (one datagram = one frame; QEMU sends to the segment's socket,
// the switch sends to each NIC's own socket). Every NIC attached to the segment is
// a switch port. Like a real switch it learns source MACs, forwards known
// unicast to one port and floods the rest, never sends a frame back out of
// the port it came in on, and forgets the MACs of a port whose link goes
// down (VM.SetLink). Nothing touches the host's network: only unix sockets
// in the lab's own directory.
type Segment struct {
	Name string
	path string
	conn *net.UnixConn

	mu    sync.Mutex
	ports map[string]*port // by the NIC's socket path
	macs  map[[6]byte]macEntry
	done  chan struct{}
}

type port struct {
	name string // vm/nic
	addr *net.UnixAddr
	up   bool
	// blocked is a wedged port (VM.SetForwarding): its link stays up but
	// it forwards nothing, either way, and keeps its learned MACs.
	blocked bool
	rx      uint64        // frames from the port
	tx      atomic.Uint64 // frames delivered to the port
	dropped atomic.Uint64 // frames lost: queue full, port down, or the NIC not there
	// A QEMU port's frames wait in q (a switch port's buffer) for the
	// port's writer; capture is a host port's (Segment.Attach) queue.
	q       chan []byte
	capture chan []byte
}

// portQueue is a port's buffer in frames. QEMU reads its socket only while
// the guest has receive buffers, and the kernel queues at most
// net.unix.max_dgram_qlen (10) datagrams: the buffer and a blocking
// writer ride out a guest that is slow for a moment (TCG), where sending
// with MSG_DONTWAIT would drop frames that a real switch would buffer.
const portQueue = 512

// writer delivers the port's queued frames over a socket connected to the
// NIC's (so that a write waits while the NIC's queue is full), for at most
// writeWait per frame.
func (p *port) writer() {
	const writeWait = 500 * time.Millisecond
	var c *net.UnixConn
	for f := range p.q {
		if c == nil {
			var err error
			if c, err = net.DialUnix("unixgram", nil, p.addr); err != nil {
				p.dropped.Add(1) // QEMU not started yet, or gone
				continue
			}
		}
		c.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := c.Write(f); err != nil {
			p.dropped.Add(1)
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				c.Close()
				c = nil
			}
			continue
		}
		p.tx.Add(1)
	}
	if c != nil {
		c.Close()
	}
}

type macEntry struct {
	port *port
	seen time.Time
}

const macAging = 300 * time.Second

// PortStats are a switch port's frame counters.
type PortStats struct {
	Name            string
	Up              bool
	Rx, Tx, Dropped uint64
}

func newSegment(name, path string) (*Segment, error) {
	os.Remove(path)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	s := &Segment{Name: name, path: path, conn: c, ports: map[string]*port{}, macs: map[[6]byte]macEntry{}, done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *Segment) addPort(name, sock string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.ports[sock]; old != nil && old.q != nil {
		close(old.q)
	}
	p := &port{name: name, addr: &net.UnixAddr{Name: sock, Net: "unixgram"}, up: true, q: make(chan []byte, portQueue)}
	s.ports[sock] = p
	go p.writer()
}

func (s *Segment) removePort(sock string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.ports[sock]; p != nil {
		s.forget(p)
		delete(s.ports, sock)
		if p.q != nil {
			close(p.q)
		}
	}
}

// setPortUp mirrors a cable pull on the switch side: a down port neither
// sends nor receives, and the MACs learned on it are flushed.
func (s *Segment) setPortUp(sock string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.ports[sock]; p != nil {
		p.up = up
		if !up {
			s.forget(p)
		}
	}
}

// setPortForwarding wedges (on false) or frees a port: a wedged port's
// carrier stays up, but the switch drops every frame it receives there and
// sends it none, and keeps the MACs it learned there (a switch whose port
// or uplink hangs does not flush them), so unicast to them is lost too.
func (s *Segment) setPortForwarding(sock string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.ports[sock]; p != nil {
		p.blocked = !on
	}
}

func (s *Segment) forget(p *port) {
	for mac, e := range s.macs {
		if e.port == p {
			delete(s.macs, mac)
		}
	}
}

// Stats returns the counters of every port.
func (s *Segment) Stats() []PortStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PortStats
	for _, k := range sortedKeys(s.ports) {
		p := s.ports[k]
		out = append(out, PortStats{Name: p.name, Up: p.up, Rx: p.rx, Tx: p.tx.Load(), Dropped: p.dropped.Load()})
	}
	return out
}

func (s *Segment) close() {
	s.conn.Close()
	<-s.done
	s.mu.Lock()
	for k, p := range s.ports {
		if p.q != nil {
			close(p.q)
		}
		delete(s.ports, k)
	}
	s.mu.Unlock()
	os.Remove(s.path)
}

func (s *Segment) loop() {
	defer close(s.done)
	buf := make([]byte, 65536+64)
	for {
		n, from, err := s.conn.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if from == nil || n < 14 {
			continue
		}
		s.forward(from.Name, append([]byte(nil), buf[:n]...))
	}
}

func (s *Segment) forward(fromSock string, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.ports[fromSock]
	if in == nil {
		return
	}
	s.switchFrame(in, frame)
}

// switchFrame forwards frame that entered on port in. Called with s.mu held.
func (s *Segment) switchFrame(in *port, frame []byte) {
	if !in.up || in.blocked {
		in.dropped.Add(1)
		return
	}
	in.rx++
	var dst, src [6]byte
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	now := time.Now()
	if src[0]&1 == 0 {
		s.macs[src] = macEntry{port: in, seen: now}
	}
	if dst[0]&1 == 0 {
		if e, ok := s.macs[dst]; ok && now.Sub(e.seen) < macAging {
			if e.port.blocked {
				e.port.dropped.Add(1)
			} else if e.port != in && e.port.up {
				s.send(e.port, frame)
			}
			return
		}
	}
	for _, p := range s.ports {
		if p != in && p.up && !p.blocked {
			s.send(p, frame)
		}
	}
}

// send queues frame for port p without blocking: when the port's buffer
// is full the frame is lost, as on a congested switch port.
func (s *Segment) send(p *port, frame []byte) {
	q := p.q
	if p.capture != nil {
		q = p.capture
	}
	select {
	case q <- frame:
		if p.capture != nil {
			p.tx.Add(1)
		}
	default:
		p.dropped.Add(1)
	}
}

// HostPort is a switch port owned by the host test itself, to inject and
// capture raw Ethernet frames on a segment.
type HostPort struct {
	seg *Segment
	p   *port
	key string
}

// Attach adds a host port to the segment. Frames that the switch forwards
// to it arrive on Frames (up to 1024 queued; more are dropped).
func (s *Segment) Attach(name string) *HostPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fmt.Sprintf("host:%s:%p", name, &name)
	p := &port{name: name, up: true, capture: make(chan []byte, 1024)}
	s.ports[key] = p
	return &HostPort{seg: s, p: p, key: key}
}

// Frames delivers the frames the switch forwards to this port.
func (h *HostPort) Frames() <-chan []byte { return h.p.capture }

// Send injects one Ethernet frame (destination MAC first) into the segment.
func (h *HostPort) Send(frame []byte) error {
	if len(frame) < 14 {
		return errors.New("frame shorter than an Ethernet header")
	}
	h.seg.mu.Lock()
	defer h.seg.mu.Unlock()
	h.seg.switchFrame(h.p, append([]byte(nil), frame...))
	return nil
}

// Close detaches the port.
func (h *HostPort) Close() { h.seg.removePort(h.key) }
