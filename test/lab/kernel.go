package lab

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// ModuleSpec is a kernel module the lab loads at boot, with its parameters.
type ModuleSpec struct {
	Name string
	Args string
	// Optional modules are skipped when the kernel has neither the module
	// nor the feature built in; a missing required one is an error.
	Optional bool
}

// Modules are the kernel modules in the lab's initramfs, loaded by /init in
// dependency order (their dependencies, read from each module's .modinfo,
// come along). Built-in ones (modules.builtin) are skipped. Adding one here
// changes the kernel cache key, so the next run re-extracts the kernel.
var Modules = []ModuleSpec{
	{Name: "virtio_pci"},
	{Name: "virtio_net"},
	{Name: "virtio_console"}, // the agent's virtio-serial port
	{Name: "9pnet_virtio"},   // host folders (-virtfs)
	{Name: "9p"},
	{Name: "af_packet"}, // raw sockets (built in on Debian)
	{Name: "bonding", Args: "max_bonds=0"},
	{Name: "8021q"},
	{Name: "bridge"},
	{Name: "tun"},
	{Name: "veth"},
	{Name: "dummy", Args: "numdummies=0"},
	{Name: "macvlan", Optional: true},
	{Name: "vxlan", Optional: true},
	// netlink.NewHandle() with no families opens XFRM and NETFILTER
	// sockets too; a Debian host autoloads these modules, the lab preloads
	// them.
	{Name: "xfrm_user", Optional: true},
	{Name: "nfnetlink", Optional: true}, // and NETLINK_NETFILTER
}

// Kernel is an extracted Debian kernel in the lab cache.
type Kernel struct {
	Package string `json:"package"` // linux-image-6.1.0-NN-amd64
	Version string `json:"version"` // Debian version of that package
	Release string `json:"release"` // uname -r
	Dir     string `json:"-"`
	// Image is what QEMU boots: the uncompressed vmlinux (an ELF with a PVH
	// entry point, which saves ~3 s of decompression under TCG) when it could
	// be extracted, else the bzImage.
	Image   string          `json:"image"`
	Vmlinuz string          `json:"vmlinuz"`
	Modules []LoadedModule  `json:"modules"` // load order
	Builtin []string        `json:"builtin"` // wanted modules that are built in
	Fetched time.Time       `json:"fetched"`
	Specs   json.RawMessage `json:"specs,omitempty"`
}

// LoadedModule is one module file in the kernel cache, relative to Dir.
type LoadedModule struct {
	Name string   `json:"name"`
	File string   `json:"file"`
	Args string   `json:"args,omitempty"`
	Deps []string `json:"deps,omitempty"` // all modules it needs, transitively, in load order
}

func (k *Kernel) path(rel string) string { return filepath.Join(k.Dir, rel) }

// logf is where the lab's progress goes (stderr unless set).
var logf = func(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lab: "+format+"\n", args...)
}

// SetLogf redirects the lab's progress messages (for example to t.Logf).
func SetLogf(f func(format string, args ...any)) { logf = f }

// FetchKernel makes sure the Debian kernel package is downloaded and
// extracted under cacheDir/kernel/, and returns it. It is idempotent: a
// complete cache entry for the package's current version is used as is.
// The package is GALLIUM_LAB_KERNEL if set, else what linux-image-amd64
// depends on. apt-get update runs once when a look-up or download fails.
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	specsJSON, _ := json.Marshal(Modules)
	sum := sha256.Sum256(specsJSON)
	modKey := hex.EncodeToString(sum[:])[:8]
	kdir := filepath.Join(cacheDir, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return nil, err
	}

	pkg, version, lookErr := resolveKernelPackage(ctx)
	if lookErr != nil {
		// No package lists and no way to get them: a complete cache entry
		// made with the same module list still does.
		if k := newestCachedKernel(kdir, modKey); k != nil {
			logf("kernel: %v; using cached %s %s", lookErr, k.Package, k.Version)
			return k, nil
		}
		return nil, lookErr
	}
	key := pkg + "_" + strings.NewReplacer(":", "%", "/", "_").Replace(version) + "_" + modKey
	dir := filepath.Join(kdir, key)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}

	start := time.Now()
	deb, err := downloadDeb(ctx, filepath.Join(cacheDir, "debs"), pkg, version)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(kdir, ".extract-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	k, err := extractKernel(ctx, deb, tmp, pkg, version)
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", filepath.Base(deb), err)
	}
	k.Specs = specsJSON
	out := filepath.Join(tmp, "out")
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "kernel.json"), b, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(out, dir); err != nil {
		return nil, err
	}
	pruneKernels(kdir, dir, 2)
	logf("kernel: %s %s (%s) extracted in %s: %d modules, image %s", pkg, version, k.Release, time.Since(start).Round(time.Millisecond), len(k.Modules), filepath.Base(k.Image))
	return loadKernel(dir)
}

func loadKernel(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	k := &Kernel{}
	if err := json.Unmarshal(b, k); err != nil {
		return nil, err
	}
	k.Dir = dir
	if _, err := os.Stat(k.path(k.Image)); err != nil {
		return nil, err
	}
	return k, nil
}

func newestCachedKernel(kdir, modKey string) *Kernel {
	ents, _ := os.ReadDir(kdir)
	var best *Kernel
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), "_"+modKey) {
			continue
		}
		k, err := loadKernel(filepath.Join(kdir, e.Name()))
		if err == nil && (best == nil || k.Fetched.After(best.Fetched)) {
			best = k
		}
	}
	return best
}

// pruneKernels keeps the keep most recently fetched kernel entries (one of
// them current) and removes the others.
func pruneKernels(kdir, current string, keep int) {
	ents, _ := os.ReadDir(kdir)
	var ks []*Kernel
	for _, e := range ents {
		if k, err := loadKernel(filepath.Join(kdir, e.Name())); err == nil && k.Dir != current {
			ks = append(ks, k)
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Fetched.After(ks[j].Fetched) })
	for i, k := range ks {
		if i >= keep-1 {
			os.RemoveAll(k.Dir)
		}
	}
}

var aptUpdated bool

func aptUpdate(ctx context.Context) error {
	if aptUpdated {
		return nil
	}
	aptUpdated = true
	logf("kernel: apt-get update")
	out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get update: %v: %s", err, tail(out, 800))
	}
	return nil
}

// resolveKernelPackage returns the kernel package and its candidate version.
func resolveKernelPackage(ctx context.Context) (pkg, version string, err error) {
	for attempt := 0; attempt < 2; attempt++ {
		if attempt == 1 {
			if err := aptUpdate(ctx); err != nil {
				return "", "", err
			}
		}
		pkg = os.Getenv("GALLIUM_LAB_KERNEL")
		if pkg == "" {
			out, _ := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
			m := regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*-amd64)\s*$`).FindSubmatch(out)
			if m == nil {
				err = errors.New("apt-cache depends linux-image-amd64 names no linux-image-*-amd64 package")
				continue
			}
			pkg = string(m[1])
		}
		out, _ := exec.CommandContext(ctx, "apt-cache", "policy", pkg).Output()
		m := regexp.MustCompile(`(?m)^\s*Candidate:\s*(\S+)`).FindSubmatch(out)
		if m == nil || string(m[1]) == "(none)" {
			err = fmt.Errorf("apt-cache policy %s: no candidate version", pkg)
			continue
		}
		return pkg, string(m[1]), nil
	}
	return "", "", err
}

// downloadDeb fetches pkg=version with apt-get download into dir (kept as
// a cache: a later change of the module list re-extracts without a
// download).
func downloadDeb(ctx context.Context, dir, pkg, version string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	find := func() string {
		ms, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		for _, m := range ms {
			out, err := exec.Command("dpkg-deb", "-f", m, "Version").Output()
			if err == nil && strings.TrimSpace(string(out)) == version {
				return m
			}
		}
		return ""
	}
	if f := find(); f != "" {
		return f, nil
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt == 1 {
			if err := aptUpdate(ctx); err != nil {
				return "", err
			}
		}
		tmp, err := os.MkdirTemp(dir, ".dl-")
		if err != nil {
			return "", err
		}
		logf("kernel: apt-get download %s=%s", pkg, version)
		cmd := exec.CommandContext(ctx, "apt-get", "download", pkg+"="+version)
		cmd.Dir = tmp
		out, err := cmd.CombinedOutput()
		ms, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if err == nil && len(ms) == 1 {
			dst := filepath.Join(dir, filepath.Base(ms[0]))
			err = os.Rename(ms[0], dst)
			os.RemoveAll(tmp)
			if err != nil {
				return "", err
			}
			return dst, nil
		}
		os.RemoveAll(tmp)
		lastErr = fmt.Errorf("apt-get download %s=%s: %v: %s", pkg, version, err, tail(out, 800))
	}
	return "", lastErr
}

// extractKernel unpacks deb into tmp/x, then copies the boot image and the
// closure of Modules into tmp/out.
func extractKernel(ctx context.Context, deb, tmp, pkg, version string) (*Kernel, error) {
	x := filepath.Join(tmp, "x")
	out := filepath.Join(tmp, "out")
	for _, d := range []string{x, filepath.Join(out, "modules")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %v: %s", err, tail(b, 400))
	}
	vmlinuzs, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(vmlinuzs) != 1 {
		return nil, fmt.Errorf("want one boot/vmlinuz-*, found %d", len(vmlinuzs))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuzs[0]), "vmlinuz-")
	k := &Kernel{Package: pkg, Version: version, Release: release, Vmlinuz: "vmlinuz", Image: "vmlinuz", Fetched: time.Now()}
	if err := copyFile(vmlinuzs[0], filepath.Join(out, "vmlinuz"), 0o644); err != nil {
		return nil, err
	}
	copyFile(filepath.Join(x, "boot", "config-"+release), filepath.Join(out, "config"), 0o644)
	if err := extractVmlinux(vmlinuzs[0], filepath.Join(out, "vmlinux")); err != nil {
		logf("kernel: no PVH vmlinux (%v); booting the bzImage", err)
	} else {
		k.Image = "vmlinux"
	}

	// Index the package's modules by name.
	moddir := filepath.Join(x, "lib", "modules", release)
	files := map[string]string{}
	filepath.WalkDir(filepath.Join(moddir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if n := moduleName(p); n != "" {
				files[n] = p
			}
		}
		return nil
	})
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[moduleName(l)] = true
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no modules under %s", moddir)
	}

	// Depth-first over .modinfo depends=, dependencies first.
	done := map[string]bool{}
	var visit func(name, args string, optional bool, chain []string) error
	visit = func(name, args string, optional bool, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if done[name] {
			return nil
		}
		if builtin[name] {
			done[name] = true
			if len(chain) == 0 {
				k.Builtin = append(k.Builtin, name)
			}
			return nil
		}
		src, ok := files[name]
		if !ok {
			if optional {
				logf("kernel: optional module %s not in %s", name, pkg)
				return nil
			}
			return fmt.Errorf("module %s (needed by %v) is neither in %s nor built in", name, chain, pkg)
		}
		data, err := readModule(src)
		if err != nil {
			return err
		}
		info, err := modinfo(data)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		done[name] = true
		var deps []string
		for _, d := range strings.Split(info["depends"], ",") {
			if d != "" {
				if err := visit(d, "", false, append(chain, name)); err != nil {
					return err
				}
				deps = append(deps, strings.ReplaceAll(d, "-", "_"))
			}
		}
		rel := filepath.Join("modules", name+".ko")
		if err := os.WriteFile(filepath.Join(out, rel), data, 0o644); err != nil {
			return err
		}
		k.Modules = append(k.Modules, LoadedModule{Name: name, File: rel, Args: args, Deps: closure(k.Modules, deps)})
		return nil
	}
	for _, m := range Modules {
		if err := visit(m.Name, m.Args, m.Optional, nil); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// closure returns direct deps and their deps, in load order (the order of
// loaded, which has dependencies first), for modules.dep.
func closure(loaded []LoadedModule, direct []string) []string {
	want := map[string]bool{}
	for _, d := range direct {
		want[d] = true
	}
	for i := len(loaded) - 1; i >= 0; i-- {
		if want[loaded[i].Name] {
			for _, d := range loaded[i].Deps {
				want[d] = true
			}
		}
	}
	var out []string
	for _, m := range loaded {
		if want[m.Name] {
			out = append(out, m.Name)
		}
	}
	return out
}

// moduleName turns .../8021q.ko[.xz|.zst|.gz] into 8021q, and - into _.
func moduleName(p string) string {
	b := filepath.Base(p)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(b, ext) {
			return strings.ReplaceAll(strings.TrimSuffix(b, ext), "-", "_")
		}
	}
	return ""
}

// readModule returns a module file's ELF bytes, decompressed.
func readModule(p string) ([]byte, error) {
	switch {
	case strings.HasSuffix(p, ".xz"):
		return exec.Command("xz", "-dc", p).Output()
	case strings.HasSuffix(p, ".zst"):
		return exec.Command("zstd", "-dcq", p).Output()
	case strings.HasSuffix(p, ".gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(z)
	}
	return os.ReadFile(p)
}

// modinfo reads the key=value pairs of a module's .modinfo section.
func modinfo(ko []byte) (map[string]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			if _, seen := m[k]; !seen {
				m[k] = v
			}
		}
	}
	return m, nil
}

// extractVmlinux decompresses the kernel ELF inside a bzImage and keeps it
// only if it has a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU
// boots directly.
func extractVmlinux(bzImage, dst string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	type codec struct {
		magic []byte
		cmd   []string
	}
	for _, c := range []codec{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dc", "--single-stream"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dcq"}},
		{[]byte("\x1f\x8b\x08"), nil},
	} {
		i := bytes.Index(data, c.magic)
		if i < 0 {
			continue
		}
		var out []byte
		if c.cmd == nil {
			z, err := gzip.NewReader(bytes.NewReader(data[i:]))
			if err != nil {
				continue
			}
			z.Multistream(false)
			out, _ = io.ReadAll(z)
		} else {
			cmd := exec.Command(c.cmd[0], c.cmd[1:]...)
			cmd.Stdin = bytes.NewReader(data[i:])
			out, _ = cmd.Output() // trailing data after the stream may make it complain
		}
		if len(out) == 0 {
			continue
		}
		if err := hasPVHNote(out); err != nil {
			return err
		}
		return os.WriteFile(dst, out, 0o644)
	}
	return errors.New("no known compressed payload in the bzImage")
}

func hasPVHNote(img []byte) error {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("decompressed kernel: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(b) >= 12 {
			nsz := binary.LittleEndian.Uint32(b[0:])
			dsz := binary.LittleEndian.Uint32(b[4:])
			typ := binary.LittleEndian.Uint32(b[8:])
			name := b[12:min(len(b), 12+int(nsz))]
			if typ == 18 && bytes.HasPrefix(name, []byte("Xen")) {
				return nil
			}
			adv := 12 + align4(int(nsz)) + align4(int(dsz))
			if adv > len(b) {
				break
			}
			b = b[adv:]
		}
	}
	return errors.New("kernel ELF has no PVH entry note")
}

func align4(n int) int { return (n + 3) &^ 3 }

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// sortedKeys is a helper for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
