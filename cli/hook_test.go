package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

func TestPlaceLink(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(link string) error
		changed bool
		wantErr string
	}{
		{name: "new link, directory created", setup: func(string) error { return nil }, changed: true},
		{name: "already in place", setup: func(l string) error { return os.Symlink("/opt/hook/gallium-net-hook", l) }},
		{name: "older gallium-net install is replaced", setup: func(l string) error { return os.Symlink("/usr/lib/gallium-net/gallium-net-hook", l) }, changed: true},
		{name: "someone else's link is refused", setup: func(l string) error { return os.Symlink("/usr/local/bin/other-hook", l) }, wantErr: "not to a gallium-net hook"},
		{name: "a regular file is refused", setup: func(l string) error { return os.WriteFile(l, []byte("#!/bin/sh\n"), 0o755) }, wantErr: "is not a link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "qemu.d", "gallium-net")
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tt.setup(link); err != nil {
				t.Fatal(err)
			}
			changed, err := placeLink(link, "/opt/hook/gallium-net-hook")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || changed != tt.changed {
				t.Fatalf("placeLink = %v, %v; want changed=%v", changed, err, tt.changed)
			}
			if got, _ := os.Readlink(link); got != "/opt/hook/gallium-net-hook" {
				t.Errorf("link points to %q", got)
			}
		})
	}
}

func TestProcessStart(t *testing.T) {
	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Fatal(err)
	}
	st, err := fs.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if boot := time.Unix(int64(st.BootTime), 0); start.Before(boot) {
		t.Errorf("this process started at %s, before boot %s", start, boot)
	}
	if d := time.Since(start); d < 0 || d > time.Hour {
		t.Errorf("this test process started %s ago", d)
	}
}
