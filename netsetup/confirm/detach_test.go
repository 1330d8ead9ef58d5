package confirm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/test/testenv"
)

// fakeSystemd makes this host look systemd-run (systemdDir exists, a
// systemd-run on PATH) and returns the file the fake systemd-run writes its
// arguments to when called.
func fakeSystemd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	old := systemdDir
	systemdDir = dir
	t.Cleanup(func() { systemdDir = old })
	called := filepath.Join(dir, "systemd-run.called")
	script := "#!/bin/sh\necho \"$@\" >> " + called + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemd-run"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return called
}

// TestDetachInAnotherNetnsStaysThere: with systemd present the rollback
// timer was a transient unit, which runs in PID 1's network namespace, so
// an apply inside another namespace armed a rollback of the wrong one
// (issue 13 #4). From another namespace the detached process is used, and
// it runs in the caller's namespace.
func TestDetachInAnotherNetnsStaysThere(t *testing.T) {
	testenv.NeedRoot(t)
	called := fakeSystemd(t)
	type choice struct {
		SystemdRun bool
		Detached   bool
		SameNetns  bool
	}

	// PID 1 is stood in for by a link that names this test's namespace
	// (what /proc/1/ns/net reads on a host where the CLI runs in PID 1's).
	ours, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	oldInit := initNetnsPath
	initNetnsPath = filepath.Join(t.TempDir(), "init-net")
	t.Cleanup(func() { initNetnsPath = oldInit })
	if err := os.Symlink(ours, initNetnsPath); err != nil {
		t.Fatal(err)
	}

	// In PID 1's namespace systemd-run is still used.
	pid, err := Detach([]string{"/bin/true"}, filepath.Join(t.TempDir(), "log"), time.Second, "gallium-net-rollback-test")
	if err != nil {
		t.Fatal(err)
	}
	_, statErr := os.Stat(called)
	if diff := cmp.Diff(choice{SystemdRun: true}, choice{SystemdRun: statErr == nil, Detached: pid != 0}); diff != "" {
		t.Errorf("in PID 1's network namespace (-want +got):\n%s", diff)
	}
	os.Remove(called)

	testenv.EnterNetns(t)
	here, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "netns")
	pid, err = Detach([]string{"/bin/sh", "-c", "readlink /proc/self/ns/net > " + out + ".tmp && mv " + out + ".tmp " + out}, filepath.Join(t.TempDir(), "log"), time.Second, "gallium-net-rollback-test")
	if err != nil {
		t.Fatal(err)
	}
	var ran []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ran, err = os.ReadFile(out); err == nil {
			break
		}
	}
	_, statErr = os.Stat(called)
	got := choice{SystemdRun: statErr == nil, Detached: pid != 0, SameNetns: strings.TrimSpace(string(ran)) == here}
	if diff := cmp.Diff(choice{Detached: true, SameNetns: true}, got); diff != "" {
		t.Errorf("in another network namespace (-want +got):\n%s\nthe detached process saw %q, the caller is in %q", diff, ran, here)
	}
}
