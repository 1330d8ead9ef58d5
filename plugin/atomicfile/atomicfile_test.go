package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplaceAndCleanup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "f.json")
	for _, data := range []string{"one\n", "two\n"} {
		if err := Write(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q, %v; want %q", got, err, data)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("mode: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("created directory: %v %v", st, err)
	}
	if err := Replace(path, []byte("three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "three\n" {
		t.Fatalf("Replace: read back %q", got)
	}
	// A failing writer leaves the old file and no temporary file.
	boom := errors.New("boom")
	if err := WriteFunc(path, 0o600, func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("WriteFunc error = %v, want boom", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "three\n" {
		t.Fatalf("after a failed write: %q", got)
	}
	if temps, _ := filepath.Glob(TempPattern(path)); len(temps) != 0 {
		t.Fatalf("temporary files left: %q", temps)
	}
	// Replace does not create the directory.
	if err := Replace(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("Replace into a missing directory succeeded")
	}
}
