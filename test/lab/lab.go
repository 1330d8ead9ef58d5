// Package lab is gallium-net's kernel lab (test tier 3, DESIGN.md section
// 5): throwaway QEMU VMs that boot Debian's kernel (bonding, 802.1q, bridge
// VLAN filtering) from a small initramfs under software emulation, with
// virtio NICs on virtual L2 segments that several VMs can share, a guest
// agent that runs commands as root, and cable pulls through the QEMU
// monitor.
//
//	vm, err := lab.Boot(ctx, lab.Config{Name: "hv1", NICs: []lab.NIC{
//		{ID: "hv1-eno1", Segment: "infra", Guest: "eno1"},
//		{ID: "hv1-eno2", Segment: "infra", Guest: "eno2"},
//	}})
//	defer vm.Close()
//	out, code, err := vm.Run(ctx, "ip -br link")
//	err = vm.SetLink("hv1-eno1", false) // pull the cable
//
// See test/lab/README.md.
package lab

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one lab VM.
type Config struct {
	// Name is the VM's hostname and must be unique among the lab's running
	// VMs: lower-case letters, digits and '-', at most 32.
	Name string
	// NICs are virtio-net NICs in this order (PCI slots 0x10, 0x11, ...).
	NICs []NIC
	// MemMB is the guest memory (default 512); CPUs the vCPUs (default 1).
	MemMB int
	CPUs  int
	// Share is a host folder mounted read-write at /host in the guest
	// (9p, -virtfs); Shares adds more.
	Share  string
	Shares []Share
	// BootTimeout bounds boot until the agent answers (default 180 s; a
	// boot takes ~3 s under TCG on an idle machine).
	BootTimeout time.Duration
	// Cmdline is appended to the kernel command line.
	Cmdline string
	// Initrd replaces the lab's initramfs, for a VM that boots something
	// else than the lab's busybox userland (test/cluster boots a Debian
	// root disk through its own small initramfs). The lab kernel is still
	// the one booted, so the initramfs must suit its modules. Empty: the
	// lab's initramfs.
	Initrd string
	// Disks are virtio-blk disks, /dev/vda, /dev/vdb, ... in this order.
	Disks []Disk
	// Reboots lets the guest reboot (and VM.Reset reset it) without
	// QEMU exiting: for a VM whose init survives a reboot (test/cluster's
	// systemd hypervisors). By default a reboot ends QEMU (-no-reboot), so
	// that a lab VM whose agent dies ends instead of booting again.
	Reboots bool
	// GuestNamesNICs: the guest's own boot names the NICs NIC.Guest (udev
	// .link files in test/cluster's hypervisors); Boot only waits for each
	// name with its MAC instead of renaming, which would race udev.
	GuestNamesNICs bool
}

// Disk is a virtio-blk disk of a lab VM.
type Disk struct {
	// Path is the image file on the host (absolute, no commas).
	Path string
	// Format is "raw" (default) or "qcow2".
	Format string
	// Snapshot makes the guest's writes go to a temporary overlay that
	// QEMU drops when it exits: the image never changes, and several VMs
	// can boot the same one at once.
	Snapshot bool
	// ReadOnly attaches the disk read-only.
	ReadOnly bool
}

// NIC is one virtio-net NIC of a lab VM.
type NIC struct {
	// ID is the QEMU device id, the name SetLink takes; unique within the
	// VM. Default "nicI" (I = index).
	ID string
	// Segment names the virtual L2 segment (switch) the NIC is cabled to.
	// NICs of any VMs of the same Lab on the same segment reach each
	// other. Empty: a NIC with no cable at all.
	Segment string
	// MAC of the NIC; default a stable locally administered address derived
	// from the VM name and the index (02:1a:..).
	MAC string
	// Guest is the interface name in the guest; default "ethI".
	Guest string
}

// Share is a host folder mounted in the guest.
type Share struct {
	Host     string
	Guest    string
	ReadOnly bool
}

// Artifacts are what every lab VM boots: kernel and initramfs.
type Artifacts struct {
	Root      string // repository root
	CacheDir  string
	QEMU      string
	BIOS      string // qboot.rom when present (faster than SeaBIOS)
	Kernel    *Kernel
	Initramfs *Initramfs
}

var (
	prepMu   sync.Mutex
	prepared *Artifacts
)

// Prepare fetches the kernel and builds the initramfs (both cached), once
// per process.
func Prepare(ctx context.Context) (*Artifacts, error) {
	prepMu.Lock()
	defer prepMu.Unlock()
	if prepared != nil {
		return prepared, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cache := os.Getenv("GALLIUM_LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(root, "test", "lab", "cache")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	// Several processes (run.sh, go test) may prepare at once.
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	a := &Artifacts{Root: root, CacheDir: cache}
	if a.QEMU, err = exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, errors.New("qemu-system-x86_64 not found: install qemu-system-x86 (test/setup/deps.sh)")
	}
	for _, b := range []string{"/usr/share/qemu/qboot.rom", "/usr/share/qemu/qboot.bin"} {
		if _, err := os.Stat(b); err == nil {
			a.BIOS = b
			break
		}
	}
	if a.Kernel, err = FetchKernel(ctx, cache); err != nil {
		return nil, err
	}
	if a.Initramfs, err = BuildInitramfs(ctx, root, cache, a.Kernel); err != nil {
		return nil, err
	}
	prepared = a
	return a, nil
}

// RepoRoot is the directory of go.mod above the working directory (or
// GALLIUM_LAB_ROOT).
func RepoRoot() (string, error) {
	if r := os.Getenv("GALLIUM_LAB_ROOT"); r != "" {
		return r, nil
	}
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("lab: no go.mod above the working directory")
		}
		d = p
	}
}

// Lab is a set of VMs and the L2 segments between them. Its sockets live
// in a short directory under /tmp (unix socket paths are limited to 108
// bytes).
type Lab struct {
	art *Artifacts

	mu       sync.Mutex
	dir      string
	segments map[string]*Segment
	segRefs  map[string]int
	vms      map[string]*VM
	closed   bool
}

// New prepares the artifacts and returns an empty lab.
func New(ctx context.Context) (*Lab, error) {
	a, err := Prepare(ctx)
	if err != nil {
		return nil, err
	}
	return &Lab{art: a, segments: map[string]*Segment{}, segRefs: map[string]int{}, vms: map[string]*VM{}}, nil
}

var (
	defMu  sync.Mutex
	defLab *Lab
)

// Default is the process-wide lab that the package-level Boot uses.
func Default(ctx context.Context) (*Lab, error) {
	defMu.Lock()
	defer defMu.Unlock()
	if defLab == nil {
		l, err := New(ctx)
		if err != nil {
			return nil, err
		}
		defLab = l
	}
	return defLab, nil
}

// Boot boots a VM in the default lab.
func Boot(ctx context.Context, cfg Config) (*VM, error) {
	l, err := Default(ctx)
	if err != nil {
		return nil, err
	}
	return l.Boot(ctx, cfg)
}

// CloseAll closes every VM of the default lab.
func CloseAll() {
	defMu.Lock()
	l := defLab
	defMu.Unlock()
	if l != nil {
		l.Close()
	}
}

// Artifacts returns what the lab's VMs boot.
func (l *Lab) Artifacts() *Artifacts { return l.art }

// Segment returns the named segment, or nil if no running VM uses it.
func (l *Lab) Segment(name string) *Segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segments[name]
}

// VMs returns the running VMs.
func (l *Lab) VMs() []*VM {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*VM
	for _, k := range sortedKeys(l.vms) {
		out = append(out, l.vms[k])
	}
	return out
}

// Close closes every VM (killing QEMU) and every segment.
func (l *Lab) Close() {
	for _, vm := range l.VMs() {
		vm.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, s := range l.segments {
		s.close()
		delete(l.segments, n)
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
		l.dir = ""
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// labDir returns the lab's socket directory, making it when needed.
// Called with l.mu held.
func (l *Lab) labDir() (string, error) {
	if l.dir == "" {
		removeStaleDirs()
		d, err := os.MkdirTemp("/tmp", "glab-")
		if err != nil {
			return "", err
		}
		os.WriteFile(filepath.Join(d, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o644)
		l.dir = d
	}
	return l.dir, nil
}

// removeStaleDirs removes the directories of labs whose process is gone
// (killed before it could clean up; its QEMUs died with it).
func removeStaleDirs() {
	dirs, _ := filepath.Glob("/tmp/glab-*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			if st, err := os.Stat(d); err == nil && time.Since(st.ModTime()) > time.Hour {
				os.RemoveAll(d)
			}
			continue
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// attach registers a NIC socket on a segment, creating the segment.
// Called with l.mu held.
func (l *Lab) attach(segName, portName, sock string) (*Segment, error) {
	s := l.segments[segName]
	if s == nil {
		sum := sha256.Sum256([]byte(segName))
		safe := regexp.MustCompile(`[^a-zA-Z0-9_-]`).ReplaceAllString(segName, "_")
		if len(safe) > 16 {
			safe = safe[:16]
		}
		path := filepath.Join(l.dir, fmt.Sprintf("seg-%s-%x.sock", safe, sum[:3]))
		var err error
		if s, err = newSegment(segName, path); err != nil {
			return nil, err
		}
		l.segments[segName] = s
	}
	s.addPort(portName, sock)
	l.segRefs[segName]++
	return s, nil
}

// detach is attach's inverse; the last NIC closes the segment, and the
// lab's directory goes when nothing uses it.
func (l *Lab) detach(segName, sock string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.segments[segName]; s != nil {
		s.removePort(sock)
		l.segRefs[segName]--
		if l.segRefs[segName] <= 0 {
			s.close()
			delete(l.segments, segName)
			delete(l.segRefs, segName)
		}
	}
	if len(l.segments) == 0 && len(l.vms) == 0 && l.dir != "" {
		os.RemoveAll(l.dir)
		l.dir = ""
	}
}

// defaultMAC is a stable, locally administered unicast MAC.
// DefaultMAC is the MAC NIC i of VM vm gets when its Config gives none.
func DefaultMAC(vm string, i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", vm, i)))
	return fmt.Sprintf("02:1a:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3])
}

var macRE = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)

func (c *Config) normalize() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("lab: VM name %q: want [a-z0-9-], at most 32", c.Name)
	}
	if c.MemMB == 0 {
		c.MemMB = 512
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 180 * time.Second
	}
	if len(c.NICs) > 14 {
		return fmt.Errorf("lab: %s: at most 14 NICs", c.Name)
	}
	ids := map[string]bool{}
	guests := map[string]bool{}
	for i := range c.NICs {
		n := &c.NICs[i]
		if n.ID == "" {
			n.ID = fmt.Sprintf("nic%d", i)
		}
		if n.Guest == "" {
			n.Guest = fmt.Sprintf("eth%d", i)
		}
		if n.MAC == "" {
			n.MAC = DefaultMAC(c.Name, i)
		}
		n.MAC = strings.ToLower(n.MAC)
		if !macRE.MatchString(n.MAC) {
			return fmt.Errorf("lab: %s: NIC %s: bad MAC %q", c.Name, n.ID, n.MAC)
		}
		if !regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`).MatchString(n.ID) || ids[n.ID] {
			return fmt.Errorf("lab: %s: NIC id %q empty, invalid or repeated", c.Name, n.ID)
		}
		if len(n.Guest) > 15 || strings.ContainsAny(n.Guest, " /:") || guests[n.Guest] {
			return fmt.Errorf("lab: %s: NIC guest name %q invalid or repeated", c.Name, n.Guest)
		}
		ids[n.ID], guests[n.Guest] = true, true
	}
	if c.Share != "" {
		c.Shares = append([]Share{{Host: c.Share, Guest: "/host"}}, c.Shares...)
		c.Share = ""
	}
	if c.Initrd != "" {
		if _, err := os.Stat(c.Initrd); err != nil {
			return fmt.Errorf("lab: %s: initrd: %w", c.Name, err)
		}
	}
	for i := range c.Disks {
		d := &c.Disks[i]
		if d.Format == "" {
			d.Format = "raw"
		}
		if d.Format != "raw" && d.Format != "qcow2" {
			return fmt.Errorf("lab: %s: disk %d: format %q: want raw or qcow2", c.Name, i, d.Format)
		}
		if !filepath.IsAbs(d.Path) || strings.Contains(d.Path, ",") {
			return fmt.Errorf("lab: %s: disk %d: path %q must be absolute, without commas", c.Name, i, d.Path)
		}
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("lab: %s: disk %d: %w", c.Name, i, err)
		}
	}
	for i, s := range c.Shares {
		if !filepath.IsAbs(s.Guest) || strings.ContainsAny(s.Guest, " ,'") || strings.ContainsAny(s.Host, ",") {
			return fmt.Errorf("lab: %s: share %d: guest path must be absolute, no blanks or commas", c.Name, i)
		}
	}
	return nil
}
