package confirm

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/plugin/atomicfile"
)

// DefaultStateDir is where commit-confirm keeps pre-apply snapshots and
// markers.
const DefaultStateDir = "/var/lib/gallium-net"

// DefaultTimeout is how long an apply that touches the management
// link waits for `gallium-net host confirm` before rolling back.
const DefaultTimeout = 60 * time.Second

// Pending is a pre-apply snapshot saved by a commit-confirm apply.
type Pending struct {
	ID         string    `json:"id"`
	Hypervisor string    `json:"hypervisor"`
	Created    time.Time `json:"created"`
	// Deadline is when an unconfirmed apply rolls back; zero when the
	// apply did not need confirming.
	Deadline time.Time `json:"deadline,omitempty"`
	// Snapshot is the part of the host that the apply may change
	// (Snapshot.Subset): what a rollback restores.
	Snapshot *netsetup.Snapshot `json:"snapshot"`
	// Takeover, after `gallium-net host takeover`, holds the OS network
	// manager files it edited with their old bytes (under Root): a
	// rollback writes them back before it restores Snapshot and then runs
	// Takeover.Reload, so the manager takes its interfaces back.
	Takeover *osnet.Release `json:"takeover,omitempty"`
	Root     string         `json:"root,omitempty"`
}

// Store keeps commit-confirm state under Dir/confirm: ID.json is the
// pre-apply snapshot, ID.armed is the marker that confirm removes; a rollback
// renames the marker to ID.rolling-back first, so confirm and rollback never
// both win.
type Store struct{ Dir string }

// StateDir is Dir, or DefaultStateDir when Dir is empty.
func (s Store) StateDir() string {
	if s.Dir == "" {
		return DefaultStateDir
	}
	return s.Dir
}

func (s Store) dir() string { return filepath.Join(s.StateDir(), "confirm") }

func (s Store) path(id, ext string) string { return filepath.Join(s.dir(), id+ext) }

// NewPendingID returns a sortable, unique ID.
func NewPendingID(now time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Save writes the snapshot and, when p.Deadline is set, arms the marker
// (commit-confirm); without a deadline the snapshot is only kept for a
// manual `gallium-net host rollback`.
func (s Store) Save(p *Pending) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(p.ID, ".json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save pre-apply snapshot: %w", err)
	}
	if p.Deadline.IsZero() {
		return nil
	}
	if err := atomicfile.Write(s.path(p.ID, ".armed"), []byte(p.Deadline.UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return fmt.Errorf("arm rollback: %w", err)
	}
	return nil
}

// Load reads a saved snapshot.
func (s Store) Load(id string) (*Pending, error) {
	if strings.ContainsAny(id, "/\\") || id == "" {
		return nil, fmt.Errorf("bad rollback ID %q", id)
	}
	data, err := os.ReadFile(s.path(id, ".json"))
	if err != nil {
		return nil, fmt.Errorf("rollback %s: %w", id, err)
	}
	var p Pending
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("rollback %s: corrupt snapshot %s: %w", id, s.path(id, ".json"), err)
	}
	return &p, nil
}

// IDs returns the saved snapshots' IDs, oldest first.
func (s Store) IDs() []string {
	ents, _ := os.ReadDir(s.dir())
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			out = append(out, strings.TrimSuffix(n, ".json"))
		}
	}
	sort.Strings(out)
	return out
}

// Armed returns the IDs whose rollback is armed (not yet confirmed).
func (s Store) Armed() []string {
	var out []string
	for _, id := range s.IDs() {
		if _, err := os.Stat(s.path(id, ".armed")); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// ErrNotArmed means there was nothing to confirm or roll back: already
// confirmed, or a rollback already took it.
var ErrNotArmed = errors.New("not armed")

// Confirm disarms the rollback of id.
func (s Store) Confirm(id string) error {
	err := os.Remove(s.path(id, ".armed"))
	if errors.Is(err, os.ErrNotExist) {
		if _, e := os.Stat(s.path(id, ".rolling-back")); e == nil {
			return fmt.Errorf("apply %s: too late, the automatic rollback has started: %w", id, ErrNotArmed)
		}
		return fmt.Errorf("apply %s: %w (already confirmed?)", id, ErrNotArmed)
	}
	return err
}

// Take claims the armed rollback of id for a rollback run: it renames the
// marker, so a confirm that comes later fails instead of racing.
func (s Store) Take(id string) error {
	err := os.Rename(s.path(id, ".armed"), s.path(id, ".rolling-back"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("apply %s: %w (it was confirmed)", id, ErrNotArmed)
	}
	return err
}

// Finish records the outcome of a rollback that Take claimed.
func (s Store) Finish(id string, result error) error {
	msg := "rolled back " + time.Now().UTC().Format(time.RFC3339) + "\n"
	if result != nil {
		msg = "rollback FAILED " + time.Now().UTC().Format(time.RFC3339) + ": " + result.Error() + "\n"
	}
	if err := os.WriteFile(s.path(id, ".result"), []byte(msg), 0o600); err != nil {
		return err
	}
	return os.Remove(s.path(id, ".rolling-back"))
}

// Result returns what a finished rollback recorded, or "".
func (s Store) Result(id string) string {
	b, _ := os.ReadFile(s.path(id, ".result"))
	return strings.TrimSpace(string(b))
}

// LogPath is where the detached rollback process of id logs.
func (s Store) LogPath(id string) string { return s.path(id, ".log") }

// Prune removes all but the newest keep snapshots that are neither armed
// nor rolling back.
func (s Store) Prune(keep int) {
	ids := s.IDs()
	for i := 0; i < len(ids)-keep; i++ {
		id := ids[i]
		if _, err := os.Stat(s.path(id, ".armed")); err == nil {
			continue
		}
		if _, err := os.Stat(s.path(id, ".rolling-back")); err == nil {
			continue
		}
		for _, ext := range []string{".json", ".result", ".log"} {
			os.Remove(s.path(id, ext))
		}
	}
}

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

// RollbackIfUnconfirmed waits until the rollback of id is due (after), and
// restores the saved snapshot unless confirm ran meanwhile. It returns
// ErrNotArmed when there was nothing to do.
func (s Store) RollbackIfUnconfirmed(k netsetup.Kernel, id string, after time.Duration, log func(string)) error {
	p, err := s.Load(id)
	if err != nil {
		return err
	}
	time.Sleep(after)
	if err := s.Take(id); err != nil {
		return err
	}
	log(fmt.Sprintf("apply %s was not confirmed in time: restoring the pre-apply state", id))
	_, err = p.restore(k, func(i, n int, st netsetup.Step, done bool, err error) {
		if done {
			log(fmt.Sprintf("[%d/%d] %s: %s", i+1, n, st.Cmd, errText(err)))
		}
	}, log)
	if ferr := s.Finish(id, err); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// RollbackNow restores the snapshot of id now (a manual rollback), whether
// or not it was confirmed.
func (s Store) RollbackNow(k netsetup.Kernel, id string, progress func(i, n int, st netsetup.Step, done bool, err error)) (*netsetup.Plan, error) {
	p, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	taken := s.Take(id) == nil
	plan, err := p.restore(k, progress, func(msg string) { slog.Info(msg, "id", id) })
	if taken {
		s.Finish(id, err)
	}
	return plan, err
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// restore puts back what the apply (or takeover) of p changed: the OS
// network manager files first, so that the managers find their own
// configuration when they are told to read it again, then the links and
// addresses, then the managers' reloads. A failed reload is logged, not
// an error: the files and addresses are back, and the manager reads its
// files at its next start.
func (p *Pending) restore(k netsetup.Kernel, progress func(i, n int, st netsetup.Step, done bool, err error), log func(string)) (*netsetup.Plan, error) {
	var ferr error
	if p.Takeover != nil {
		ferr = osnet.RestoreFiles(p.rootDir(), p.Takeover.Edits, atomicfile.Write)
		for _, e := range p.Takeover.Edits {
			log(fmt.Sprintf("restored %s (%s)", e.Path, e.Manager))
		}
	}
	plan, err := netsetup.Restore(k, p.Snapshot, progress)
	if p.Takeover != nil {
		for _, r := range p.Takeover.Reload {
			ran, rerr := reload(r)
			switch {
			case rerr != nil:
				log(fmt.Sprintf("%s: %v (the manager reads its restored files when it next starts)", strings.Join(r.Argv, " "), rerr))
			case ran:
				log(strings.Join(r.Argv, " ") + ": ok")
			}
		}
	}
	return plan, errors.Join(ferr, err)
}

// reload runs r when its manager's unit is running (ran); a manager that
// is not running reads its files when it starts.
func reload(r osnet.Reload) (ran bool, err error) {
	if !UnitActive(r.Unit) {
		return false, nil
	}
	if err := RunCommand(r.Argv); err != nil {
		return true, fmt.Errorf("%s: %w", strings.Join(r.Argv, " "), err)
	}
	return true, nil
}

// UnitActive reports whether systemd runs unit; a variable so that tests
// stand in for systemd.
var UnitActive = func(unit string) bool {
	return exec.Command("systemctl", "is-active", "--quiet", unit).Run() == nil
}

func (p *Pending) rootDir() string {
	if p.Root == "" {
		return "/"
	}
	return p.Root
}

// RunCommand runs argv and returns its error with its output; a variable
// so that tests record the reloads instead of running them.
var RunCommand = func(argv []string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
