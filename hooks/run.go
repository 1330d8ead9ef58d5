package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// env is everything an invocation may touch besides its arguments and stdio;
// tests point it at temporary directories and a fake kernel.
type env struct {
	// StateDir holds the local records of running NICs.
	StateDir string
	// SnapshotPath is this host's snapshot written by gallium-net.
	SnapshotPath string
	// LogPath receives the structured log when there is no journal; "" means
	// no log file.
	LogPath string
	// Journal is the journald socket; used when it exists.
	Journal string
	// Kernel programs taps.
	Kernel tap.Kernel
	// LockTimeout bounds the wait for the records lock.
	LockTimeout time.Duration
	// Self is the hook's own executable, for the detached tap waiter.
	Self string
}

func defaultEnv() env {
	self, _ := os.Executable()
	e := env{
		StateDir:     "/run/gallium-net/hook",
		SnapshotPath: snapshot.DefaultPath,
		LogPath:      "/var/log/gallium-net/hook.log",
		Journal:      "/run/systemd/journal/socket",
		Kernel:       tap.NewNetlink(),
		LockTimeout:  records.DefaultLockTimeout,
		Self:         self,
	}
	// Overrides for tests and benchmarks of the real binary. libvirt runs
	// hooks with a minimal environment, so these are never set there.
	for v, p := range map[string]*string{
		"GALLIUM_HOOK_STATE_DIR": &e.StateDir,
		"GALLIUM_HOOK_SNAPSHOT":  &e.SnapshotPath,
		"GALLIUM_HOOK_LOG":       &e.LogPath,
	} {
		if s := os.Getenv(v); s != "" {
			*p = s
		}
	}
	return e
}

// maxStdin caps what the hook reads from libvirt. The domain XML limit is the
// domains package's; the network hook's document is much smaller.
const maxStdin = domains.MaxDomainXMLBytes

// hook is one invocation.
type hook struct {
	inv    invocation
	stdin  []byte
	stdout io.Writer
	stderr io.Writer
	env    env
	log    *slog.Logger
	// quiet logs to the journal or log file only.
	quiet *slog.Logger
}

// failure is an error that aborts libvirt's operation; its text is what
// libvirt shows the operator, so it says what is wrong and how to fix it.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, a ...any) error { return &failure{fmt.Sprintf(format, a...)} }

// run executes one hook invocation and returns the process exit status.
func run(argv []string, stdin io.Reader, stdout, stderr io.Writer, e env) (code int) {
	inv := parseArgs(argv)
	if inv.op == awaitTapOp {
		return awaitTap(argv, e)
	}
	h := &hook{inv: inv, stdout: stdout, stderr: stderr, env: e}
	if !h.handles() {
		// Unknown operations pass through untouched and unread.
		return 0
	}
	log, quiet, closeLog := newLoggers(e, stderr, inv)
	defer closeLog()
	h.log, h.quiet = log, quiet
	// A panic must never kill a running VM (reconnect) nor print a Go trace
	// as libvirt's error message.
	defer func() {
		if r := recover(); r != nil {
			log.Error("hook panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			fmt.Fprintf(stderr, "gallium-net hook: internal error on %s %s %s: %v; please report it\n", inv.kind, inv.op, inv.object, r)
			code = h.exitFor(errors.New("panic"))
		}
	}()
	data, err := io.ReadAll(io.LimitReader(stdin, maxStdin+1))
	if err != nil {
		return h.finish(fmt.Errorf("read stdin: %w", err))
	}
	if len(data) > maxStdin {
		return h.finish(failf("gallium-net hook: %s %s: the XML on stdin is larger than %d bytes; this is not a libvirt document", inv.op, inv.object, maxStdin))
	}
	h.stdin = data
	if h.inv.kind == kindUnknown {
		h.inv.kind = kindFromDocument(data)
	}
	switch h.inv.kind {
	case kindQemu:
		err = h.qemu()
	case kindNetwork:
		err = h.network()
	}
	return h.finish(err)
}

// handles reports whether the hook acts on this operation at all.
func (h *hook) handles() bool {
	switch h.inv.kind {
	case kindQemu:
		return qemuOps[h.inv.op]
	case kindNetwork:
		return networkOps[h.inv.op]
	}
	return qemuOps[h.inv.op] || networkOps[h.inv.op]
}

// kindFromDocument tells the drivers apart by the stdin root element.
func kindFromDocument(data []byte) kind {
	s := string(bytes.TrimSpace(data[:min(len(data), 512)]))
	for strings.HasPrefix(s, "<?") || strings.HasPrefix(s, "<!--") {
		end := strings.Index(s, ">")
		if end < 0 {
			return kindUnknown
		}
		s = strings.TrimSpace(s[end+1:])
	}
	switch {
	case strings.HasPrefix(s, "<hookData"):
		return kindNetwork
	case strings.HasPrefix(s, "<domain"):
		return kindQemu
	}
	return kindUnknown
}

// finish logs the outcome and maps it to the exit status.
func (h *hook) finish(err error) int {
	if err == nil {
		return 0
	}
	var f *failure
	if errors.As(err, &f) {
		fmt.Fprintln(h.stderr, f.msg)
	} else {
		fmt.Fprintf(h.stderr, "gallium-net hook: %s %s %s: %v\n", h.inv.kind, h.inv.op, h.inv.object, err)
	}
	h.quiet.Error("hook failed", "error", err.Error())
	return h.exitFor(err)
}

// exitFor is the exit status for a failed invocation: non-zero only where
// libvirt uses it to stop something that must not go ahead. reconnect (a
// non-zero exit kills the running VM), stopped and release (too late to
// matter) and the network hook's bookkeeping always exit 0.
func (h *hook) exitFor(error) int {
	if h.inv.kind == kindQemu {
		switch h.inv.op {
		case "prepare", "start", "started", "migrate", "restore":
			return 1
		}
	}
	if h.inv.kind == kindNetwork && h.inv.op == "port-created" {
		// Refusing the port refuses a NIC whose tap could not be isolated.
		return 1
	}
	return 0
}

func (h *hook) store() records.Store {
	return records.Store{Dir: h.env.StateDir, LockTimeout: h.env.LockTimeout, Log: h.log}
}

func (h *hook) snapshot() (*snapshot.Host, error) {
	snap, err := snapshot.Read(h.env.SnapshotPath)
	if err != nil {
		return nil, err
	}
	if snap.Networks == nil {
		snap.Networks = map[string]snapshot.Network{}
	}
	return snap, nil
}
