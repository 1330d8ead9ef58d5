package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "packages.txt")
	os.WriteFile(p, []byte("# comment\n\nnetsetup\n./hooks nics=a,a,b timeout=5m mem=768  # trailing\n"), 0o644)
	specs, err := readList(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []pkgSpec{
		{Dir: "./netsetup", NICs: defaultNICs, Timeout: 10 * time.Minute},
		{Dir: "./hooks", NICs: []string{"a", "a", "b"}, Timeout: 5 * time.Minute, MemMB: 768},
	}
	if diff := cmp.Diff(want, specs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"x nope=1", "x timeout=soon", "x mem=lots"} {
		if _, err := parseSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
