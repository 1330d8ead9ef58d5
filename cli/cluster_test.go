package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/clusterjoin"
	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
)

// storeHost is one hypervisor of a store cluster run inside this test
// process, on its own loopback address.
type storeHost struct {
	name, addr string
	dir        string // cluster home
	data       string // etcd data
	stop       context.CancelFunc
	done       chan error
}

type storeLab struct {
	t     *testing.T
	root  string
	ports [3]int
	hosts map[string]*storeHost
}

func newStoreLab(t *testing.T) *storeLab {
	clusterjoin.AllowLoopback = true
	t.Cleanup(func() { clusterjoin.AllowLoopback = false })
	l := &storeLab{t: t, root: t.TempDir(), hosts: map[string]*storeHost{}}
	// Three free ports, the same on every member's address.
	for i := range l.ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.ports[i] = ln.Addr().(*net.TCPAddr).Port
		defer ln.Close()
	}
	for i, name := range []string{"hv1", "hv2", "hv3"} {
		l.hosts[name] = &storeHost{name: name, addr: "127.0.0." + strconv.Itoa(21+i),
			dir: filepath.Join(l.root, name, "cluster"), data: filepath.Join(l.root, name, "store")}
		// A config with every setting at its default but the membership's
		// directory, so that every command finds this host's store.
		if err := os.MkdirAll(filepath.Join(l.root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.root, name, "none.yaml"), []byte("cluster: {dir: "+filepath.Join(l.root, name, "cluster")+"}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// gn runs the CLI in process.
func (l *storeLab) gn(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(ctx, append([]string{"gallium-net"}, args...))
	return out.String(), errOut.String(), err
}

func (l *storeLab) must(args ...string) string {
	l.t.Helper()
	out, errOut, err := l.gn(l.t.Context(), args...)
	if err != nil {
		l.t.Fatalf("gallium-net %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (h *storeHost) args(cmd ...string) []string {
	return append(cmd, "--cluster-dir", h.dir, "--config", filepath.Join(filepath.Dir(h.dir), "none.yaml"))
}

func (l *storeLab) memberArgs(h *storeHost, cmd ...string) []string {
	return append(h.args(cmd...), "-f", filepath.Join(l.root, "no-spec.yaml"),
		"--hypervisor", h.name, "--address", h.addr, "--data-dir", h.data, "--no-start")
}

func (l *storeLab) serve(h *storeHost) {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() {
		_, errOut, err := l.gn(ctx, h.args("cluster", "serve")...)
		if err != nil {
			err = &serveErr{err, errOut}
		}
		h.done <- err
	}()
	l.t.Cleanup(func() { l.halt(h) })
}

type serveErr struct {
	err    error
	stderr string
}

func (e *serveErr) Error() string { return e.err.Error() + "\n" + e.stderr }

func (l *storeLab) halt(h *storeHost) {
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			l.t.Errorf("%s: cluster serve: %v", h.name, err)
		}
	case <-time.After(30 * time.Second):
		l.t.Errorf("%s: cluster serve did not stop in 30 s", h.name)
	}
	h.stop = nil
}

// status waits until `cluster status -o json` on h says ok, and returns it.
func (l *storeLab) status(h *storeHost, members int) clusterStatus {
	l.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		out, errOut, err := l.gn(l.t.Context(), h.args("cluster", "status", "-o", "json")...)
		var st clusterStatus
		if jerr := json.Unmarshal([]byte(out), &st); jerr == nil && err == nil && st.OK && len(st.Store.Members) == members {
			return st
		}
		last = out + errOut
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: cluster status not ok with %d members after 90 s:\n%s", h.name, members, last)
		}
		select {
		case err := <-h.done:
			l.t.Fatalf("%s: cluster serve ended: %v", h.name, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// initFirst runs cluster init on h and its member, and waits for it.
func (l *storeLab) initFirst(h *storeHost) {
	l.t.Helper()
	l.must(append(l.memberArgs(h, "cluster", "init", "--cluster", "lab"), l.portArgs()...)...)
	l.serve(h)
	l.status(h, 1)
}

func (l *storeLab) portArgs() []string {
	return []string{"--client-port", strconv.Itoa(l.ports[0]), "--peer-port", strconv.Itoa(l.ports[1]), "--join-port", strconv.Itoa(l.ports[2])}
}

func memberNames(st clusterStatus) []string {
	var names []string
	for _, m := range st.Store.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// From nothing to a three-member store with init and two joins; a client
// without the cluster's certificate is refused; a backup is taken; a
// reinstalled member (wiped home and data) joins again with --replace.
func TestClusterInitJoinStatusReplace(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three etcd members")
	}
	l := newStoreLab(t)
	hv1, hv2, hv3 := l.hosts["hv1"], l.hosts["hv2"], l.hosts["hv3"]

	out := l.must(append(l.memberArgs(hv1, "cluster", "init", "--cluster", "lab"), l.portArgs()...)...)
	if !strings.Contains(out, "gallium-net cluster join --server 127.0.0.21:"+strconv.Itoa(l.ports[2])+" gn1::") {
		t.Fatalf("init does not print the join command:\n%s", out)
	}
	// init twice is refused with the way out.
	if _, _, err := l.gn(t.Context(), append(l.memberArgs(hv1, "cluster", "init", "--cluster", "lab"), l.portArgs()...)...); err == nil || !strings.Contains(err.Error(), "already hv1, a member of cluster lab") {
		t.Fatalf("second init: %v", err)
	}
	l.serve(hv1)
	st := l.status(hv1, 1)
	if st.Store.Leader != "hv1" || st.Spec != nil {
		t.Errorf("after init: leader %q, spec %v; want hv1 and no spec", st.Store.Leader, st.Spec)
	}
	tok := strings.TrimSpace(l.must(hv1.args("cluster", "token")...))
	if _, err := clusterpki.ParseToken(tok); err != nil {
		t.Fatal(err)
	}
	server := hv1.addr + ":" + strconv.Itoa(l.ports[2])

	// A token for another cluster: nothing sent, nothing written.
	other, _ := clusterpki.NewCA("other", time.Now())
	otherTok, _ := clusterpki.NewToken(other)
	if _, _, err := l.gn(t.Context(), append(l.memberArgs(hv2, "cluster", "join", "--server", server), otherTok.String())...); err == nil || !strings.Contains(err.Error(), "does not match the join token") {
		t.Fatalf("join with a foreign token: %v", err)
	}
	if _, partial, _ := clusterhome.New(hv2.dir).Exists(); partial {
		t.Error("a refused join left files behind")
	}

	// hv2 and hv3 join at the same time, as two operators in two
	// terminals would: etcd takes one learner at a time, and the second
	// join waits for the first and gets in.
	var wg sync.WaitGroup
	joinErr := make(chan error, 2)
	for _, h := range []*storeHost{hv2, hv3} {
		wg.Go(func() {
			started := time.Now()
			out, errOut, err := l.gn(t.Context(), append(l.memberArgs(h, "cluster", "join", "--server", server), tok)...)
			if err != nil {
				joinErr <- fmt.Errorf("%s: join: %v\n%s%s", h.name, err, out, errOut)
				return
			}
			l.serve(h)
			t.Logf("%s admitted after %v (%d busy answers)", h.name, time.Since(started).Round(time.Millisecond), strings.Count(errOut, "busy with another join"))
		})
	}
	wg.Wait()
	close(joinErr)
	for err := range joinErr {
		t.Fatal(err)
	}
	st = l.status(hv3, 3)
	if diff := slices.Compare(memberNames(st), []string{"hv1", "hv2", "hv3"}); diff != 0 {
		t.Fatalf("members %v", memberNames(st))
	}

	// A client with the right CA but no certificate is refused by the store.
	m3, err := clusterhome.New(hv3.dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	noCert := etcdstore.Config{Endpoints: []string{m3.ClientURL()}, CAFile: filepath.Join(hv3.dir, clusterhome.CAFile), DialTimeout: 2 * time.Second}
	if b, err := etcdstore.Open(noCert); err == nil {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		_, err = b.Client().Get(ctx, "/gallium-net/", clientv3.WithPrefix())
		cancel()
		b.Close()
		if err == nil {
			t.Error("a client without a certificate read the store")
		}
	}

	backup := filepath.Join(l.root, "backup.db")
	out = l.must(append(hv2.args("cluster", "backup"), backup)...)
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup %v %v:\n%s", fi, err, out)
	}

	// hv3 is reinstalled: wiped home and data. Without --replace the join
	// is refused with the fix; with it, hv3 is a member again.
	l.halt(hv3)
	for _, d := range []string{hv3.dir, hv3.data} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = l.gn(t.Context(), append(l.memberArgs(hv3, "cluster", "join", "--server", server), tok)...)
	if err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("rejoin without --replace: %v", err)
	}
	started := time.Now()
	l.must(append(l.memberArgs(hv3, "cluster", "join", "--server", server, "--replace"), tok)...)
	l.serve(hv3)
	st = l.status(hv3, 3)
	t.Logf("hv3 rejoined and voting after %v", time.Since(started).Round(time.Millisecond))
	if diff := slices.Compare(memberNames(st), []string{"hv1", "hv2", "hv3"}); diff != 0 {
		t.Fatalf("members after the rejoin %v", memberNames(st))
	}
}
