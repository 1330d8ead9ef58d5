package lsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
)

const (
	// ProbeArg, as a program's first argument, asks it to run a stage of
	// ProbeExec (RunProbeStage) instead of its usual work.
	ProbeArg = "__lsm-exec-probe"
	// probeObject and probeOp make the hook's probe run an operation it
	// does not know, which it passes through: exit 0, nothing touched.
	probeObject = "gallium-net-exec-probe"
	probeOp     = "probe"
)

// ErrDenied is returned by ProbeExec when the profile may not execute the
// hook.
var ErrDenied = errors.New("permission denied")

// ProbeExec asks AppArmor for real whether a process confined by profile
// may execute hook, the way libvirt runs it (argv[0] the link in qemu.d or
// network.d, a minimal environment, stdin empty). self is a program that
// calls RunProbeStage first thing (the gallium-net CLI). It runs in two
// new processes: the first asks the kernel to put the next exec under
// profile and execs self again, so the second runs confined and its exec
// of the hook is checked by profile's rules, as libvirtd's is (asking for
// the profile on the hook's own exec would check the exec against the
// caller's confinement instead). nil means the hook ran; ErrDenied that the
// exec was refused; any other error that the probe could not tell.
func ProbeExec(self, profile, hook string) error {
	cmd := exec.Command(self, ProbeArg, "as", profile, hook)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 126:
		return fmt.Errorf("%w: %s", ErrDenied, msg)
	case msg != "":
		return fmt.Errorf("probe as %s: %v: %s", profile, err, msg)
	}
	return fmt.Errorf("probe as %s: %w", profile, err)
}

// RunProbeStage runs a stage of ProbeExec when args (os.Args) ask for one,
// and then never returns; otherwise it returns at once. Call it before
// anything else in main.
func RunProbeStage(args []string) {
	if len(args) < 4 || args[1] != ProbeArg {
		return
	}
	switch {
	case args[2] == "as" && len(args) == 5:
		err := execUnder(args[3], args[0], []string{args[0], ProbeArg, "exec", args[4]})
		fmt.Fprintf(os.Stderr, "change to profile %s: %v\n", args[3], err)
		os.Exit(2)
	case args[2] == "exec" && len(args) == 4:
		hook := args[3]
		err := syscall.Exec(hook, []string{hook, probeObject, probeOp, "begin", "-"}, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"})
		fmt.Fprintf(os.Stderr, "exec %s: %v\n", hook, err)
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			os.Exit(126)
		}
		os.Exit(127)
	}
	fmt.Fprintf(os.Stderr, "%s: bad arguments %q\n", ProbeArg, args[2:])
	os.Exit(2)
}

// execUnder execs argv under AppArmor profile: the kernel applies a label
// written to the calling thread's attr/exec at that thread's next exec
// (what aa_change_onexec does), so the goroutine stays on its thread.
func execUnder(profile, path string, argv []string) error {
	runtime.LockOSThread()
	cmd := []byte("exec " + profile)
	var err error
	for _, f := range []string{"/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"} {
		if err = os.WriteFile(f, cmd, 0); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}
