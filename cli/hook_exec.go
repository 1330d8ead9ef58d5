package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gallium/gallium-net/plugin/lsm"
)

// hookExecDaemon is whether one libvirt daemon may execute the hook.
type hookExecDaemon struct {
	Name string `json:"name" yaml:"name"`
	// PID is 0 for a daemon that does not run; its confinement is then the
	// loaded AppArmor profile of its name, which it will start under.
	PID         int             `json:"pid,omitempty" yaml:"pid,omitempty"`
	Confinement lsm.Confinement `json:"confinement" yaml:"confinement"`
	// CanExec: "yes", "no" or "unknown".
	CanExec string `json:"canExec" yaml:"canExec"`
	Detail  string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

// hookExecStatus answers "can libvirt execute the hook here?".
type hookExecStatus struct {
	AppArmor bool   `json:"apparmor" yaml:"apparmor"`
	SELinux  string `json:"selinux,omitempty" yaml:"selinux,omitempty"`
	// Daemons are the libvirt daemons that run or will run hooks.
	Daemons []hookExecDaemon `json:"daemons" yaml:"daemons"`
	// Denials are the kernel's denials naming gallium-net since the hook
	// links were placed.
	Denials []lsm.Denial `json:"denials" yaml:"denials"`
	OK      bool         `json:"ok" yaml:"ok"`
	Advice  string       `json:"advice,omitempty" yaml:"advice,omitempty"`
}

// daemonHooks are the hook links each daemon runs: the monolithic libvirtd
// both, the modular daemons their driver's.
func daemonHooks(name, hooksDir string) []string {
	links := hookLinks(hooksDir)
	switch name {
	case "virtqemud":
		return links[:1]
	case "virtnetworkd":
		return links[1:]
	}
	return links
}

// hookExecProbe tries an exec of hook under an AppArmor profile
// (lsm.ProbeExec with this program as the probe).
type hookExecProbe func(profile, hook string) error

func selfProbe(profile, hook string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("probe: own executable: %w", err)
	}
	return lsm.ProbeExec(self, profile, hook)
}

// checkHookExec finds out whether each libvirt daemon (running ones by
// pids, others by the profile they would start under) may execute the
// hook links in hooksDir, and which denials naming gallium-net the kernel
// logged since installed.
func checkHookExec(h lsm.Host, pids map[string]int, hooksDir string, installed time.Time, probe hookExecProbe) hookExecStatus {
	st := hookExecStatus{AppArmor: h.AppArmorEnabled(), SELinux: h.SELinuxMode(), Daemons: []hookExecDaemon{}, Denials: []lsm.Denial{}, OK: true}
	var profiles map[string]string
	if st.AppArmor {
		profiles, _ = h.LoadedProfiles()
	}
	for _, name := range hookDaemons {
		d := hookExecDaemon{Name: name, PID: pids[name]}
		if d.PID != 0 {
			c, err := h.Process(d.PID)
			d.Confinement = c
			if err != nil {
				d.Detail = err.Error()
			}
		} else if mode, ok := profiles[name]; ok {
			d.Confinement = lsm.Confinement{LSM: "apparmor", Label: name, Mode: mode}
			d.Detail = "not running; starts under its profile"
		} else {
			continue // neither runs nor has a profile: nothing to say
		}
		judgeDaemon(&d, daemonHooks(name, hooksDir), h, probe)
		if d.CanExec == "no" {
			st.OK = false
		}
		st.Daemons = append(st.Daemons, d)
	}
	if st.AppArmor || st.SELinux != "" {
		den, err := h.Denials("gallium-net", installed)
		st.Denials = append(st.Denials, den...)
		if err != nil && len(st.Daemons) > 0 {
			st.Advice = fmt.Sprintf("cannot read every log for denials (%v)", err)
		}
		for _, d := range den {
			if d.Enforced {
				st.OK = false
			}
		}
	}
	if !st.OK {
		st.Advice = hookExecAdvice(st)
	}
	return st
}

// judgeDaemon sets whether daemon d may execute the hook links.
func judgeDaemon(d *hookExecDaemon, links []string, h lsm.Host, probe hookExecProbe) {
	c := d.Confinement
	switch {
	case c.LSM == "" || c.Mode == "unconfined":
		d.CanExec = "yes"
		if d.Detail == "" {
			d.Detail = "not confined"
		}
	case c.LSM == "apparmor":
		// complain mode logs but allows; it is still worth the probe, whose
		// would-be denials show in the log.
		d.CanExec = "yes"
		for _, link := range links {
			err := probe(c.Label, link)
			switch {
			case err == nil:
			case errors.Is(err, lsm.ErrDenied):
				d.CanExec = "no"
				d.Detail = fmt.Sprintf("profile %s may not execute %s (%s)", c.Label, link, targetOf(link))
				return
			default:
				d.CanExec = "unknown"
				d.Detail = err.Error()
				return
			}
		}
		if d.Detail == "" {
			d.Detail = fmt.Sprintf("profile %s may execute the hook (tried)", c.Label)
		}
	case c.LSM == "selinux":
		judgeSELinux(d, links, h)
	default:
		d.CanExec = "unknown"
	}
}

// judgeSELinux follows the libvirt policy of Fedora 40+ and RHEL 10
// (packaging/README.md, RHEL notes): a hook runs in its daemon's domain
// unless virtnetworkd runs a file labelled virt_hook_t while
// virt_hooks_unconfined is on; virtd_t (monolithic libvirtd, RHEL 9) is
// unconfined; virtqemud_t is a permissive domain (denials only logged);
// virtnetworkd_t may not execute bin_t files, the hook's label.
func judgeSELinux(d *hookExecDaemon, links []string, h lsm.Host) {
	c := d.Confinement
	domain := lsm.SELinuxType(c.Label)
	switch {
	case c.Mode != "enforcing":
		d.CanExec, d.Detail = "yes", "SELinux permissive: denials are only logged"
	case domain == "virtd_t" || domain == "unconfined_service_t" || domain == "unconfined_t":
		d.CanExec, d.Detail = "yes", domain+" is unconfined"
	case domain == "virtqemud_t":
		d.CanExec, d.Detail = "unknown", "virtqemud_t is a permissive domain in current policies (denials logged, not enforced): see the denials"
	case domain == "virtnetworkd_t":
		on, _ := h.SELinuxBoolean("virt_hooks_unconfined")
		target, err := filepath.EvalSymlinks(links[len(links)-1])
		label := ""
		if err == nil {
			label, err = h.SELinuxFileLabel(target)
		}
		switch {
		case err != nil:
			d.CanExec, d.Detail = "unknown", err.Error()
		case lsm.SELinuxType(label) == "virt_hook_t" && on:
			d.CanExec, d.Detail = "yes", "the hook is labelled virt_hook_t and virt_hooks_unconfined is on: it runs unconfined"
		default:
			d.CanExec = "no"
			d.Detail = fmt.Sprintf("virtnetworkd_t may not execute %s (%s); virt_hooks_unconfined=%v", target, label, on)
		}
	default:
		d.CanExec, d.Detail = "unknown", "no rule known for domain "+domain
	}
}

func targetOf(link string) string {
	if t, err := filepath.EvalSymlinks(link); err == nil {
		return "-> " + t
	}
	return "no target"
}

func hookExecAdvice(st hookExecStatus) string {
	for _, d := range st.Daemons {
		if d.CanExec != "no" {
			continue
		}
		if d.Confinement.LSM == "selinux" {
			return "SELinux does not let virtnetworkd execute the network hook: label it virt_hook_t and turn virt_hooks_unconfined on (semanage fcontext -a -t virt_hook_t /usr/sbin/gallium-net-hook; restorecon -v /usr/sbin/gallium-net-hook; setsebool -P virt_hooks_unconfined on; see /usr/share/doc/gallium-net/README.md, RHEL notes)"
		}
		return fmt.Sprintf("libvirt's %s may not execute the hook, so every domain and network start fails: reinstall the gallium-net package (its hook is /usr/sbin/gallium-net-hook, which Debian's libvirtd profile allows), or allow the hook's target in /etc/apparmor.d/local/usr.sbin.%s and reload the profile", d.Name, d.Name)
	}
	return "the kernel denied gallium-net something since the hook was installed (lines above): look at the profile named in them"
}

// sortedDenials orders denials by time for printing.
func sortedDenials(ds []lsm.Denial) []lsm.Denial {
	out := append([]lsm.Denial(nil), ds...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}
