// Package lsm tells whether the Linux security modules of a host (AppArmor,
// SELinux) let libvirt's daemons execute gallium-net's hook.
//
// On a default Debian host AppArmor confines libvirtd, and its profile lets
// it execute only what it lists; a hook it may not execute makes every
// domain and network start fail, and a libvirtd restart kill running VMs
// (their reconnect hook fails). The questions here are asked from the
// outside, by the CLI, never by the hook: what confines each daemon, may
// that confinement execute the hook (tried for real: ProbeExec), and has
// the kernel logged a denial that names gallium-net.
package lsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host is where the files this package reads live; tests point it at a
// tree of their own.
type Host struct {
	Proc, Sys string
	// AuditLog is auditd's log (denials go there, not to the kernel log,
	// while auditd runs).
	AuditLog string
	// Kmsg reads the kernel log's records; nil means /dev/kmsg.
	Kmsg func() ([]string, error)
	// FileLabel reads a file's SELinux label; nil means its
	// security.selinux attribute.
	FileLabel func(path string) (string, error)
}

// SELinuxFileLabel is the SELinux label of path (after links).
func (h Host) SELinuxFileLabel(path string) (string, error) {
	if h.FileLabel != nil {
		return h.FileLabel(path)
	}
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, "security.selinux", buf)
	if err != nil {
		return "", &os.PathError{Op: "getxattr security.selinux", Path: path, Err: err}
	}
	return strings.TrimRight(string(buf[:n]), "\x00"), nil
}

// SELinuxType is the type field of an SELinux context
// ("system_u:system_r:virtqemud_t:s0" -> "virtqemud_t").
func SELinuxType(context string) string {
	f := strings.Split(context, ":")
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

// System is the running host.
func System() Host {
	return Host{Proc: "/proc", Sys: "/sys", AuditLog: "/var/log/audit/audit.log"}
}

// Confinement is what confines one process.
type Confinement struct {
	// LSM is "apparmor", "selinux" or "" (none active).
	LSM string `json:"lsm" yaml:"lsm"`
	// Label is the AppArmor profile ("libvirtd") or the SELinux context.
	Label string `json:"label,omitempty" yaml:"label,omitempty"`
	// Mode is AppArmor's "enforce", "complain" or "unconfined", or
	// SELinux's "enforcing" or "permissive" (the host's mode).
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty"`
}

// Enforced is true when the confinement can refuse something.
func (c Confinement) Enforced() bool {
	return c.Mode == "enforce" || c.Mode == "enforcing"
}

func (c Confinement) String() string {
	switch {
	case c.LSM == "":
		return "no LSM"
	case c.Label == "":
		return c.LSM + " " + c.Mode
	}
	return fmt.Sprintf("%s %s (%s)", c.LSM, c.Label, c.Mode)
}

// AppArmorEnabled is true when the kernel runs AppArmor.
func (h Host) AppArmorEnabled() bool {
	b, err := os.ReadFile(filepath.Join(h.Sys, "module", "apparmor", "parameters", "enabled"))
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// SELinuxMode is "enforcing", "permissive", or "" when SELinux is off.
func (h Host) SELinuxMode() string {
	b, err := os.ReadFile(filepath.Join(h.Sys, "fs", "selinux", "enforce"))
	if err != nil {
		return ""
	}
	if strings.TrimSpace(string(b)) == "1" {
		return "enforcing"
	}
	return "permissive"
}

// SELinuxBoolean reads a policy boolean; ok is false when it does not exist.
func (h Host) SELinuxBoolean(name string) (on, ok bool) {
	b, err := os.ReadFile(filepath.Join(h.Sys, "fs", "selinux", "booleans", name))
	if err != nil {
		return false, false
	}
	// "CURRENT PENDING", e.g. "1 1".
	f := strings.Fields(string(b))
	return len(f) > 0 && f[0] == "1", len(f) > 0
}

// Process says what confines process pid.
func (h Host) Process(pid int) (Confinement, error) {
	if h.AppArmorEnabled() {
		// attr/apparmor/current since Linux 5.8, where several LSMs stack;
		// attr/current before.
		for _, f := range []string{"attr/apparmor/current", "attr/current"} {
			b, err := os.ReadFile(filepath.Join(h.Proc, strconv.Itoa(pid), f))
			if err == nil {
				label, mode := ParseAppArmorLabel(string(b))
				return Confinement{LSM: "apparmor", Label: label, Mode: mode}, nil
			}
		}
		return Confinement{LSM: "apparmor"}, fmt.Errorf("process %d: no AppArmor label readable in %s", pid, h.Proc)
	}
	if mode := h.SELinuxMode(); mode != "" {
		b, err := os.ReadFile(filepath.Join(h.Proc, strconv.Itoa(pid), "attr", "current"))
		if err != nil {
			return Confinement{LSM: "selinux", Mode: mode}, fmt.Errorf("process %d: SELinux context: %w", pid, err)
		}
		return Confinement{LSM: "selinux", Label: strings.TrimRight(string(b), "\x00\n"), Mode: mode}, nil
	}
	return Confinement{}, nil
}

// ParseAppArmorLabel splits an AppArmor task label such as
// "libvirtd (enforce)" into the profile and its mode; "unconfined" has the
// mode "unconfined".
func ParseAppArmorLabel(s string) (label, mode string) {
	s = strings.TrimRight(s, "\x00\n ")
	if s == "unconfined" || s == "" {
		return "unconfined", "unconfined"
	}
	if i := strings.LastIndex(s, " ("); i > 0 && strings.HasSuffix(s, ")") {
		return s[:i], s[i+2 : len(s)-1]
	}
	return s, "enforce"
}

// Denial is one line in which the kernel refused something to a process.
type Denial struct {
	// Time is the audit record's time (zero when the line has none).
	Time time.Time `json:"time" yaml:"time"`
	Line string    `json:"line" yaml:"line"`
	// Enforced is false for an SELinux denial in a permissive domain or
	// mode (permissive=1): logged, but allowed.
	Enforced bool `json:"enforced" yaml:"enforced"`
}

// auditStamp is the "audit(SECONDS.MILLIS:SERIAL)" of an audit record.
var auditStamp = regexp.MustCompile(`audit\((\d+)\.(\d+):\d+\)`)

// ParseDenials picks the AppArmor and SELinux denials that mention what
// (a path or program name) out of kernel or audit log lines, in order.
func ParseDenials(lines []string, what string) []Denial {
	var out []Denial
	for _, l := range lines {
		if !strings.Contains(l, what) {
			continue
		}
		if !strings.Contains(l, `apparmor="DENIED"`) && !strings.Contains(l, "avc:  denied") && !strings.Contains(l, "avc: denied") {
			continue
		}
		d := Denial{Line: strings.TrimSpace(l), Enforced: !strings.Contains(l, "permissive=1")}
		if m := auditStamp.FindStringSubmatch(l); m != nil {
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			ms, _ := strconv.ParseInt(m[2], 10, 64)
			d.Time = time.Unix(sec, ms*int64(time.Millisecond)).UTC()
		}
		out = append(out, d)
	}
	return out
}

// Denials returns the denials naming what that were logged at or after
// since, from the kernel log and auditd's log. A denial without a time is
// kept (it cannot be placed). An unreadable source is reported in err
// while the others still count.
func (h Host) Denials(what string, since time.Time) ([]Denial, error) {
	var lines []string
	var errs []error
	read := h.Kmsg
	if read == nil {
		read = readKmsg
	}
	if l, err := read(); err != nil {
		errs = append(errs, fmt.Errorf("kernel log: %w", err))
	} else {
		lines = append(lines, l...)
	}
	if h.AuditLog != "" {
		l, err := tailLines(h.AuditLog, 8<<20)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("audit log: %w", err))
		}
		lines = append(lines, l...)
	}
	var out []Denial
	for _, d := range ParseDenials(lines, what) {
		if d.Time.IsZero() || !d.Time.Before(since.Truncate(time.Second)) {
			out = append(out, d)
		}
	}
	return out, errors.Join(errs...)
}

// readKmsg reads the kernel's log buffer from /dev/kmsg without blocking:
// one record per read, "PRIO,SEQ,USEC,FLAGS;MESSAGE".
func readKmsg() ([]string, error) {
	// Raw syscalls: through package os the descriptor would go to the
	// runtime's poller, which waits for the next record instead of
	// returning EAGAIN at the end of the buffer.
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/kmsg", Err: err}
	}
	defer syscall.Close(fd)
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return out, nil // the whole buffer is read
		case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EINTR):
			continue // a record was overwritten while reading; go on
		case err != nil:
			return out, &os.PathError{Op: "read", Path: "/dev/kmsg", Err: err}
		case n <= 0:
			return out, nil
		}
		rec := buf[:n]
		if i := bytes.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		if i := bytes.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i]
		}
		out = append(out, string(rec))
	}
}

// tailLines reads at most the last max bytes of a file, as lines.
func tailLines(path string, max int64) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// LoadedProfiles lists the AppArmor profiles the kernel holds, with their
// modes ("libvirtd" -> "enforce"): a daemon that does not run yet will run
// under the profile of its name when one is loaded.
func (h Host) LoadedProfiles() (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(h.Sys, "kernel", "security", "apparmor", "profiles"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			label, mode := ParseAppArmorLabel(l)
			out[label] = mode
		}
	}
	return out, nil
}
