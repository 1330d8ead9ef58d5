package etcdstore

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
)

// silentPath is a TCP path to one etcd member that can go silent: after
// silence() nothing crosses it either way and nothing is reset, like a
// member whose host lost power. A reset would let gRPC notice at once; the
// test is about the path that does not.
type silentPath struct {
	ln     net.Listener
	target string
	// down counts bytes from the member to the client, so a test can see
	// which path carries a stream.
	down  atomic.Int64
	once  sync.Once
	quiet chan struct{} // closed by silence
	stop  chan struct{} // closed when the test ends
}

func newSilentPath(t *testing.T, target string) *silentPath {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPath{ln: ln, target: target, quiet: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		p.silence()
		close(p.stop)
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *silentPath) url() string { return "http://" + p.ln.Addr().String() }

func (p *silentPath) silence() { p.once.Do(func() { close(p.quiet) }) }

// serve forwards one connection until the path goes silent; from then on
// it holds both sockets open, forwards nothing and closes nothing until
// the test ends (a close would tell the client at once).
func (p *silentPath) serve(c net.Conn) {
	defer c.Close()
	hold := func() {
		select {
		case <-p.quiet:
			<-p.stop
		default:
		}
	}
	hold() // accepted on a silent path: never answered
	m, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer m.Close()
	done := make(chan struct{}, 2)
	go func() { p.copy(m, c, nil); done <- struct{}{} }()
	go func() { p.copy(c, m, &p.down); done <- struct{}{} }()
	<-done
	hold()
}

func (p *silentPath) copy(dst io.Writer, src io.Reader, count *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.quiet:
			return // dropped on the floor, as a dead host does
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if count != nil {
				count.Add(int64(n))
			}
		}
		if err != nil {
			return
		}
	}
}

// A member that goes silent (its host powered off: no reset, no FIN) must
// not take a live writer's leased key with it: the client has to notice
// the dead connection and renew the lease through the other member before
// the lease runs out. Before the client pinged its connections, the
// keep-alive stream hung on the silent one and the key expired, which is
// how a live hypervisor's state vanished from `cluster status` when
// another hypervisor lost power.
func TestLeaseOutlivesASilentMember(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a lease of 20 s; the unit tier runs it")
	}
	t.Parallel()
	c := etcdtest.Start(t, 1)
	target := strings.TrimPrefix(c.Endpoints[0], "http://")
	paths := []*silentPath{newSilentPath(t, target), newSilentPath(t, target)}
	writer, err := Open(Config{Endpoints: []string{paths[0].url(), paths[1].url()}, Prefix: "/silent-test/",
		KeepAliveTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := Open(Config{Endpoints: c.Endpoints, Prefix: "/silent-test/"})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx := t.Context()
	// 20 s: renewed every ~6.7 s; gRPC pings a quiet connection after
	// 10 s at the soonest, so the client has ~9 s of slack to move over.
	const ttl = 20 * time.Second
	if err := writer.PutLeased(ctx, "hosts/hv2", []byte("alive"), ttl); err != nil {
		t.Fatal(err)
	}
	// Only the lease's keep-alive stream talks now: the path whose
	// answers grow over one renewal period carries it.
	before := []int64{paths[0].down.Load(), paths[1].down.Load()}
	time.Sleep(ttl/3 + time.Second)
	grew := []int64{paths[0].down.Load() - before[0], paths[1].down.Load() - before[1]}
	carrier := 0
	if grew[1] > grew[0] {
		carrier = 1
	}
	if grew[carrier] == 0 {
		t.Fatalf("no keep-alive answer on either path in %s: %v", ttl/3+time.Second, grew)
	}
	paths[carrier].silence()
	silenced := time.Now()
	t.Logf("path %d (carrying the keep-alive stream) silenced", carrier)
	// Past the lease's whole life: a stuck stream would have let it expire.
	for time.Since(silenced) < ttl+5*time.Second {
		kv, err := reader.Get(ctx, "hosts/hv2")
		if err != nil {
			t.Fatalf("%s after the member went silent: the leased key is gone: %v", time.Since(silenced).Round(100*time.Millisecond), err)
		}
		if string(kv.Value) != "alive" {
			t.Fatalf("leased key holds %q", kv.Value)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The writer still writes through the member that answers.
	if err := writer.PutLeased(ctx, "hosts/hv2", []byte("still"), ttl); err != nil {
		t.Fatalf("write after the member went silent: %v", err)
	}
}
