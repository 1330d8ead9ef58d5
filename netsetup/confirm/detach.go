package confirm

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Detach starts argv as a process in its own session (setsid), with no
// terminal, stdin from /dev/null and output to logPath, and does not wait
// for it: it outlives the CLI and its SSH session. When systemd runs the
// host and the caller is in PID 1's network namespace (HasSystemd),
// systemd-run is used instead (a transient unit with a timer), which also
// survives logind killing the session's processes; after is then the timer
// and argv must not wait itself. A transient unit runs in PID 1's network
// namespace, so from any other it would roll back the wrong one: there the
// detached process, which stays in the caller's, is used.
// It returns the process ID (0 with systemd-run).
func Detach(argv []string, logPath string, systemdAfter time.Duration, unit string) (int, error) {
	if systemdAfter > 0 {
		if sr := systemdRun(); sr != "" {
			args := []string{"--unit", unit, "--collect", fmt.Sprintf("--on-active=%dms", systemdAfter.Milliseconds()), "--timer-property=AccuracySec=100ms"}
			out, err := exec.Command(sr, append(args, argv...)...).CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("systemd-run: %v: %s", err, strings.TrimSpace(string(out)))
			}
			return 0, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	return pid, cmd.Process.Release()
}

// HasSystemd reports whether a rollback timer can be a transient systemd
// unit: systemd runs this host, systemd-run is there, and the caller is in
// PID 1's network namespace, where the unit would run.
func HasSystemd() bool { return systemdRun() != "" }

// systemdDir exists when systemd runs the host (sd_booted(3)); a variable
// so that a test can stand in for systemd.
var systemdDir = "/run/systemd/system"

// systemdRun is systemd-run's path when a transient unit would act on the
// caller's network namespace, else "".
func systemdRun() string {
	if _, err := os.Stat(systemdDir); err != nil {
		return ""
	}
	if same, err := inInitNetns(); !same {
		slog.Debug("rollback timer: a detached process, not systemd-run: this process is not in PID 1's network namespace, where a transient unit would run", "err", err)
		return ""
	}
	p, _ := exec.LookPath("systemd-run")
	return p
}

// initNetnsPath names PID 1's network namespace; a variable so that a test
// can stand in for PID 1 (a sandbox may hide PID 1's namespaces even from
// root).
var initNetnsPath = "/proc/1/ns/net"

// inInitNetns reports whether the calling thread is in PID 1's network
// namespace. The thread's, not the process's: Detach forks from it, and a
// Go program (a test) may have moved one locked thread elsewhere. When the
// namespaces cannot be compared it says false, so that the rollback runs
// where the caller is.
func inInitNetns() (bool, error) {
	// readlink ("net:[inode]"), not stat: stat opens the namespace, which
	// a container may refuse even to root, and the link names it uniquely.
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return false, fmt.Errorf("this thread's network namespace: %w", err)
	}
	init, err := os.Readlink(initNetnsPath)
	if err != nil {
		return false, fmt.Errorf("PID 1's network namespace: %w", err)
	}
	return self == init, nil
}
