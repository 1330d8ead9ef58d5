package lsm

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseAppArmorLabel(t *testing.T) {
	for in, want := range map[string][2]string{
		"libvirtd (enforce)\n":                   {"libvirtd", "enforce"},
		"libvirtd (complain)":                    {"libvirtd", "complain"},
		"unconfined\n":                           {"unconfined", "unconfined"},
		"libvirtd//qemu_bridge_helper (enforce)": {"libvirtd//qemu_bridge_helper", "enforce"},
		"/usr/sbin/dnsmasq (enforce)":            {"/usr/sbin/dnsmasq", "enforce"},
	} {
		l, m := ParseAppArmorLabel(in)
		if l != want[0] || m != want[1] {
			t.Errorf("ParseAppArmorLabel(%q) = %q, %q; want %q, %q", in, l, m, want[0], want[1])
		}
	}
}

func TestProcessAppArmor(t *testing.T) {
	root := t.TempDir()
	h := Host{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys")}
	if c, err := h.Process(42); err != nil || c.LSM != "" {
		t.Fatalf("no LSM: got %+v, %v", c, err)
	}
	write(t, filepath.Join(h.Sys, "module/apparmor/parameters/enabled"), "Y\n")
	// Before Linux 5.8 only attr/current exists.
	write(t, filepath.Join(h.Proc, "42/attr/current"), "libvirtd (enforce)\n")
	c, err := h.Process(42)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Confinement{LSM: "apparmor", Label: "libvirtd", Mode: "enforce"}, c); diff != "" {
		t.Errorf("Process (-want +got):\n%s", diff)
	}
	if !c.Enforced() || c.String() != "apparmor libvirtd (enforce)" {
		t.Errorf("Enforced %v, String %q", c.Enforced(), c)
	}
	// attr/apparmor/current wins where both exist (stacked LSMs).
	write(t, filepath.Join(h.Proc, "42/attr/apparmor/current"), "unconfined\n")
	if c, _ := h.Process(42); c.Mode != "unconfined" || c.Enforced() {
		t.Errorf("with attr/apparmor/current: %+v", c)
	}
	write(t, filepath.Join(h.Sys, "kernel/security/apparmor/profiles"), "libvirtd (enforce)\nlibvirtd//qemu_bridge_helper (enforce)\nlsb_release (complain)\n")
	got, err := h.LoadedProfiles()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"libvirtd": "enforce", "libvirtd//qemu_bridge_helper": "enforce", "lsb_release": "complain"}, got); diff != "" {
		t.Errorf("LoadedProfiles (-want +got):\n%s", diff)
	}
}

func TestProcessSELinux(t *testing.T) {
	root := t.TempDir()
	h := Host{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys")}
	write(t, filepath.Join(h.Sys, "fs/selinux/enforce"), "1")
	write(t, filepath.Join(h.Sys, "fs/selinux/booleans/virt_hooks_unconfined"), "0 0")
	write(t, filepath.Join(h.Proc, "7/attr/current"), "system_u:system_r:virtqemud_t:s0\x00")
	c, err := h.Process(7)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Confinement{LSM: "selinux", Label: "system_u:system_r:virtqemud_t:s0", Mode: "enforcing"}, c); diff != "" {
		t.Errorf("Process (-want +got):\n%s", diff)
	}
	if on, ok := h.SELinuxBoolean("virt_hooks_unconfined"); on || !ok {
		t.Errorf("virt_hooks_unconfined = %v, %v; want off, present", on, ok)
	}
	if _, ok := h.SELinuxBoolean("nope"); ok {
		t.Error("a missing boolean reads as present")
	}
	write(t, filepath.Join(h.Sys, "fs/selinux/enforce"), "0")
	if m := h.SELinuxMode(); m != "permissive" {
		t.Errorf("mode %q, want permissive", m)
	}
}

func TestDenials(t *testing.T) {
	installed := time.Unix(1764680000, 0)
	kmsg := []string{
		// Before the install: not reported.
		`audit: type=1400 audit(1764679990.100:41): apparmor="DENIED" operation="exec" profile="libvirtd" name="/usr/libexec/gallium-net/gallium-net-hook" pid=900 comm="rpc-worker" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`,
		`audit: type=1400 audit(1764680005.250:42): apparmor="DENIED" operation="exec" profile="libvirtd" name="/usr/libexec/gallium-net/gallium-net-hook" pid=901 comm="rpc-worker" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`,
		// Allowed, or about something else: not denials of gallium-net.
		`audit: type=1400 audit(1764680006.000:43): apparmor="ALLOWED" operation="exec" profile="libvirtd" name="/usr/sbin/gallium-net-hook"`,
		`audit: type=1400 audit(1764680007.000:44): apparmor="DENIED" operation="open" profile="libvirtd" name="/etc/shadow"`,
		`virbr0: port 1(vnet0) entered forwarding state`,
	}
	root := t.TempDir()
	audit := filepath.Join(root, "audit.log")
	write(t, audit, `type=AVC msg=audit(1764680010.500:77): avc:  denied  { execute } for  pid=1200 comm="rpc-virtqemud" name="gallium-net-hook" dev="dm-0" ino=1 scontext=system_u:system_r:virtqemud_t:s0 tcontext=system_u:object_r:bin_t:s0 tclass=file permissive=0
type=SYSCALL msg=audit(1764680010.500:77): arch=c000003e syscall=59 success=no exit=-13
`)
	h := Host{AuditLog: audit, Kmsg: func() ([]string, error) { return kmsg, nil }}
	got, err := h.Denials("gallium-net", installed)
	if err != nil {
		t.Fatal(err)
	}
	want := []Denial{
		{Time: time.Unix(1764680005, 250e6).UTC(), Line: kmsg[1], Enforced: true},
		{Time: time.Unix(1764680010, 500e6).UTC(), Enforced: true, Line: `type=AVC msg=audit(1764680010.500:77): avc:  denied  { execute } for  pid=1200 comm="rpc-virtqemud" name="gallium-net-hook" dev="dm-0" ino=1 scontext=system_u:system_r:virtqemud_t:s0 tcontext=system_u:object_r:bin_t:s0 tclass=file permissive=0`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Denials (-want +got):\n%s", diff)
	}
	if got := ParseDenials([]string{`avc:  denied  { execute } for comm="rpc-virtqemud" name="gallium-net-hook" permissive=1`}, "gallium-net"); len(got) != 1 || got[0].Enforced {
		t.Errorf("a permissive denial: %+v, want one, not enforced", got)
	}
	if SELinuxType("system_u:system_r:virtnetworkd_t:s0") != "virtnetworkd_t" || SELinuxType("bogus") != "" {
		t.Error("SELinuxType")
	}
	// A missing audit log is no error: auditd does not run on most hosts.
	h.AuditLog = filepath.Join(root, "none.log")
	if got, err := h.Denials("gallium-net", installed); err != nil || len(got) != 1 {
		t.Errorf("without audit log: %d denials, %v", len(got), err)
	}
}

// TestReadKmsg reads the real kernel log (root only: /dev/kmsg): it must
// end without blocking and hold records without their header.
func TestReadKmsg(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("/dev/kmsg needs root")
	}
	lines, err := readKmsg()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatal("no record in the kernel log")
	}
	// The header is "PRIO,SEQ,USEC,FLAGS;".
	header := regexp.MustCompile(`^\d+,\d+,\d+,[^;]*;`)
	for _, l := range lines {
		if header.MatchString(l) {
			t.Fatalf("record keeps its header: %q", l)
		}
	}
}
