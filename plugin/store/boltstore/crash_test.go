package boltstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

// crashDirEnv tells a re-executed test binary to be the crash writer.
const crashDirEnv = "GALLIUM_CRASH_WRITER_DIR"

// TestMain turns the test binary into the crash writer when
// TestCrashConsistency re-executes it with crashDirEnv set.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		err := crashWriter(dir)
		fmt.Fprintln(os.Stderr, "crash writer:", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// steps counts the writer's mutations: one per pushed spec revision and one
// per allocated NIC; every mutation is one store transaction.
func steps(version int64, nics int) int { return int(version) + nics }

// crashWriter mutates the store forever, alternating spec pushes and MAC
// allocations, and after each acknowledged mutation prints "STORE n", then
// rewrites the host snapshot and prints "SNAP n". The parent kills it.
func crashWriter(dir string) error {
	b, err := Open(filepath.Join(dir, "state.db"), Options{})
	if err != nil {
		return err
	}
	s := store.New(b)
	ctx := context.Background()
	snapPath := filepath.Join(dir, "host-snapshot.json")
	say := func(format string, args ...any) { os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n") }
	version, nics, err := readState(ctx, s)
	if err != nil {
		return err
	}
	say("READY")
	// Catch up first: the previous writer may have died between a commit
	// and its snapshot.
	if version > 0 {
		if _, err := s.SyncSnapshot(ctx, "hv1", snapPath); err != nil {
			return err
		}
		say("SNAP %d", steps(version, nics))
	}
	for {
		if steps(version, nics)%2 == 0 {
			yaml := storetest.SpecYAML("lab", "52:54:00") + fmt.Sprintf("# step %d\n", steps(version, nics))
			if _, err := s.PushSpec(ctx, store.PushRequest{YAML: []byte(yaml), Base: version}); err != nil {
				return err
			}
			version++
		} else {
			if _, _, err := s.AllocateMAC(ctx, store.NIC{DomainUUID: fmt.Sprintf("vm%d", nics), Key: "net0", Network: "prod", Hypervisor: "hv1"}); err != nil {
				return err
			}
			nics++
		}
		say("STORE %d", steps(version, nics))
		if _, err := s.SyncSnapshot(ctx, "hv1", snapPath); err != nil {
			return err
		}
		say("SNAP %d", steps(version, nics))
	}
}

// readState returns the current spec revision and NIC count, checking that
// the store is internally consistent: the current spec is the newest of
// the history, and every NIC's MAC is claimed by that NIC.
func readState(ctx context.Context, s *store.Store) (int64, int, error) {
	var version int64
	rec, err := s.Spec(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, 0, err
	default:
		version = rec.Version
		hist, err := s.SpecHistory(ctx)
		if err != nil {
			return 0, 0, err
		}
		if int64(len(hist)) != version || hist[len(hist)-1].SHA256 != rec.SHA256 {
			return 0, 0, fmt.Errorf("spec revision %d but %d history records", version, len(hist))
		}
	}
	nics, err := s.NICs(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	for _, n := range nics {
		owner, err := s.MACOwner(ctx, n.MAC)
		if err != nil || owner != n.ID() {
			return 0, 0, fmt.Errorf("NIC %s has MAC %s but the MAC is claimed by %q (%v)", n.ID(), n.MAC, owner, err)
		}
	}
	return version, len(nics), nil
}

func lastAck(out, tag string) (int, bool) {
	n, ok := 0, false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if rest, found := strings.CutPrefix(sc.Text(), tag+" "); found {
			if v, err := strconv.Atoi(rest); err == nil {
				n, ok = v, true
			}
		}
	}
	return n, ok
}

// TestCrashConsistency kills a writer process with SIGKILL at random points,
// over and over, and checks after every kill that the store and the host
// snapshot open and hold either the state before or after the write in
// flight, never less than what was acknowledged and never a mix.
// GALLIUM_CRASH_KILLS overrides the count (default 1000, -short 100).
func TestCrashConsistency(t *testing.T) {
	kills := 1000
	if testing.Short() {
		kills = 100
	}
	if v, err := strconv.Atoi(os.Getenv("GALLIUM_CRASH_KILLS")); err == nil && v > 0 {
		kills = v
	}
	dir := t.TempDir()
	snapPath := filepath.Join(dir, "host-snapshot.json")
	ctx := context.Background()
	prevStore, prevSnap := 0, 0
	var newerStore, newerSnap, noAck int
	start := time.Now()
	for i := 0; i < kills; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		var errb strings.Builder
		cmd.Stderr = &errb
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		ready := make(chan struct{})
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if sc.Text() == "READY" {
					close(ready)
				}
			}
		}()
		// A quarter of the kills land anywhere from exec through opening
		// the file; the rest land at a random point of the write loop,
		// after the writer said it opened the store.
		if rand.IntN(4) > 0 {
			select {
			case <-ready:
			case <-readDone:
			case <-time.After(10 * time.Second):
			}
			time.Sleep(time.Duration(rand.IntN(20000)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(rand.IntN(30000)) * time.Microsecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-readDone
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
			t.Fatalf("kill %d: writer failed by itself: %s", i, errb.String())
		}

		ackStore, ok := lastAck(out.String(), "STORE")
		if !ok {
			ackStore = prevStore
			noAck++
		}
		ackSnap, ok := lastAck(out.String(), "SNAP")
		if !ok {
			ackSnap = prevSnap
		}

		b, err := Open(filepath.Join(dir, "state.db"), Options{})
		if err != nil {
			t.Fatalf("kill %d: the state file does not open: %v", i, err)
		}
		if err := b.Check(); err != nil {
			b.Close()
			t.Fatalf("kill %d: %v", i, err)
		}
		version, nics, err := readState(ctx, store.New(b))
		b.Close()
		if err != nil {
			t.Fatalf("kill %d: inconsistent store: %v", i, err)
		}
		got := steps(version, nics)
		if got != ackStore && got != ackStore+1 {
			t.Fatalf("kill %d: store holds step %d; acknowledged %d, so want %d (old) or %d (new)", i, got, ackStore, ackStore, ackStore+1)
		}
		if got == ackStore+1 {
			newerStore++
		}

		snap, err := snapshot.Read(snapPath)
		gotSnap := 0
		switch {
		case errors.Is(err, snapshot.ErrNotFound) && ackSnap == 0:
		case err != nil:
			t.Fatalf("kill %d: the host snapshot does not open: %v", i, err)
		default:
			gotSnap = int(snap.SpecRevision) + len(snap.NICs)
			if len(snap.Networks) == 0 || snap.Hypervisor != "hv1" {
				t.Fatalf("kill %d: snapshot is incomplete: %+v", i, snap)
			}
		}
		if gotSnap != ackSnap && gotSnap != ackSnap+1 {
			t.Fatalf("kill %d: snapshot holds step %d; acknowledged %d, so want %d or %d", i, gotSnap, ackSnap, ackSnap, ackSnap+1)
		}
		if gotSnap > got {
			t.Fatalf("kill %d: snapshot (step %d) is ahead of the store (step %d)", i, gotSnap, got)
		}
		if gotSnap == ackSnap+1 {
			newerSnap++
		}
		prevStore, prevSnap = got, gotSnap
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".host-snapshot.json.tmp-*"))
	elapsed := time.Since(start)
	t.Logf("%d SIGKILLs in %v (%.1f ms each): final step %d; store held the unacknowledged new state %d times, snapshot %d times; %d kills landed before that writer acknowledged anything (exec, open, catch-up sync); %d leftover temp files (removed by later syncs after 10 s)",
		kills, elapsed.Round(time.Millisecond), float64(elapsed.Milliseconds())/float64(kills), prevStore, newerStore, newerSnap, noAck, len(temps))
	if prevStore < kills/10 {
		t.Errorf("only %d mutations over %d kills: the kills land before the writer gets going; the test proves little", prevStore, kills)
	}
}
