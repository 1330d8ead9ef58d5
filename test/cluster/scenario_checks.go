package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// userlandScript prints what a lab hypervisor is, one KEY=VALUE a line,
// for checkUserland (one agent call per hypervisor).
const userlandScript = `echo "kernel=$(uname -r)"
echo "debian=$(cat /etc/debian_version)"
echo "hostname=$(hostname)"
echo "cgroup=$(stat -f -c %T /sys/fs/cgroup)"
for m in bonding 8021q bridge tun; do modprobe -n $m >/dev/null 2>&1 && echo "module-$m=ok"; done
for b in keepalived qemu-system-x86_64 virsh libvirtd modprobe ssh sshd; do command -v $b >/dev/null && echo "bin-$b=ok"; done
echo "pid1=$(cat /proc/1/comm)"
echo "libvirtds=$(pgrep -xc libvirtd)"
echo "units=$(systemctl is-active libvirtd.service libvirtd.socket virtlogd.socket apparmor.service | tr '\n' ' ')"
echo "confined=$(cat /proc/$(pidof libvirtd)/attr/current)"`

// checkUserland is what each lab hypervisor must be before the package
// goes in: the lab's kernel, its Debian release, its name, cgroup v2, the
// kernel modules gallium-net and libvirt load on demand, the binaries,
// systemd as PID 1 with one libvirtd from its socket, confined by
// AppArmor. release is the kernel the lab boots, debian the release's
// prefix ("12.", "13.").
func checkUserland(ctx context.Context, h *Hypervisor, release, debian string) error {
	out, err := run(ctx, h, userlandScript)
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	want := map[string]func(string) bool{
		"kernel":    func(v string) bool { return v == release },
		"debian":    func(v string) bool { return strings.HasPrefix(v, debian) },
		"hostname":  func(v string) bool { return v == h.Name },
		"cgroup":    func(v string) bool { return v == "cgroup2fs" },
		"pid1":      func(v string) bool { return v == "systemd" },
		"libvirtds": func(v string) bool { return v == "1" },
		"units":     func(v string) bool { return v == "active active active active" },
		"confined":  func(v string) bool { return v == "libvirtd (enforce)" },
	}
	for _, m := range []string{"bonding", "8021q", "bridge", "tun"} {
		want["module-"+m] = func(v string) bool { return v == "ok" }
	}
	for _, b := range []string{"keepalived", "qemu-system-x86_64", "virsh", "libvirtd", "modprobe", "ssh", "sshd"} {
		want["bin-"+b] = func(v string) bool { return v == "ok" }
	}
	var bad []string
	for k, ok := range want {
		if !ok(got[k]) {
			bad = append(bad, fmt.Sprintf("%s=%q", k, got[k]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s is not the lab hypervisor it should be: %s\n%s", h.Name, strings.Join(bad, ", "), out)
	}
	return nil
}

// debVersion is what the package's gallium-net prints for --version run
// on this host: every hypervisor must print the same.
func debVersion(deb string) (string, error) {
	d, err := os.MkdirTemp("", "gallium-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(d)
	if out, err := exec.Command("dpkg-deb", "-x", deb, d).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	out, err := exec.Command(filepath.Join(d, "usr", "bin", "gallium-net"), "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: gallium-net --version: %v: %s", deb, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// checkInstalled is the package on h: the same binary as the .deb's, both
// hook links to /usr/sbin/gallium-net-hook, and libvirtd answering after
// the postinst's reload (the VM starts later prove that libvirt runs the
// hook).
func checkInstalled(ctx context.Context, h *Hypervisor, version string) error {
	out, err := run(ctx, h, "gallium-net --version; readlink /etc/libvirt/hooks/qemu.d/gallium-net /etc/libvirt/hooks/network.d/gallium-net; test -x /usr/sbin/gallium-net-hook && echo hook-executable")
	if err != nil {
		return err
	}
	want := version + "\n/usr/sbin/gallium-net-hook\n/usr/sbin/gallium-net-hook\nhook-executable"
	if strings.TrimSpace(out) != want {
		return fmt.Errorf("%s after dpkg -i:\n%s\nwant:\n%s", h.Name, out, want)
	}
	if _, err := h.Virsh(ctx, "version"); err != nil {
		return fmt.Errorf("%s: libvirtd after the package's reload: %w", h.Name, err)
	}
	return nil
}
