package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/lsm"
)

func writeTree(t *testing.T, files map[string]string) {
	t.Helper()
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A host as the issue found it: AppArmor confines libvirtd, whose profile
// may execute /usr/sbin/* but not /usr/libexec/*.
func TestCheckHookExecAppArmor(t *testing.T) {
	root := t.TempDir()
	h := lsm.Host{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys"), Kmsg: func() ([]string, error) { return nil, nil }}
	writeTree(t, map[string]string{
		filepath.Join(h.Sys, "module/apparmor/parameters/enabled"):      "Y\n",
		filepath.Join(h.Sys, "kernel/security/apparmor/profiles"):       "libvirtd (enforce)\nvirtqemud (complain)\n",
		filepath.Join(h.Proc, "100/attr/apparmor/current"):              "libvirtd (enforce)\n",
		filepath.Join(root, "usr/sbin/gallium-net-hook"):                "#!/bin/sh\n",
		filepath.Join(root, "usr/libexec/gallium-net/gallium-net-hook"): "#!/bin/sh\n",
	})
	hooks := filepath.Join(root, "etc/libvirt/hooks")
	link := func(target string) {
		for _, l := range hookLinks(hooks) {
			os.MkdirAll(filepath.Dir(l), 0o755)
			os.Remove(l)
			if err := os.Symlink(target, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	var probed []string
	probe := func(profile, hook string) error {
		probed = append(probed, profile+" "+hook)
		if target, _ := filepath.EvalSymlinks(hook); strings.Contains(target, "/usr/libexec/") {
			return lsm.ErrDenied
		}
		return nil
	}

	link(filepath.Join(root, "usr/libexec/gallium-net/gallium-net-hook"))
	st := checkHookExec(h, map[string]int{"libvirtd": 100}, hooks, time.Now(), probe)
	if st.OK || !st.AppArmor {
		t.Fatalf("old layout: OK=%v AppArmor=%v, want not OK under AppArmor", st.OK, st.AppArmor)
	}
	if len(st.Daemons) != 2 || st.Daemons[0].Name != "libvirtd" || st.Daemons[0].CanExec != "no" {
		t.Fatalf("daemons %+v", st.Daemons)
	}
	// virtqemud does not run, but its profile is loaded: it would start
	// under it, and complain mode is still probed.
	if d := st.Daemons[1]; d.Name != "virtqemud" || d.PID != 0 || d.Confinement.Mode != "complain" {
		t.Errorf("virtqemud %+v", d)
	}
	if !strings.Contains(st.Advice, "/usr/sbin/gallium-net-hook") {
		t.Errorf("advice does not name the fix: %q", st.Advice)
	}

	probed = nil
	link(filepath.Join(root, "usr/sbin/gallium-net-hook"))
	st = checkHookExec(h, map[string]int{"libvirtd": 100}, hooks, time.Now(), probe)
	if !st.OK || st.Daemons[0].CanExec != "yes" || st.Advice != "" {
		t.Fatalf("new layout: %+v", st)
	}
	want := []string{"libvirtd " + hookLinks(hooks)[0], "libvirtd " + hookLinks(hooks)[1], "virtqemud " + hookLinks(hooks)[0]}
	if diff := cmp.Diff(want, probed); diff != "" {
		t.Errorf("probes (-want +got):\n%s", diff)
	}

	// A probe that cannot tell is "unknown", not a failure.
	st = checkHookExec(h, map[string]int{"libvirtd": 100}, hooks, time.Now(), func(string, string) error { return errors.New("no attr/exec") })
	if !st.OK || st.Daemons[0].CanExec != "unknown" {
		t.Errorf("probe error: %+v", st)
	}

	// A denial logged after the install fails the check and is listed.
	installed := time.Unix(1764680000, 0)
	h.Kmsg = func() ([]string, error) {
		return []string{`audit: type=1400 audit(1764680005.250:42): apparmor="DENIED" operation="open" profile="libvirtd" name="/run/gallium-net/hook/x" comm="gallium-net-hoo"`}, nil
	}
	st = checkHookExec(h, map[string]int{"libvirtd": 100}, hooks, installed, probe)
	if st.OK || len(st.Denials) != 1 || !strings.Contains(st.Advice, "denied") {
		t.Errorf("denial after install: %+v", st)
	}
}

func TestCheckHookExecSELinux(t *testing.T) {
	root := t.TempDir()
	labels := map[string]string{}
	h := lsm.Host{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys"), Kmsg: func() ([]string, error) { return nil, nil },
		FileLabel: func(p string) (string, error) { return labels[p], nil }}
	target := filepath.Join(root, "usr/sbin/gallium-net-hook")
	writeTree(t, map[string]string{
		filepath.Join(h.Sys, "fs/selinux/enforce"):                        "1",
		filepath.Join(h.Sys, "fs/selinux/booleans/virt_hooks_unconfined"): "0 0",
		filepath.Join(h.Proc, "7/attr/current"):                           "system_u:system_r:virtqemud_t:s0\x00",
		filepath.Join(h.Proc, "8/attr/current"):                           "system_u:system_r:virtnetworkd_t:s0\x00",
		target:                                                            "#!/bin/sh\n",
	})
	hooks := filepath.Join(root, "etc/libvirt/hooks")
	for _, l := range hookLinks(hooks) {
		os.MkdirAll(filepath.Dir(l), 0o755)
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
	}
	noProbe := func(string, string) error { t.Error("AppArmor probe under SELinux"); return nil }
	labels[target] = "system_u:object_r:bin_t:s0"
	st := checkHookExec(h, map[string]int{"virtqemud": 7, "virtnetworkd": 8}, hooks, time.Now(), noProbe)
	got := map[string]string{}
	for _, d := range st.Daemons {
		got[d.Name] = d.CanExec
	}
	if diff := cmp.Diff(map[string]string{"virtqemud": "unknown", "virtnetworkd": "no"}, got); diff != "" || st.OK {
		t.Errorf("bin_t, boolean off: OK=%v (-want +got):\n%s", st.OK, diff)
	}
	if !strings.Contains(st.Advice, "virt_hook_t") {
		t.Errorf("advice %q", st.Advice)
	}
	labels[target] = "system_u:object_r:virt_hook_t:s0"
	writeTree(t, map[string]string{filepath.Join(h.Sys, "fs/selinux/booleans/virt_hooks_unconfined"): "1 1"})
	st = checkHookExec(h, map[string]int{"virtqemud": 7, "virtnetworkd": 8}, hooks, time.Now(), noProbe)
	if !st.OK || st.Daemons[1].CanExec != "yes" {
		t.Errorf("virt_hook_t, boolean on: %+v", st)
	}
}

// TestProbeExecUnconfined runs the real two-stage probe of this test binary
// against a hook on a host without AppArmor: the first stage cannot ask
// for a profile there, which the probe reports instead of claiming either
// answer.
func TestProbeExecStages(t *testing.T) {
	if lsm.System().AppArmorEnabled() {
		t.Skip("this host runs AppArmor: the lab hypervisor test covers the probe")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	err = lsm.ProbeExec(self, "libvirtd", "/bin/true")
	if err == nil || errors.Is(err, lsm.ErrDenied) {
		t.Fatalf("probe without AppArmor: %v, want an error that is not a denial", err)
	}
}

func TestMain(m *testing.M) {
	lsm.RunProbeStage(os.Args)
	os.Exit(m.Run())
}
