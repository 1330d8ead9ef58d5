// Package cluster boots "lab hypervisors" for the whole-cluster run: kernel
// lab VMs (test/lab: Debian's kernel under QEMU/TCG, NICs on shared virtual
// L2 segments, the guest agent) that boot a real Debian 12 or Debian 13 root
// disk with systemd, AppArmor, libvirt-daemon-system, QEMU and keepalived
// instead of the lab's busybox initramfs, so that gallium-net's .deb can be
// installed and used in them the way an operator would on a hypervisor, and
// the hypervisors rebooted.
//
//	img, err := cluster.BuildImage(ctx, cluster.Bookworm) // test/cluster/rootfs.sh, cached
//	l, err := lab.New(ctx)
//	hv, err := cluster.Boot(ctx, l, img, cluster.Config{Name: "hv1", NICs: ...})
//	defer hv.Close()
//	out, err := hv.MustRun(ctx, "virsh -c qemu:///system list --all")
//
// See test/cluster/README.md.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/test/lab"
)

// Image is what a lab hypervisor boots: the Debian root disk image and the
// boot initramfs that mounts it (both built by rootfs.sh).
type Image struct {
	Suite   Suite
	RootFS  string // raw ext4 image, attached as a snapshot (never written)
	Initrd  string
	Release string // kernel release of the modules in the image
	// Caps is where Boot saves libvirtd's QEMU capabilities after the
	// first boot of this image; rootfs.sh puts them into the initramfs.
	Caps string
	// AACache is where Boot saves AppArmor's compiled profiles after the
	// first boot (cache.tar); rootfs.sh puts them into the initramfs.
	AACache string
	// BuildTime is how long rootfs.sh took (seconds when cached).
	BuildTime time.Duration
	// Size is the image's apparent size; OnDisk what it uses (it is sparse).
	Size, OnDisk int64
}

// Suite is the Debian release of a lab hypervisor's image.
type Suite string

// The two releases a Gallium hypervisor runs.
const (
	Bookworm Suite = "bookworm" // Debian 12, libvirt 9.0
	Trixie   Suite = "trixie"   // Debian 13, libvirt 11.3
)

// BuildImage runs test/cluster/rootfs.sh (as root) for suite, which builds
// the image or reuses the cached one, and checks that its modules match the
// kernel the lab boots. Both releases boot the kernel lab's kernel
// (Debian 12's).
func BuildImage(ctx context.Context, suite Suite) (*Image, error) {
	art, err := lab.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	k := art.Kernel
	deb, err := kernelDeb(art)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(art.Root, "test", "cluster", "rootfs.sh"))
	cmd.Dir = art.Root
	cmd.Env = append(os.Environ(), "GALLIUM_KERNEL_DEB="+deb, "GALLIUM_CLUSTER_SUITE="+string(suite))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("test/cluster/rootfs.sh: %v: %s", err, tailLines(stderr.String(), 30))
	}
	img := &Image{Suite: suite, BuildTime: time.Since(start)}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "ROOTFS":
			img.RootFS = v
		case "INITRD":
			img.Initrd = v
		case "RELEASE":
			img.Release = v
		case "CAPS":
			img.Caps = v
		case "AACACHE":
			img.AACache = v
		}
	}
	if img.RootFS == "" || img.Initrd == "" {
		return nil, fmt.Errorf("test/cluster/rootfs.sh printed no ROOTFS= or INITRD= line: %s", out)
	}
	if img.Release != k.Release {
		return nil, fmt.Errorf("root image has modules for kernel %s but the lab boots %s: remove /var/cache/gallium-net-lab/cluster and run again", img.Release, k.Release)
	}
	st, err := os.Stat(img.RootFS)
	if err != nil {
		return nil, err
	}
	img.Size = st.Size()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		img.OnDisk = sys.Blocks * 512
	}
	return img, nil
}

// kernelDeb is the kernel package the lab's kernel was extracted from
// (kept in the lab cache's debs/ folder).
func kernelDeb(a *lab.Artifacts) (string, error) {
	k := a.Kernel
	ms, _ := filepath.Glob(filepath.Join(a.CacheDir, "debs", k.Package+"_*.deb"))
	for _, m := range ms {
		out, err := exec.Command("dpkg-deb", "-f", m, "Version").Output()
		if err == nil && strings.TrimSpace(string(out)) == k.Version {
			return m, nil
		}
	}
	return "", fmt.Errorf("the lab kernel's package %s %s is not in %s/debs: run test/lab/fetch-kernel.sh", k.Package, k.Version, a.CacheDir)
}

// Config describes one lab hypervisor.
type Config struct {
	// Name is the hostname and the lab VM's name ([a-z0-9-], at most 32).
	Name string
	// NICs as in lab.Config (guest names are set by MAC after boot).
	NICs []lab.NIC
	// MemMB defaults to 1024: libvirtd, a nested QEMU and etcd need more
	// than the kernel lab's 512.
	MemMB int
	// CPUs defaults to 1 (TCG on a 2-core machine: more vCPUs than cores
	// across three hypervisors only adds contention).
	CPUs int
	// Shares are host folders mounted in the guest (9p).
	Shares []lab.Share
	// ReadyTimeout bounds boot until libvirtd answers (default 5 min).
	ReadyTimeout time.Duration
}

// Hypervisor is a running lab hypervisor.
type Hypervisor struct {
	*lab.VM
	Suite Suite
	// Ready is from starting QEMU to libvirtd answering on qemu:///system
	// (the agent answering is VM.BootTime).
	Ready time.Duration
}

// LibvirtURI is the connection URI inside a lab hypervisor.
const LibvirtURI = "qemu:///system"

// Boot boots a lab hypervisor in l from img and waits until libvirtd
// answers. On error nothing is left running.
func Boot(ctx context.Context, l *lab.Lab, img *Image, cfg Config) (*Hypervisor, error) {
	if cfg.MemMB == 0 {
		cfg.MemMB = 1024
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 5 * time.Minute
	}
	// udev names the NICs at every boot (rootfs.sh writes a .link file per
	// gallium.nic=NAME,MAC), so that they keep their names across reboots
	// before gallium-net-host.service looks for them.
	cmdline := "root=/dev/vda"
	cfg.NICs = append([]lab.NIC(nil), cfg.NICs...)
	for i, n := range cfg.NICs {
		if n.MAC == "" {
			cfg.NICs[i].MAC = lab.DefaultMAC(cfg.Name, i)
		}
		if n.Guest == "" {
			return nil, fmt.Errorf("lab hypervisor %s: NIC %d has no guest name", cfg.Name, i)
		}
		cmdline += " gallium.nic=" + n.Guest + "," + cfg.NICs[i].MAC
	}
	start := time.Now()
	vm, err := l.Boot(ctx, lab.Config{
		Name:    cfg.Name,
		NICs:    cfg.NICs,
		MemMB:   cfg.MemMB,
		CPUs:    cfg.CPUs,
		Shares:  cfg.Shares,
		Initrd:  img.Initrd,
		Disks:   []lab.Disk{{Path: img.RootFS, Snapshot: true}},
		Reboots: true,
		// udev names them (above); the lab's own renaming would race it.
		GuestNamesNICs: true,
		// systemd's boot under TCG takes minutes with three at once.
		BootTimeout: 6 * time.Minute,
		Cmdline:     cmdline,
	})
	if err != nil {
		return nil, fmt.Errorf("lab hypervisor %s: %w", cfg.Name, err)
	}
	hv := &Hypervisor{VM: vm, Suite: img.Suite}
	if err := hv.WaitLibvirt(ctx, cfg.ReadyTimeout); err != nil {
		vm.Close()
		return nil, err
	}
	hv.Ready = time.Since(start)
	if err := hv.saveCaps(ctx, img.Caps); err != nil {
		// Only a later boot's speed depends on it.
		fmt.Fprintf(os.Stderr, "cluster: %s: libvirt capabilities not saved: %v\n", cfg.Name, err)
	}
	if err := hv.saveAACache(ctx, img.AACache); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %s: AppArmor cache not saved: %v\n", cfg.Name, err)
	}
	return hv, nil
}

// WaitLibvirt waits until libvirtd (socket-activated by systemd) answers on
// qemu:///system. virsh version needs the QEMU driver's capabilities, which
// libvirtd probes by starting QEMU once: ready means VMs can be defined.
func (h *Hypervisor) WaitLibvirt(ctx context.Context, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := fmt.Sprintf(`i=0; until virsh -c %s version >/dev/null 2>&1; do
	i=$((i+1)); [ $i -lt %d ] || { echo "libvirtd does not answer"; systemctl status --no-pager libvirtd.socket libvirtd.service; journalctl -b -n 20 --no-pager -u libvirtd; exit 1; }; sleep 0.2; done`,
		LibvirtURI, int(timeout/(200*time.Millisecond)))
	if out, err := h.MustRun(rctx, wait); err != nil {
		return fmt.Errorf("lab hypervisor %s: libvirtd not ready: %w: %s", h.Name, err, out)
	}
	return nil
}

// saveAACache saves AppArmor's compiled profiles (/var/cache/apparmor, as
// apparmor.service left them at this boot) into dir/cache.tar when dir has
// none yet; see rootfs.sh.
func (h *Hypervisor) saveAACache(ctx context.Context, dir string) error {
	if dir == "" {
		return nil
	}
	tarPath := filepath.Join(dir, "cache.tar")
	if _, err := os.Stat(tarPath); err == nil {
		return nil
	}
	// apparmor.service has run when libvirtd answers (libvirtd's unit is
	// ordered after it); wait for it to be done all the same.
	out, err := h.MustRun(ctx, `systemctl is-active -q apparmor.service && [ -n "$(ls /var/cache/apparmor)" ] && tar -C /var/cache/apparmor -c . | base64 -w0`)
	if err != nil {
		return err
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("apparmor cache: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(tarPath, data, 0o644)
}

// capsDir is where libvirtd keeps its probed QEMU capabilities.
const capsDir = "/var/cache/libvirt/qemu/capabilities"

// saveCaps copies libvirtd's probed QEMU capabilities out of the guest into
// dir when dir has none yet, so that the next rootfs.sh run puts them into
// the boot initramfs (see rootfs.sh).
func (h *Hypervisor) saveCaps(ctx context.Context, dir string) error {
	if dir == "" {
		return nil
	}
	if have, _ := filepath.Glob(filepath.Join(dir, "*.xml")); len(have) > 0 {
		return nil
	}
	out, err := h.MustRun(ctx, "cd "+capsDir+" && ls *.xml")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range strings.Fields(out) {
		data, err := h.MustRun(ctx, "cat "+capsDir+"/"+name)
		if err != nil {
			return err
		}
		if !strings.Contains(data, "<qemuCaps>") {
			return fmt.Errorf("%s/%s is not a capabilities file", capsDir, name)
		}
		// Several hypervisors may save at once: whole files only.
		if err := atomicfile.Write(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// InstallDeb installs a .deb that the guest sees at guestPath (through a
// share) with dpkg -i, and returns dpkg's output.
func (h *Hypervisor) InstallDeb(ctx context.Context, guestPath string) (string, error) {
	out, err := h.MustRun(ctx, "dpkg -i '"+guestPath+"' 2>&1")
	if err != nil {
		return out, fmt.Errorf("dpkg -i %s on %s: %w", guestPath, h.Name, err)
	}
	return out, nil
}

// Virsh runs virsh against the guest's libvirtd and returns its output; a
// non-zero exit is an error with the output.
func (h *Hypervisor) Virsh(ctx context.Context, args string) (string, error) {
	return h.MustRun(ctx, "virsh -c "+LibvirtURI+" "+args+" 2>&1")
}

// LatestDeb returns the newest gallium-net .deb in the repository's dist/
// (written by make packages), or an error that says to build it.
func LatestDeb(repoRoot string) (string, error) {
	ms, _ := filepath.Glob(filepath.Join(repoRoot, "dist", "gallium-net_*_amd64.deb"))
	var best string
	var bestT time.Time
	for _, m := range ms {
		if st, err := os.Stat(m); err == nil && st.ModTime().After(bestT) {
			best, bestT = m, st.ModTime()
		}
	}
	if best == "" {
		return "", errors.New("no dist/gallium-net_*_amd64.deb: run make packages")
	}
	return best, nil
}

func tailLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
