// Package confirmtest runs commit-confirm as the CLI does, for the tests of
// netsetup/confirm and netsetup's kernel-lab test: the test binary runs
// itself again as "the CLI" (which saves, arms a detached rollback and
// applies) and as the detached rollback process. A test binary that uses
// RunUnconfirmedApply must call Main from its TestMain.
package confirmtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm"
)

// Main is the TestMain of a test binary that uses RunUnconfirmedApply: it
// lets the test binary run again as "the CLI" (mode apply) and as the
// detached rollback process (mode rollback), without a fake test that would
// show up as skipped in every run.
func Main(m *testing.M) {
	if mode := os.Getenv("GALLIUM_NETSETUP_HELPER"); mode != "" {
		helperProcess(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperProcess is the re-executed test binary; it never returns.
func helperProcess(mode string) {
	store := confirm.Store{Dir: os.Getenv("GALLIUM_NETSETUP_DIR")}
	k := netsetup.NewNetlink()
	switch mode {
	case "rollback":
		after, _ := time.ParseDuration(os.Getenv("GALLIUM_NETSETUP_AFTER"))
		err := store.RollbackIfUnconfirmed(k, os.Getenv("GALLIUM_NETSETUP_ID"), after, func(m string) { fmt.Println(m) })
		fmt.Println("rollback process done:", err)
		os.Exit(0)
	case "apply":
		// What `gallium-net host apply` does: save, arm (detached), change.
		obs, err := k.Observe()
		if err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		var target netsetup.Snapshot
		data, _ := os.ReadFile(os.Getenv("GALLIUM_NETSETUP_TARGET"))
		if err := json.Unmarshal(data, &target); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		after, _ := time.ParseDuration(os.Getenv("GALLIUM_NETSETUP_AFTER"))
		now := time.Now()
		id := confirm.NewPendingID(now)
		var names []string
		for _, l := range target.Links {
			names = append(names, l.Name)
		}
		if err := store.Save(&confirm.Pending{ID: id, Created: now, Deadline: now.Add(after), Snapshot: obs.Subset(names)}); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		os.Setenv("GALLIUM_NETSETUP_HELPER", "rollback")
		os.Setenv("GALLIUM_NETSETUP_ID", id)
		pid, err := confirm.Detach([]string{os.Args[0], "-test.run=^$"}, store.LogPath(id), 0, "")
		if err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		if _, err := netsetup.Restore(k, &target, nil); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		fmt.Println("APPLIED", id, pid)
		time.Sleep(time.Hour) // waits for a confirm that never comes: the test kills it
	}
}

// RunUnconfirmedApply runs "the CLI" in its own process group, applies
// target with commit-confirm (rollback after `after`), kills the CLI's whole
// process group as a dying SSH session would, and returns the rollback ID
// and the rollback process's PID.
func RunUnconfirmedApply(t *testing.T, target *netsetup.Snapshot, after time.Duration) (confirm.Store, string, int) {
	t.Helper()
	dir := t.TempDir()
	tf := dir + "/target.json"
	data, _ := json.Marshal(target)
	os.WriteFile(tf, data, 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GALLIUM_NETSETUP_HELPER=apply", "GALLIUM_NETSETUP_DIR="+dir,
		"GALLIUM_NETSETUP_TARGET="+tf, "GALLIUM_NETSETUP_AFTER="+after.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var id string
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "FAIL") {
			t.Fatalf("the apply process: %s", line)
		}
		if _, err := fmt.Sscanf(line, "APPLIED %s %d", &id, &pid); err == nil {
			break
		}
	}
	if id == "" {
		t.Fatal("the apply process did not apply")
	}
	// The SSH session dies: SIGKILL to the CLI's whole process group.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	// The rollback process lives in its own session, not the CLI's.
	if sid, err := sessionOf(pid); err != nil || sid != pid {
		t.Errorf("rollback process %d: session %d (%v); want its own session", pid, sid, err)
	}
	return confirm.Store{Dir: dir}, id, pid
}

// sessionOf reads a process's session ID from /proc.
func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var sid int
	_, err = fmt.Sscan(fields[3], &sid)
	return sid, err
}

// WaitRestored polls until the host equals want (on want's links) or the
// deadline passes, and returns how long after start it took.
func WaitRestored(t *testing.T, k netsetup.Kernel, want *netsetup.Snapshot, names []string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for time.Since(start) < limit {
		obs, err := k.Observe()
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(obs.Subset(names).Restorable(), want.Restorable()) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	obs, _ := k.Observe()
	t.Fatalf("not rolled back within %s (-want +got):\n%s", limit, cmp.Diff(want.Restorable(), obs.Subset(names).Restorable()))
	return 0
}

// WaitResult waits for the rollback process to record that it rolled back
// (it does so after verifying the host, so a little after the host is back).
func WaitResult(t *testing.T, store confirm.Store, id string) {
	t.Helper()
	for i := 0; i < 500 && !strings.HasPrefix(store.Result(id), "rolled back"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if r := store.Result(id); !strings.HasPrefix(r, "rolled back") {
		log, _ := os.ReadFile(store.LogPath(id))
		t.Errorf("result %q; log:\n%s", r, log)
	}
}
