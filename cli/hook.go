package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"
	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/lsm"
)

// Where the hook lives and where libvirt looks for it.
const (
	DefaultHookBinary = "/usr/sbin/gallium-net-hook"
	DefaultHooksDir   = "/etc/libvirt/hooks"
	hookLinkName      = "gallium-net"
	// reloadRecord notes when gallium-net last sent the daemons SIGHUP.
	reloadRecord = "/var/lib/gallium-net/hook-reload.json"
)

// hookDaemons are the libvirt daemons that run hooks: the monolithic
// libvirtd, or the modular virtqemud (qemu.d) and virtnetworkd (network.d).
var hookDaemons = []string{"libvirtd", "virtqemud", "virtnetworkd"}

func hookCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "hook-binary", Value: DefaultHookBinary, Usage: "the gallium-net-hook `PATH` the links point to"},
		&cli.StringFlag{Name: "hooks-dir", Value: DefaultHooksDir, Usage: "libvirt's hook `DIR`"},
	}
	return &cli.Command{
		Name:  "hook",
		Usage: "the libvirt hook: install it, show its status",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "link the hook into qemu.d and network.d and make libvirt re-read its hooks (SIGHUP)",
				Description: `Places the links HOOKS-DIR/qemu.d/gallium-net and HOOKS-DIR/network.d/gallium-net
to the hook binary, then sends SIGHUP to libvirtd (or virtqemud and
virtnetworkd): libvirt reads its hook directories only when it starts or
reloads. Idempotent. An existing file of that name that is not a link to a
gallium-net hook is refused.

Example:
   gallium-net hook install --hook-binary /usr/sbin/gallium-net-hook`,
				Flags:  append(flags, &cli.BoolFlag{Name: "no-reload", Usage: "place the links only; reload the daemon yourself"}),
				Action: hookInstall,
			},
			{
				Name:  "status",
				Usage: "the hook links, whether libvirt may execute the hook here (AppArmor, SELinux), and whether the daemon has re-read its hooks",
				Description: `Shows the two hook links and their target, each libvirt daemon that runs
hooks, when it started and when gallium-net last reloaded it, and whether it
runs the hook (started or reloaded after the links were placed).

It also tells whether libvirt's daemons may execute the hook at all. On a
default Debian or Ubuntu host AppArmor confines libvirtd, and a hook its
profile does not let it execute makes every domain and network start fail
and a libvirtd restart stop running VMs. For each daemon confined by
AppArmor this command tries it: it runs the hook link, as libvirt does,
from a process under the daemon's profile (the hook ignores the probe and
changes nothing). Under SELinux it reads the mode and the boolean
virt_hooks_unconfined. Denials naming gallium-net that the kernel logged
since the links were placed are listed.

Exits 1 when the hook is not active or libvirt may not execute it.

Examples:
   gallium-net hook status -o json
   gallium-net hook status --exec-only     # only "may libvirt execute it?" (the package's postinst)`,
				Flags: append(flags, outputFlag("table", "json", "yaml"),
					&cli.BoolFlag{Name: "exec-only", Usage: "only whether libvirt's daemons may execute the hook (no reload check)"}),
				Action: hookStatus,
			},
		},
	}
}

func hookLinks(dir string) []string {
	return []string{filepath.Join(dir, "qemu.d", hookLinkName), filepath.Join(dir, "network.d", hookLinkName)}
}

func hookInstall(c *cli.Context) error {
	bin := c.String("hook-binary")
	st, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("hook binary %s: %w; install the gallium-net package or pass --hook-binary", bin, err)
	}
	if st.Mode()&0o111 == 0 || !st.Mode().IsRegular() {
		return fmt.Errorf("hook binary %s is not an executable file", bin)
	}
	for _, link := range hookLinks(c.String("hooks-dir")) {
		changed, err := placeLink(link, bin)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(c.App.Writer, "linked %s -> %s\n", link, bin)
		} else {
			fmt.Fprintf(c.App.Writer, "%s -> %s already in place\n", link, bin)
		}
	}
	if c.Bool("no-reload") {
		fmt.Fprintln(c.App.Writer, "not reloading: libvirt runs the hook only after its daemon restarts or gets SIGHUP")
		return nil
	}
	pids := daemonPIDs()
	if len(pids) == 0 {
		fmt.Fprintln(c.App.Writer, "no libvirt daemon runs; it will read the hooks when it starts")
		return nil
	}
	rec := reloads{}
	for name, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload %s (pid %d): %w; restart it by hand so that it reads the hook", name, pid, err)
		}
		rec[strconv.Itoa(pid)] = time.Now().UTC()
		fmt.Fprintf(c.App.Writer, "sent SIGHUP to %s (pid %d): it re-reads its hooks\n", name, pid)
	}
	data, _ := json.Marshal(rec)
	if err := atomicfile.Write(reloadRecord, data, 0o644); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: cannot record the reload (%v); 'hook status' may report it as pending\n", err)
	}
	return nil
}

// placeLink makes link a symlink to target; it refuses to replace anything
// but a link to some gallium-net hook.
func placeLink(link, target string) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return false, fmt.Errorf("hook link %s: %w", link, err)
	}
	cur, err := os.Readlink(link)
	switch {
	case err == nil && cur == target:
		return false, nil
	case err == nil && strings.Contains(filepath.Base(cur), "gallium-net"):
		// An older install at another path: replace it.
	case err == nil:
		return false, fmt.Errorf("%s is a link to %s, not to a gallium-net hook; remove it by hand if it is stale", link, cur)
	case errors.Is(err, os.ErrNotExist):
	default:
		if _, statErr := os.Lstat(link); statErr == nil {
			return false, fmt.Errorf("%s exists and is not a link; gallium-net will not replace it: move it away and rerun", link)
		}
		return false, fmt.Errorf("hook link %s: %w", link, err)
	}
	tmp := link + ".gallium-net-new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("hook link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("hook link %s: %w", link, err)
	}
	return true, nil
}

// reloads maps a daemon PID to when gallium-net sent it SIGHUP.
type reloads map[string]time.Time

// daemonPIDs finds the running libvirt daemons that run hooks, by /proc.
func daemonPIDs() map[string]int {
	out := map[string]int{}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return out
	}
	procs, _ := fs.AllProcs()
	for _, p := range procs {
		// A process that exited since the listing has no comm: skip it.
		name, err := p.Comm()
		if err != nil {
			continue
		}
		for _, d := range hookDaemons {
			if name == d {
				out[name] = p.PID
			}
		}
	}
	return out
}

// processStart is when process pid started: the boot time plus its start
// in clock ticks after boot (/proc/PID/stat, /proc/stat).
func processStart(pid int) (time.Time, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return time.Time{}, fmt.Errorf("start of process %d: %w", pid, err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return time.Time{}, fmt.Errorf("start of process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return time.Time{}, fmt.Errorf("start of process %d: %w", pid, err)
	}
	sec, err := st.StartTime()
	if err != nil {
		return time.Time{}, fmt.Errorf("start of process %d: %w", pid, err)
	}
	// Clock ticks are 10 ms: rounding to the microsecond undoes the
	// float's error without losing a tick.
	return time.UnixMicro(int64(math.Round(sec * 1e6))), nil
}

type hookLinkStatus struct {
	Path      string `json:"path" yaml:"path"`
	Target    string `json:"target,omitempty" yaml:"target,omitempty"`
	State     string `json:"state" yaml:"state"`
	Installed string `json:"installed,omitempty" yaml:"installed,omitempty"`
}

type hookDaemonStatus struct {
	Name     string `json:"name" yaml:"name"`
	PID      int    `json:"pid" yaml:"pid"`
	Started  string `json:"started" yaml:"started"`
	Reloaded string `json:"reloaded,omitempty" yaml:"reloaded,omitempty"`
	// HookActive: the daemon started or got SIGHUP after the links were
	// placed, so it runs the hook.
	HookActive bool `json:"hookActive" yaml:"hookActive"`
}

type hookStatusOut struct {
	Links   []hookLinkStatus   `json:"links" yaml:"links"`
	Daemons []hookDaemonStatus `json:"daemons" yaml:"daemons"`
	// Exec is whether the security modules let the daemons execute it.
	Exec   hookExecStatus `json:"exec" yaml:"exec"`
	OK     bool           `json:"ok" yaml:"ok"`
	Advice string         `json:"advice,omitempty" yaml:"advice,omitempty"`
}

func hookStatus(c *cli.Context) error {
	out := hookStatusOut{Links: []hookLinkStatus{}, Daemons: []hookDaemonStatus{}, OK: true}
	var installed time.Time
	for _, link := range hookLinks(c.String("hooks-dir")) {
		ls := hookLinkStatus{Path: link}
		fi, err := os.Lstat(link)
		switch {
		case err != nil:
			ls.State = "missing"
			out.OK = false
		case fi.Mode()&os.ModeSymlink == 0:
			ls.State = "not a link"
			out.OK = false
		default:
			ls.Target, _ = os.Readlink(link)
			// The change time: a package sets the link's mtime to the
			// archive's, but placing it (creation, dpkg's rename) sets ctime.
			placed := changeTime(fi)
			ls.Installed = placed.UTC().Format(time.RFC3339)
			if placed.After(installed) {
				installed = placed
			}
			if st, err := os.Stat(link); err != nil {
				ls.State = "broken: target missing"
				out.OK = false
			} else if st.Mode()&0o111 == 0 {
				ls.State = "target not executable"
				out.OK = false
			} else {
				ls.State = "ok"
			}
		}
		out.Links = append(out.Links, ls)
	}
	var rec reloads
	if data, err := os.ReadFile(reloadRecord); err == nil {
		_ = json.Unmarshal(data, &rec)
	}
	pids := daemonPIDs()
	for name, pid := range pids {
		ds := hookDaemonStatus{Name: name, PID: pid}
		started, err := processStart(pid)
		if err == nil {
			ds.Started = started.UTC().Format(time.RFC3339)
		}
		last := started
		if t, ok := rec[strconv.Itoa(pid)]; ok {
			ds.Reloaded = t.Format(time.RFC3339)
			if t.After(last) {
				last = t
			}
		}
		// Second resolution on both sides: a reload in the same second as the
		// install counts.
		ds.HookActive = !installed.IsZero() && !last.Truncate(time.Second).Before(installed.Truncate(time.Second))
		if !ds.HookActive {
			out.OK = false
		}
		out.Daemons = append(out.Daemons, ds)
	}
	switch {
	case len(out.Daemons) == 0:
		out.Advice = "no libvirt daemon runs"
	case !out.OK:
		out.Advice = "run 'gallium-net hook install' (it places the links and reloads the daemon)"
	}
	out.Exec = checkHookExec(lsm.System(), pids, c.String("hooks-dir"), installed, selfProbe)
	if c.Bool("exec-only") {
		return printHookExec(c, out.Exec)
	}
	if !out.Exec.OK {
		out.OK = false
		out.Advice = out.Exec.Advice
	}
	err := printOut(c, out, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "LINK\tTARGET\tSTATE")
		for _, l := range out.Links {
			fmt.Fprintf(w, "%s\t%s\t%s\n", l.Path, orDash(l.Target), l.State)
		}
		fmt.Fprintln(w, "\nDAEMON\tPID\tSTARTED\tRELOADED\tRUNS THE HOOK")
		for _, d := range out.Daemons {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", d.Name, d.PID, orDash(d.Started), orDash(d.Reloaded), yesNo(d.HookActive))
		}
		fmt.Fprintln(w)
		hookExecTable(w, out.Exec)
		if out.Advice != "" {
			fmt.Fprintf(w, "\n%s\n", out.Advice)
		}
	})
	if err != nil {
		return err
	}
	if !out.Exec.OK {
		return &exitError{code: 1, err: errors.New("libvirt may not execute the hook here")}
	}
	if !out.OK {
		return &exitError{code: 1, err: errors.New("the hook is not active")}
	}
	return nil
}

func printHookExec(c *cli.Context, st hookExecStatus) error {
	err := printOut(c, st, func(w *tabwriter.Writer) {
		hookExecTable(w, st)
		if st.Advice != "" {
			fmt.Fprintf(w, "\n%s\n", st.Advice)
		}
	})
	if err != nil {
		return err
	}
	if !st.OK {
		return &exitError{code: 1, err: errors.New("libvirt may not execute the hook here")}
	}
	return nil
}

func hookExecTable(w *tabwriter.Writer, st hookExecStatus) {
	lsms := "AppArmor " + map[bool]string{true: "enabled", false: "off"}[st.AppArmor]
	if st.SELinux != "" {
		lsms += ", SELinux " + st.SELinux
	}
	fmt.Fprintf(w, "SECURITY: %s\n", lsms)
	fmt.Fprintln(w, "DAEMON\tCONFINED BY\tMAY EXECUTE THE HOOK\tDETAIL")
	for _, d := range st.Daemons {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Name, d.Confinement, d.CanExec, orDash(d.Detail))
	}
	if len(st.Denials) > 0 {
		fmt.Fprintf(w, "\n%d denials naming gallium-net since the hook was installed:\n", len(st.Denials))
		for _, d := range sortedDenials(st.Denials) {
			fmt.Fprintf(w, "  %s\n", d.Line)
		}
	}
}

// changeTime is a file's ctime (its mtime where the platform has none).
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
