package records

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestParallelUpdates is the "50 hooks at once, 100 rounds" check: each
// worker is a domain that starts (adds itself with 4 NICs), then stops
// (removes itself) every round, while the others do the same. Each Update
// opens the lock file anew, so goroutines contend on flock exactly like
// separate hook processes do. No update may be lost and the file must stay
// valid JSON throughout.
func TestParallelUpdates(t *testing.T) {
	const workers, rounds = 50, 100
	s := Store{Dir: tmpfsDir(t), LockTimeout: time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uuid := fmt.Sprintf("00000000-0000-0000-0000-%012d", w)
			for r := range rounds {
				err := s.Update(func(st *State) error {
					d := st.Domain(uuid, fmt.Sprintf("vm%d", w), true)
					d.Running = true
					for n := range 4 {
						d.SetNIC(NIC{MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", w, r%256, n), Network: "prod", Tap: fmt.Sprintf("vnet%d", w*4+n)})
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				// Unlocked reads during the run must always parse.
				st, err := s.Read()
				if err != nil {
					errs <- fmt.Errorf("read during run: %w", err)
					return
				}
				if d := st.Domains[uuid]; d == nil || len(d.NICs) != 4 {
					errs <- fmt.Errorf("worker %d round %d: own record lost: %+v", w, r, d)
					return
				}
				if r == rounds-1 {
					break // the last round leaves the domain running
				}
				if err := s.Update(func(st *State) error {
					d := st.Domain(uuid, "", false)
					d.Running = false
					d.NICs = nil
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Domains) != workers {
		t.Fatalf("%d domains recorded at the end, want %d", len(st.Domains), workers)
	}
	for id, d := range st.Domains {
		if !d.Running || len(d.NICs) != 4 {
			t.Errorf("domain %s: running=%v nics=%d", id, d.Running, len(d.NICs))
		}
	}
}

func TestLockTimeout(t *testing.T) {
	s := Store{Dir: t.TempDir(), LockTimeout: 50 * time.Millisecond}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Update(func(*State) error { return nil })
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Update with the lock held elsewhere: %v, want ErrLockTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s, want about 50ms", d)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err := s.Update(func(*State) error { return nil }); err != nil {
		t.Fatalf("Update after release: %v", err)
	}
}

func TestCorruptStateIsSetAside(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := os.WriteFile(s.path(), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, err := s.Read(); !errors.As(err, &ce) {
		t.Fatalf("Read of a corrupt file: %v, want CorruptError", err)
	}
	if err := s.Update(func(st *State) error {
		st.Domain("u1", "vm", true).Running = true
		return nil
	}); err != nil {
		t.Fatalf("Update over a corrupt file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "nics.json.corrupt")); err != nil {
		t.Errorf("corrupt file not kept aside: %v", err)
	}
	st, err := s.Read()
	if err != nil || st.Domains["u1"] == nil {
		t.Fatalf("state after recovery: %+v, %v", st, err)
	}
}

func TestStateHelpers(t *testing.T) {
	st := &State{Domains: map[string]*Domain{}}
	a := st.Domain("a", "vm-a", true)
	a.Running = true
	a.SetNIC(NIC{MAC: "52:54:00:00:00:01", Network: "prod"})
	a.SetNIC(NIC{MAC: "52:54:00:00:00:01", Network: "flat"})
	if len(a.NICs) != 1 || a.NICs[0].Network != "flat" {
		t.Errorf("SetNIC did not replace: %+v", a.NICs)
	}
	b := st.Domain("b", "vm-b", true)
	b.SetNIC(NIC{MAC: "52:54:00:00:00:02", Network: "prod"})
	tests := []struct {
		mac, uuid string
		want      string
	}{
		{"52:54:00:00:00:01", "b", "a"},
		{"52:54:00:00:00:01", "a", ""},
		{"52:54:00:00:00:02", "a", ""}, // b is not running
		{"52:54:00:00:00:03", "b", ""},
	}
	for _, tt := range tests {
		got := ""
		if d := st.MACOwner(tt.mac, tt.uuid); d != nil {
			got = d.UUID
		}
		if got != tt.want {
			t.Errorf("MACOwner(%s, %s) = %q, want %q", tt.mac, tt.uuid, got, tt.want)
		}
	}
	if !a.RemoveNIC("52:54:00:00:00:01") || a.RemoveNIC("52:54:00:00:00:01") {
		t.Error("RemoveNIC: want true then false")
	}
}

// tmpfsDir is a temporary directory on tmpfs when the machine has one, as
// /run is in production: the parallel tests write thousands of times, and a
// disk-backed rename costs about a millisecond each.
func tmpfsDir(t *testing.T) string {
	d, err := os.MkdirTemp("/dev/shm", "gallium-hook-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
