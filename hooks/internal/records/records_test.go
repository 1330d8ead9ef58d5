package records

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func uuidOf(w int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", w) }

// put opens domain uuid, stores d and closes it.
func put(t *testing.T, s Store, uuid string, d *Domain, strict bool) []Conflict {
	t.Helper()
	tx, err := s.Open(uuid)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	c, err := tx.Put(d, strict)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func running(name string, macs ...string) *Domain {
	d := &Domain{Name: name, Running: true}
	for i, m := range macs {
		d.NICs = append(d.NICs, NIC{MAC: m, Network: "prod", Tap: fmt.Sprintf("vnet%d", i)})
	}
	return d
}

// claimOwner is the UUID in MAC mac's claim file, "" when there is none.
func claimOwner(t *testing.T, s Store, mac string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.macsDir(), mac))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestParallelUpdates is the "50 hooks at once, 100 rounds" check: each
// worker is a domain that starts (records itself with 4 NICs and claims
// their MACs), then stops (drops its record) every round, while the others
// do the same. Each Open opens the lock files anew, so goroutines contend on
// flock exactly like separate hook processes do. No update may be lost,
// every record must stay readable throughout, and at the end every MAC is
// claimed by its domain and nothing of the stopped rounds is left behind.
func TestParallelUpdates(t *testing.T) {
	const workers, rounds = 50, 100
	s := Store{Dir: tmpfsDir(t), LockTimeout: time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uuid := uuidOf(w)
			for r := range rounds {
				err := func() error {
					tx, err := s.Open(uuid)
					if err != nil {
						return err
					}
					defer tx.Close()
					d := tx.Domain()
					d.Name, d.Running = fmt.Sprintf("vm%d", w), true
					for n := range 4 {
						d.SetNIC(NIC{MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", w, r%256, n), Network: "prod", Tap: fmt.Sprintf("vnet%d", w*4+n)})
					}
					c, err := tx.Put(d, true)
					if len(c) > 0 {
						return fmt.Errorf("worker %d round %d: conflicts %+v", w, r, c)
					}
					return err
				}()
				if err != nil {
					errs <- err
					return
				}
				// Unlocked reads during the run must always parse.
				d, err := s.Get(uuid)
				if err != nil {
					errs <- fmt.Errorf("read during run: %w", err)
					return
				}
				if d == nil || len(d.NICs) != 4 {
					errs <- fmt.Errorf("worker %d round %d: own record lost: %+v", w, r, d)
					return
				}
				if r == rounds-1 {
					break // the last round leaves the domain running
				}
				err = func() error {
					tx, err := s.Open(uuid)
					if err != nil {
						return err
					}
					defer tx.Close()
					_, err = tx.Put(nil, false)
					return err
				}()
				if err != nil {
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
	if len(st.Domains) != workers || len(st.Corrupt) != 0 {
		t.Fatalf("%d domains recorded at the end (corrupt: %q), want %d", len(st.Domains), st.Corrupt, workers)
	}
	var wantMACs []string
	for w := range workers {
		d := st.Domains[uuidOf(w)]
		if d == nil || !d.Running || len(d.NICs) != 4 {
			t.Errorf("domain %s: %+v", uuidOf(w), d)
			continue
		}
		for _, n := range d.NICs {
			wantMACs = append(wantMACs, n.MAC)
			if got := claimOwner(t, s, n.MAC); got != uuidOf(w) {
				t.Errorf("MAC %s claimed by %q, want %s", n.MAC, got, uuidOf(w))
			}
		}
	}
	slices.Sort(wantMACs)
	if diff := cmp.Diff(wantMACs, dirNames(t, s.macsDir())); diff != "" {
		t.Errorf("claims left (-want +got):\n%s", diff)
	}
	if got := len(dirNames(t, s.locksDir())); got != workers {
		t.Errorf("%d domain lock files, want %d (one per recorded domain)", got, workers)
	}
}

// TestDomainsDoNotWaitForEachOther holds one domain's lock as a hook that
// programs its taps does, and checks that another domain's call goes ahead
// at once while a call for the same domain waits and gives up after the
// timeout.
func TestDomainsDoNotWaitForEachOther(t *testing.T) {
	s := Store{Dir: t.TempDir(), LockTimeout: 200 * time.Millisecond}
	busy, err := s.Open(uuidOf(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Put(running("vm1", "52:54:00:00:00:01"), true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if c := put(t, s, uuidOf(2), running("vm2", "52:54:00:00:00:02"), true); len(c) != 0 {
		t.Fatalf("conflicts: %+v", c)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a call for another domain took %s while vm1's lock was held; it must not wait", d)
	}
	start = time.Now()
	if _, err := s.Open(uuidOf(1)); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Open of the same domain while its lock is held: %v, want ErrLockTimeout", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %s, want about 200ms", d)
	}
	busy.Close()
	tx, err := s.Open(uuidOf(1))
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	tx.Close()
}

// TestLockFileRemovedWhileWaiting: a waiter for a domain's lock whose holder
// removes the domain (and its lock file) gets the lock of the new file, not
// of the removed one, so two calls for the domain never run at once.
func TestLockFileRemovedWhileWaiting(t *testing.T) {
	s := Store{Dir: t.TempDir(), LockTimeout: 5 * time.Second}
	holder, err := s.Open(uuidOf(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Put(running("vm1", "52:54:00:00:00:01"), true); err != nil {
		t.Fatal(err)
	}
	got := make(chan *Tx)
	go func() {
		tx, err := s.Open(uuidOf(1))
		if err != nil {
			t.Error(err)
		}
		got <- tx
	}()
	time.Sleep(50 * time.Millisecond) // let it block on the old inode
	if _, err := holder.Put(nil, false); err != nil {
		t.Fatal(err)
	}
	holder.Close() // removes the lock file
	tx := <-got
	if tx == nil {
		return
	}
	defer tx.Close()
	if tx.Exists() {
		t.Errorf("the waiter sees a record after the domain was removed")
	}
	// Whoever opens the domain now must wait for the waiter: it holds the
	// lock of the file at the path.
	other := Store{Dir: s.Dir, LockTimeout: 100 * time.Millisecond}
	if _, err := other.Open(uuidOf(1)); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("a second Open while the waiter holds the lock: %v, want ErrLockTimeout", err)
	}
}

func TestMACClaims(t *testing.T) {
	const m1, m2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
	s := Store{Dir: t.TempDir()}
	a, b := uuidOf(1), uuidOf(2)
	if c := put(t, s, a, running("vm-a", m1), true); len(c) != 0 {
		t.Fatalf("conflicts: %+v", c)
	}
	// b wants a's MAC: strict writes nothing.
	want := []Conflict{{MAC: m1, OwnerUUID: a, OwnerName: "vm-a"}}
	if diff := cmp.Diff(want, put(t, s, b, running("vm-b", strings.ToUpper(m1), m2), true)); diff != "" {
		t.Errorf("strict conflicts (-want +got):\n%s", diff)
	}
	if d, _ := s.Get(b); d != nil {
		t.Errorf("strict Put with a conflict wrote %+v", d)
	}
	if got := claimOwner(t, s, m2); got != "" {
		t.Errorf("strict Put with a conflict claimed %s for %s", m2, got)
	}
	// Without strict b is recorded and claims what is free.
	if diff := cmp.Diff(want, put(t, s, b, running("vm-b", m1, m2), false)); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if got := []string{claimOwner(t, s, m1), claimOwner(t, s, m2)}; !slices.Equal(got, []string{a, b}) {
		t.Errorf("claims %q, want [a b]", got)
	}
	// a stops: its claim goes, b's stays.
	if c := put(t, s, a, nil, false); len(c) != 0 {
		t.Fatalf("conflicts: %+v", c)
	}
	if got := claimOwner(t, s, m1); got != "" {
		t.Errorf("claim of the stopped domain left: %q", got)
	}
	// b drops m2 (port deleted): the claim is given up.
	d := running("vm-b", m1)
	if c := put(t, s, b, d, false); len(c) != 0 {
		t.Fatalf("conflicts: %+v", c)
	}
	if got := []string{claimOwner(t, s, m1), claimOwner(t, s, m2)}; !slices.Equal(got, []string{b, ""}) {
		t.Errorf("claims %q, want [b none]", got)
	}
	// A record that is not running claims nothing.
	d.Running = false
	put(t, s, b, d, false)
	if got := claimOwner(t, s, m1); got != "" {
		t.Errorf("claim of a domain no longer running: %q", got)
	}
	if diff := cmp.Diff([]string{b}, dirNames(t, s.locksDir())); diff != "" {
		t.Errorf("lock files (-want +got):\n%s", diff)
	}
}

// TestStaleClaimTakenOver: a claim its owner's record does not back (a hook
// died between the claim and the record, the record was corrupt, the file
// is garbage) does not keep another domain from the MAC.
func TestStaleClaimTakenOver(t *testing.T) {
	const mac = "52:54:00:00:00:07"
	owner := uuidOf(9)
	tests := []struct {
		name  string
		claim string
		rec   *Domain // the owner's record
	}{
		{"owner has no record", owner, nil},
		{"owner not running", owner, &Domain{Name: "old", NICs: []NIC{{MAC: mac}}}},
		{"owner runs without that MAC", owner, running("old", "52:54:00:00:00:08")},
		{"garbage in the claim", "../../etc\x00", nil},
		{"empty claim", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Store{Dir: t.TempDir()}
			if err := s.init(); err != nil {
				t.Fatal(err)
			}
			if tt.rec != nil {
				tt.rec.UUID = owner
				if err := s.writeRecord(tt.rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(s.macsDir(), mac), []byte(tt.claim), 0o600); err != nil {
				t.Fatal(err)
			}
			if c := put(t, s, uuidOf(1), running("vm1", mac), true); len(c) != 0 {
				t.Errorf("conflicts with a stale claim: %+v", c)
			}
			if got := claimOwner(t, s, mac); got != uuidOf(1) {
				t.Errorf("claim owner %q, want %s", got, uuidOf(1))
			}
		})
	}
}

func TestCorruptRecordIsSetAside(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.init(); err != nil {
		t.Fatal(err)
	}
	path := s.recordPath(uuidOf(1))
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, err := s.Get(uuidOf(1)); !errors.As(err, &ce) {
		t.Fatalf("Get of a corrupt record: %v, want CorruptError", err)
	}
	st, err := s.Read()
	if err != nil || len(st.Domains) != 0 || !slices.Equal(st.Corrupt, []string{path}) {
		t.Fatalf("Read with a corrupt record: %+v, %v", st, err)
	}
	put(t, s, uuidOf(1), running("vm1", "52:54:00:00:00:01"), true)
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("corrupt record not kept aside: %v", err)
	}
	d, err := s.Get(uuidOf(1))
	if err != nil || d == nil || d.Name != "vm1" {
		t.Fatalf("record after recovery: %+v, %v", d, err)
	}
	if st, _ := s.Read(); len(st.Domains) != 1 || len(st.Corrupt) != 0 {
		t.Errorf("Read after recovery: %+v", st)
	}
}

// TestCreatesTheDirectory: after a reboot /run/gallium-net is gone too.
func TestCreatesTheDirectory(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "run", "gallium-net", "hook")}
	put(t, s, uuidOf(1), running("vm1", "52:54:00:00:00:01"), true)
	if d, err := s.Get(uuidOf(1)); err != nil || d == nil {
		t.Errorf("record in a directory created on the way: %+v, %v", d, err)
	}
}

func TestRefusesBadNames(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	for _, id := range []string{"", "../x", "a/b", strings.Repeat("a", 200)} {
		if _, err := s.Open(id); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
	}
	tx, err := s.Open(uuidOf(1))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.Put(running("vm1", "not-a-mac"), true); err == nil || !strings.Contains(err.Error(), "not-a-mac") {
		t.Errorf("Put with a malformed MAC: %v", err)
	}
}

func TestDomainHelpers(t *testing.T) {
	d := &Domain{}
	d.SetNIC(NIC{MAC: "52:54:00:00:00:01", Network: "prod"})
	d.SetNIC(NIC{MAC: "52:54:00:00:00:01", Network: "flat"})
	if diff := cmp.Diff([]NIC{{MAC: "52:54:00:00:00:01", Network: "flat"}}, d.NICs); diff != "" {
		t.Errorf("SetNIC did not replace (-want +got):\n%s", diff)
	}
	if d.NIC("52:54:00:00:00:01") == nil || d.NIC("52:54:00:00:00:02") != nil {
		t.Error("NIC lookup")
	}
	if !d.RemoveNIC("52:54:00:00:00:01") || d.RemoveNIC("52:54:00:00:00:01") {
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

// holdFlock takes an exclusive flock on path (creating it) until cleanup.
func holdFlock(t *testing.T, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	release := func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	t.Cleanup(release)
	return release
}
