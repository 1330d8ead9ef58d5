package boltstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

// open returns a Backend on a fresh file; bbolt is one process, so n
// clients share the one Backend.
func open(t testing.TB, n int) []store.Backend {
	t.Helper()
	b, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	out := make([]store.Backend, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestConformance(t *testing.T) { storetest.Run(t, open) }

// TestConcurrentMACs3x1000 is the figure: 3 clients x 1000
// concurrent allocations, 0 duplicates.
func TestConcurrentMACs3x1000(t *testing.T) {
	storetest.ConcurrentMACs(t, open(t, 3), 1000, nil)
}

func TestFileModeAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", st.Mode().Perm())
	}
	// A second opener (another gallium-net process) waits for the lock and
	// then says what holds it.
	if _, err := Open(path, Options{LockTimeout: 50e6}); err == nil {
		t.Fatal("second Open of a locked state file succeeded")
	}
}
