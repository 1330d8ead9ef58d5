package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gallium/gallium-net/plugin/atomicfile"
)

// initScript is the lab VM's /init: mount the usual file systems, load the
// kernel modules in dependency order, bring up lo, then become the agent.
// NIC names, shares and the hostname are set by the host through the agent
// right after boot (see VM.setup).
const initScript = `#!/bin/sh
# gallium-net kernel lab /init (written by test/lab/initramfs.go)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /mnt /var /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sf /run /var/run
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
while read -r name args; do
	insmod /lib/modules/$(uname -r)/$name.ko $args || echo "lab-init: insmod $name failed" >/dev/console
done </etc/lab-modules
ip link set lo up
echo "lab-init: up in $(cut -d' ' -f1 /proc/uptime)s" >/dev/console
exec /sbin/gallium-lab-agent
`

// hostTools are dynamically linked host binaries copied into the
// initramfs with their libraries when present (iproute2's ip and bridge,
// which know bonds and bridge VLANs, unlike busybox's ip).
var hostTools = []string{"ip", "bridge", "tc"}

// Initramfs is a built lab initramfs.
type Initramfs struct {
	Path string
	Hash string
	Size int64
}

type cpioFile struct {
	path   string // inside the archive, no leading /
	mode   uint32 // type and permission bits
	data   []byte
	target string // symlinks
}

// buildGuestBinaries builds the agent and labtool, static, into dir.
func buildGuestBinaries(ctx context.Context, root, dir string) (agent, labtool string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	for _, b := range []struct{ pkg, out string }{
		{"./test/lab/agent", filepath.Join(dir, "gallium-lab-agent")},
		{"./test/lab/labtool", filepath.Join(dir, "labtool")},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v: %s", b.pkg, err, tail(out, 2000))
		}
	}
	return filepath.Join(dir, "gallium-lab-agent"), filepath.Join(dir, "labtool"), nil
}

// BuildInitramfs assembles the lab initramfs (busybox-static, the kernel's
// modules, the agent, labtool, iproute2, /init) and caches it under
// cacheDir/initramfs/ by the hash of its content.
func BuildInitramfs(ctx context.Context, root, cacheDir string, k *Kernel) (*Initramfs, error) {
	agent, labtool, err := buildGuestBinaries(ctx, root, filepath.Join(cacheDir, "build"))
	if err != nil {
		return nil, err
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox not found: install busybox-static (test/setup/deps.sh)")
	}
	if out, _ := exec.Command("file", "-L", busybox).Output(); bytes.Contains(out, []byte("dynamically linked")) {
		return nil, fmt.Errorf("%s is dynamically linked: install busybox-static", busybox)
	}

	var files []cpioFile
	have := map[string]bool{}
	dir := func(p string) {
		for d := p; d != "." && d != "/" && !have[d]; d = filepath.Dir(d) {
			have[d] = true
			files = append(files, cpioFile{path: d, mode: 0o040755})
		}
	}
	add := func(p string, mode uint32, data []byte) {
		if have[p] {
			return
		}
		dir(filepath.Dir(p))
		have[p] = true
		files = append(files, cpioFile{path: p, mode: 0o100000 | mode, data: data})
	}
	link := func(p, target string) {
		if have[p] {
			return
		}
		dir(filepath.Dir(p))
		have[p] = true
		files = append(files, cpioFile{path: p, mode: 0o120777, target: target})
	}
	addHost := func(p, src string, mode uint32) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		add(p, mode, b)
		return nil
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "mnt", "root", "etc", "lib/modules", "usr/local/bin", "host", "src"} {
		dir(d)
	}
	add("init", 0o755, []byte(initScript))
	add("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	add("etc/group", 0o644, []byte("root:x:0:\n"))
	add("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))
	add("etc/nsswitch.conf", 0o644, []byte("hosts: files\n"))
	// Modules flat in /lib/modules/RELEASE, with a modules.dep so that
	// busybox modprobe works (and succeeds for a loaded module).
	var loadList, dep strings.Builder
	mdir := "lib/modules/" + k.Release + "/"
	for _, m := range k.Modules {
		if err := addHost(mdir+m.Name+".ko", k.path(m.File), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&loadList, "%s %s\n", m.Name, m.Args)
		fmt.Fprintf(&dep, "%s.ko:", m.Name)
		for i := len(m.Deps) - 1; i >= 0; i-- { // modules.dep lists the last to load first
			fmt.Fprintf(&dep, " %s.ko", m.Deps[i])
		}
		dep.WriteString("\n")
	}
	add(mdir+"modules.dep", 0o644, []byte(dep.String()))
	add("etc/lab-modules", 0o644, []byte(loadList.String()))
	add("etc/lab-kernel", 0o644, []byte(k.Package+" "+k.Version+" "+k.Release+"\n"))
	if err := addHost("sbin/gallium-lab-agent", agent, 0o755); err != nil {
		return nil, err
	}
	if err := addHost("usr/local/bin/labtool", labtool, 0o755); err != nil {
		return nil, err
	}
	// iproute2 and its libraries, before busybox's applets so they win.
	for _, t := range hostTools {
		p, err := exec.LookPath(t)
		if err != nil {
			continue
		}
		libs, err := sharedLibs(p)
		if err != nil {
			logf("initramfs: skipping %s: %v", t, err)
			continue
		}
		if err := addHost("usr/sbin/"+t, p, 0o755); err != nil {
			return nil, err
		}
		for _, l := range libs {
			real, err := filepath.EvalSymlinks(l)
			if err != nil {
				return nil, err
			}
			rel := strings.TrimPrefix(l, "/")
			if err := addHost(strings.TrimPrefix(real, "/"), real, 0o755); err != nil {
				return nil, err
			}
			if real != l {
				link(rel, real)
			}
		}
	}
	if err := addHost("bin/busybox", busybox, 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list-full: %v", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "bin/busybox" || a == "linuxrc" || a == "sbin/init" {
			continue
		}
		link(a, "/bin/busybox")
	}
	link("bin/bash", "/bin/busybox") // scripts with #!/bin/bash get ash

	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %o %d %s\n", f.path, f.mode, len(f.data), f.target)
		h.Write(f.data)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	outDir := filepath.Join(cacheDir, "initramfs")
	path := filepath.Join(outDir, sum+".cpio")
	if st, err := os.Stat(path); err == nil {
		return &Initramfs{Path: path, Hash: sum, Size: st.Size()}, nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	var buf bytes.Buffer
	writeCpio(&buf, files)
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	// Keep the cache small: old initramfs files go.
	olds, _ := filepath.Glob(filepath.Join(outDir, "*.cpio"))
	for _, o := range olds {
		if o != path {
			if st, err := os.Stat(o); err == nil && time.Since(st.ModTime()) > time.Hour {
				os.Remove(o)
			}
		}
	}
	logf("initramfs: %s, %d files, %.1f MB, built in %s", filepath.Base(path), len(files), float64(buf.Len())/1e6, time.Since(start).Round(time.Millisecond))
	return &Initramfs{Path: path, Hash: sum, Size: int64(buf.Len())}, nil
}

var lddLine = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibs lists the libraries (and the dynamic loader) a binary needs.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd: %v", err)
	}
	if bytes.Contains(out, []byte("not found")) {
		return nil, fmt.Errorf("ldd: missing libraries: %s", out)
	}
	var libs []string
	for _, m := range lddLine.FindAllSubmatch(out, -1) {
		libs = append(libs, string(m[1]))
	}
	return libs, nil
}

// writeCpio writes files as a "newc" cpio archive, deterministically.
func writeCpio(w io.Writer, files []cpioFile) {
	ino := uint32(1)
	pad := func(n int) {
		if r := n % 4; r != 0 {
			w.Write(make([]byte, 4-r))
		}
	}
	entry := func(name string, mode uint32, data []byte) {
		hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		w.Write([]byte(hdr))
		w.Write([]byte(name))
		w.Write([]byte{0})
		pad(len(hdr) + len(name) + 1)
		w.Write(data)
		pad(len(data))
	}
	for _, f := range files {
		data := f.data
		if f.mode&0o170000 == 0o120000 {
			data = []byte(f.target)
		}
		entry(f.path, f.mode, data)
	}
	entry("TRAILER!!!", 0, nil)
}
