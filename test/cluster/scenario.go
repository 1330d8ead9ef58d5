package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/test/lab"
)

// The whole-cluster run (issue 7): three lab hypervisors with the
// project's .deb, etcd across them, host networking, the VIP, libvirt
// networks and VMs, three faults and a report. make demo runs it through
// cmd/clusterdemo; the cluster test tier runs the same steps as subtests.
// Every step checks what it did and fails with what it saw, so the demo
// and the test assert the same story.

// SpecFile is the cluster the run builds, relative to the repository: the
// steps (VMs, probe ports, checks) are written for its hypervisors hv1-hv3,
// adapter groups infra and vmgroup and networks prod, dev and flat.
const SpecFile = "examples/cluster.yaml"

// Options configure a Scenario.
type Options struct {
	// Root is the repository (default: found from the working directory).
	Root string
	// Deb is the gallium-net .deb to install (default: newest in dist/).
	Deb string
	// Out is where the report goes (default /tmp/gallium-cluster).
	Out string
	// Logf prints progress (default: stderr).
	Logf func(format string, args ...any)
	// Debian13 names the hypervisors that run Debian 13 (trixie, libvirt
	// 11.3); the others run Debian 12. Default: hv3, a cluster mid-upgrade.
	Debian13 []string
	// Skip names steps not to run (only those in Skippable).
	Skip []string
}

// Skippable are the steps a run may leave out (Options.Skip): no later
// step needs what they do (migrate-refused needs migrate's VM: they go
// together). make demo skips the reboots, the migrations and the rejoin
// for time. takeover-reboot goes with reboot (a run that skips reboot
// skips it too).
var Skippable = []string{"migrate", "migrate-refused", "rejoin", "reboot", "takeover-reboot"}

// Scenario is one run: the lab, its hypervisors and what was measured.
type Scenario struct {
	opt   Options
	spec  *model.Spec
	imgs  map[Suite]*Image
	lab   *lab.Lab
	share string // host folder shared read-only at /share in every hypervisor
	hvs   []*Hypervisor
	start time.Time
	// down marks hypervisors powered off by a fault.
	down   map[string]bool
	Report Report
}

// Step is one stage of the run.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// vipEchoPort is the UDP echo bound to the VIP on every hypervisor.
const vipEchoPort = 7778

// endpoints are the etcd client URLs (one member per hypervisor).
func (s *Scenario) endpoints() string {
	var eps []string
	for _, h := range s.spec.Hypervisors {
		eps = append(eps, "https://"+mgmtIP(h)+":2379")
	}
	return strings.Join(eps, ",")
}

func mgmtIP(h model.Hypervisor) string {
	ip, _, _ := strings.Cut(h.ManagementIP, "/")
	return ip
}

// New prepares a scenario; nothing runs until its steps do.
func New(opt Options) (*Scenario, error) {
	if opt.Root == "" {
		r, err := lab.RepoRoot()
		if err != nil {
			return nil, err
		}
		opt.Root = r
	}
	if opt.Out == "" {
		opt.Out = "/tmp/gallium-cluster"
	}
	if opt.Debian13 == nil {
		opt.Debian13 = []string{"hv3"}
	}
	for _, k := range opt.Skip {
		if !slices.Contains(Skippable, k) {
			return nil, fmt.Errorf("cannot skip step %q: only %v can be", k, Skippable)
		}
	}
	if slices.Contains(opt.Skip, "reboot") && !slices.Contains(opt.Skip, "takeover-reboot") {
		opt.Skip = append(slices.Clone(opt.Skip), "takeover-reboot")
	}
	if slices.Contains(opt.Skip, "migrate") != slices.Contains(opt.Skip, "migrate-refused") {
		return nil, fmt.Errorf("skip both migrate and migrate-refused or neither: the refused migration moves the VM of the migrate step")
	}
	if opt.Logf == nil {
		opt.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	if opt.Deb == "" {
		d, err := LatestDeb(opt.Root)
		if err != nil {
			return nil, err
		}
		opt.Deb = d
	}
	spec, err := specfile.Load(filepath.Join(opt.Root, SpecFile))
	if err != nil {
		return nil, err
	}
	sc := &Scenario{opt: opt, spec: spec, start: time.Now(), down: map[string]bool{}}
	sc.Report.Skipped = opt.Skip
	return sc, nil
}

// Close powers every lab hypervisor off and removes the lab's files. It is
// safe to call more than once and from a signal handler.
func (s *Scenario) Close() {
	if s.lab != nil {
		s.lab.Close()
	}
	if s.share != "" {
		os.RemoveAll(s.share)
	}
}

// Elapsed is the time since New.
func (s *Scenario) Elapsed() time.Duration { return time.Since(s.start) }

func (s *Scenario) logf(format string, args ...any) {
	e := s.Elapsed()
	s.opt.Logf("[%2d:%02d] "+format, append([]any{int(e.Minutes()), int(e.Seconds()) % 60}, args...)...)
}

// Steps are the run's stages in order; each needs the ones before it.
func (s *Scenario) Steps() []Step {
	all := []Step{
		{"image", s.stepImage},
		{"boot", s.stepBoot},
		{"install", s.stepInstall},
		{"validate", s.stepValidate},
		{"takeover", s.stepTakeover},
		{"host-networking", s.stepHostNetworking},
		{"cluster-init", s.stepClusterInit},
		{"cluster-join", s.stepClusterJoin},
		{"spec-push", s.stepSpecPush},
		{"vip", s.stepVIP},
		{"libvirt-networks", s.stepNetworks},
		{"vms", s.stepVMs},
		{"mac-uniqueness", s.stepMACs},
		{"vlan-isolation", s.stepIsolation},
		{"migrate", s.stepMigrate},
		{"migrate-refused", s.stepMigrateRefused},
		{"fault-bond-failover", s.stepBondFailover},
		{"fault-etcd-leader", s.stepEtcdLeader},
		{"rejoin", s.stepRejoin},
		{"reboot", s.stepReboot},
		{"takeover-reboot", s.stepTakeoverReboot},
		{"rolling-apply-rollback", s.stepRollingApplyRollback},
		{"rolling-apply", s.stepRollingApply},
		{"fault-vip-holder", s.stepVIPHolder},
		{"report", s.stepReport},
	}
	return slices.DeleteFunc(all, func(st Step) bool { return slices.Contains(s.opt.Skip, st.Name) })
}

// suite is the Debian release hypervisor name runs.
func (s *Scenario) suite(name string) Suite {
	if slices.Contains(s.opt.Debian13, name) {
		return Trixie
	}
	return Bookworm
}

// RunStep runs one step with progress lines around it.
func (s *Scenario) RunStep(ctx context.Context, i int, st Step) error {
	n := len(s.Steps())
	s.logf("step %d/%d %s ...", i+1, n, st.Name)
	t0 := time.Now()
	err := st.Run(ctx)
	d := time.Since(t0)
	timing := StepTiming{Name: st.Name, Took: d, Err: errString(err)}
	if err == nil {
		var serr error
		timing.Status, serr = s.statusAfter(ctx, st.Name)
		err = serr
	}
	s.Report.Steps = append(s.Report.Steps, timing)
	if err != nil {
		s.logf("step %d/%d %s FAILED after %s: %v", i+1, n, st.Name, d.Round(100*time.Millisecond), err)
		return fmt.Errorf("step %s: %w", st.Name, err)
	}
	s.logf("step %d/%d %s done in %s", i+1, n, st.Name, d.Round(100*time.Millisecond))
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hv returns the hypervisor named name.
func (s *Scenario) hv(name string) *Hypervisor {
	for _, h := range s.hvs {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// up are the hypervisors not powered off by a fault.
func (s *Scenario) up() []*Hypervisor {
	var out []*Hypervisor
	for _, h := range s.hvs {
		if !s.down[h.Name] {
			out = append(out, h)
		}
	}
	return out
}

// each runs f on every given hypervisor at once and joins the errors.
func each(hvs []*Hypervisor, f func(h *Hypervisor) error) error {
	errs := make([]error, len(hvs))
	var wg sync.WaitGroup
	for i, h := range hvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(h); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run runs cmd in h and fails with its output when it exits non-zero.
func run(ctx context.Context, h *Hypervisor, cmd string) (string, error) {
	out, code, err := h.Run(ctx, cmd+" 2>&1")
	if err != nil {
		return out, fmt.Errorf("%s: %w", cmd, err)
	}
	if code != 0 {
		return out, fmt.Errorf("%s: exit %d: %s", cmd, code, strings.TrimSpace(tailLines(out, 15)))
	}
	return out, nil
}

// runJSON runs cmd in h (stderr kept apart) and decodes its stdout.
func runJSON(ctx context.Context, h *Hypervisor, cmd string, v any) error {
	out, code, err := h.Run(ctx, cmd+" 2>/tmp/stderr.$$; rc=$?; [ $rc = 0 ] || cat /tmp/stderr.$$; rm -f /tmp/stderr.$$; exit $rc")
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if code != 0 {
		return fmt.Errorf("%s: exit %d: %s", cmd, code, strings.TrimSpace(tailLines(out, 15)))
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: %w: %s", cmd, err, tailLines(out, 5))
	}
	return nil
}

// background starts cmd detached in h (its own session), output to log.
func background(ctx context.Context, h *Hypervisor, cmd, log string) error {
	_, err := run(ctx, h, fmt.Sprintf("setsid -f sh -c '%s' </dev/null >%s 2>&1", cmd, log))
	return err
}

// --- steps ---------------------------------------------------------------

func (s *Scenario) stepImage(ctx context.Context) error {
	s.imgs = map[Suite]*Image{}
	for _, h := range s.spec.Hypervisors {
		s.imgs[s.suite(h.Name)] = nil
	}
	// One after the other: both builds share the cache's lock, and a
	// cached image takes seconds.
	for _, suite := range []Suite{Bookworm, Trixie} {
		if _, ok := s.imgs[suite]; !ok {
			continue
		}
		img, err := BuildImage(ctx, suite)
		if err != nil {
			return err
		}
		s.imgs[suite] = img
		s.Report.Images = append(s.Report.Images, ImageReport{Suite: string(suite), File: filepath.Base(img.RootFS), OnDiskMB: img.OnDisk >> 20, Took: img.BuildTime})
		s.logf("  %s root image %s (%d MB on disk), kernel %s; rootfs.sh took %s", suite, filepath.Base(img.RootFS), img.OnDisk>>20, img.Release, img.BuildTime.Round(100*time.Millisecond))
	}
	share, err := os.MkdirTemp("", "gallium-cluster-share.")
	if err != nil {
		return err
	}
	s.share = share
	for _, b := range []struct{ pkg, out string }{
		{"./test/lab/labtool", "labtool"},
		{"./test/cluster/clustertool", "clustertool"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(share, b.out), b.pkg)
		cmd.Dir = s.opt.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", b.pkg, err, out)
		}
	}
	for _, f := range []struct{ src, dst string }{
		{s.opt.Deb, "gallium-net.deb"},
		{filepath.Join(s.opt.Root, SpecFile), "cluster.yaml"},
	} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(share, f.dst), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(share, filepath.Base(haltKernelPath)), haltKernel(), 0o644); err != nil {
		return err
	}
	s.logf("  package %s, labtool, clustertool (store probes) and the halt kernel shared at /share", filepath.Base(s.opt.Deb))
	return nil
}

func (s *Scenario) stepBoot(ctx context.Context) error {
	l, err := lab.New(ctx)
	if err != nil {
		return err
	}
	s.lab = l
	hvs := make([]*Hypervisor, len(s.spec.Hypervisors))
	errs := make([]error, len(hvs))
	var wg sync.WaitGroup
	for i, h := range s.spec.Hypervisors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nics []lab.NIC
			// The product's wiring: the infrastructure group's adapters
			// on one switch, the VM group's on another that carries the
			// tagged VLANs.
			for _, g := range s.spec.AdapterGroups {
				seg := "vms"
				if g.Infrastructure {
					seg = "infra"
				}
				for _, a := range g.Adapters[h.Name] {
					nics = append(nics, lab.NIC{ID: h.Name + "-" + a, Segment: seg, Guest: a})
				}
			}
			hvs[i], errs[i] = Boot(ctx, l, s.imgs[s.suite(h.Name)], Config{
				Name:   h.Name,
				NICs:   nics,
				Shares: []lab.Share{{Host: s.share, Guest: "/share", ReadOnly: true}},
			})
			if errs[i] == nil {
				s.logf("  %s (%s) up: agent after %s, libvirtd after %s; slowest units: %s", h.Name, s.suite(h.Name), hvs[i].BootTime.Round(100*time.Millisecond), hvs[i].Ready.Round(100*time.Millisecond), slowestUnits(ctx, hvs[i]))
			}
		}()
	}
	wg.Wait()
	for _, h := range hvs {
		if h != nil {
			s.hvs = append(s.hvs, h)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.Report.BootReady = make(map[string]time.Duration)
	for _, h := range s.hvs {
		s.Report.BootReady[h.Name] = h.Ready
	}
	return each(s.hvs, func(h *Hypervisor) error {
		debian := "12."
		if s.suite(h.Name) == Trixie {
			debian = "13."
		}
		return checkUserland(ctx, h, s.imgs[s.suite(h.Name)].Release, debian)
	})
}

// hostConfig is /etc/gallium-net/config.yaml of a lab hypervisor. The
// store needs no line: once `cluster init` or `cluster join` made the
// hypervisor a member, every command uses its member's store.
func (s *Scenario) hostConfig(name string) string {
	return fmt.Sprintf("# gallium-net lab cluster (test/cluster)\nhypervisor: %s\n", name)
}

func (s *Scenario) stepInstall(ctx context.Context) error {
	version, err := debVersion(s.opt.Deb)
	if err != nil {
		return err
	}
	err = each(s.hvs, func(h *Hypervisor) error {
		// First the network as the hypervisor's installer left it: the
		// management IP on eno1, held by ifupdown, NetworkManager or
		// systemd-networkd (scenario_takeover.go); the takeover step
		// hands it to gallium-net.
		if err := s.installerNetwork(ctx, h); err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := h.InstallDeb(ctx, "/share/gallium-net.deb"); err != nil {
			return err
		}
		if err := checkInstalled(ctx, h, version); err != nil {
			return err
		}
		if _, err := run(ctx, h, "install -m 0644 /share/cluster.yaml /etc/gallium-net/cluster.yaml && install -m 0755 /share/labtool /share/clustertool /usr/local/bin/"); err != nil {
			return err
		}
		if err := h.Put(ctx, "/etc/gallium-net/config.yaml", []byte(s.hostConfig(h.Name)), 0o644); err != nil {
			return err
		}
		s.logf("  %s: dpkg -i in %s: %s", h.Name, time.Since(t0).Round(100*time.Millisecond), version)
		return nil
	})
	if err != nil {
		return err
	}
	return s.pingAll(ctx, "over eno1 (the installers' network)")
}

func (s *Scenario) stepValidate(ctx context.Context) error {
	h := s.hvs[0]
	out, err := run(ctx, h, "gallium-net validate -f /etc/gallium-net/cluster.yaml")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "valid") {
		return fmt.Errorf("validate said %q", out)
	}
	s.logf("  %s: %s", h.Name, strings.TrimSpace(out))
	return nil
}

// status is gallium-net host status -o json on h.
func status(ctx context.Context, h *Hypervisor) (*netsetup.HostStatus, error) {
	var st netsetup.HostStatus
	err := runJSON(ctx, h, "gallium-net host status -o json", &st)
	return &st, err
}

func (s *Scenario) stepHostNetworking(ctx context.Context) error {
	err := each(s.hvs, func(h *Hypervisor) error {
		t0 := time.Now()
		out, err := run(ctx, h, "gallium-net host apply --yes --confirm-timeout 0")
		if err != nil {
			return err
		}
		s.logf("  %s: host apply in %s (%d plan lines)", h.Name, time.Since(t0).Round(100*time.Millisecond), strings.Count(out, "\n"))
		st, err := status(ctx, h)
		if err != nil {
			return err
		}
		if err := s.checkStatus(h.Name, st, nil); err != nil {
			return err
		}
		// What an operator does next: the package's units, so that the
		// host's networking comes back at boot before libvirt, and the
		// failover announcer runs. The host unit applies again (nothing
		// to do: converged) and stays active.
		if _, err := run(ctx, h, "systemctl enable --now gallium-net-host.service gallium-net-watch.service"); err != nil {
			return err
		}
		_, err = run(ctx, h, "i=0; until journalctl -b -u gallium-net-watch -o cat | grep -q 'watching gallium-net bonds'; do i=$((i+1)); [ $i -lt 100 ] || { systemctl status --no-pager gallium-net-watch; exit 1; }; sleep 0.2; done")
		if err != nil {
			return fmt.Errorf("gallium-net-watch.service did not start watching: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every management IP reaches every other over the infrastructure bonds.
	return each(s.hvs, func(h *Hypervisor) error {
		for _, o := range s.spec.Hypervisors {
			if o.Name == h.Name {
				continue
			}
			ip := mgmtIP(o)
			if _, err := run(ctx, h, fmt.Sprintf("ping -c 1 -W 2 %[1]s >/dev/null || ping -c 3 -W 2 %[1]s", ip)); err != nil {
				return fmt.Errorf("management IP %s (%s) unreachable over the infrastructure bond: %w", ip, o.Name, err)
			}
		}
		return nil
	})
}

// checkStatus checks one hypervisor's host status against the spec: every
// group has its bond up with an active adapter (the expected one when
// active names it), a VLAN-filtering bridge, the management IP on the
// infrastructure bridge and each network's VLAN on the VM group's uplink.
func (s *Scenario) checkStatus(hv string, st *netsetup.HostStatus, active map[string]string) error {
	var errs []error
	if !st.Converged {
		errs = append(errs, fmt.Errorf("host not converged: pending %v", st.Pending))
	}
	h := s.spec.Hypervisor(hv)
	groups := map[string]netsetup.GroupStatus{}
	for _, g := range st.Groups {
		groups[g.Group] = g
	}
	for _, g := range s.spec.AdapterGroups {
		gs, ok := groups[g.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("group %s missing from host status", g.Name))
			continue
		}
		if !gs.BondPresent || !gs.BondUp || gs.ActiveAdapter == "" {
			errs = append(errs, fmt.Errorf("bond %s: present %v, up %v, active adapter %q", gs.Bond, gs.BondPresent, gs.BondUp, gs.ActiveAdapter))
		}
		if want := active[g.Name]; want != "" && gs.ActiveAdapter != want {
			errs = append(errs, fmt.Errorf("bond %s: active adapter %s, want %s", gs.Bond, gs.ActiveAdapter, want))
		}
		if !gs.BridgePresent || !gs.BridgeUp || !gs.VLANFiltering {
			errs = append(errs, fmt.Errorf("bridge %s: present %v, up %v, vlan filtering %v", gs.Bridge, gs.BridgePresent, gs.BridgeUp, gs.VLANFiltering))
		}
		if g.Infrastructure && !slices.Contains(gs.Addrs, h.ManagementIP) {
			errs = append(errs, fmt.Errorf("bridge %s: addresses %v, want the management IP %s", gs.Bridge, gs.Addrs, h.ManagementIP))
		}
		for _, n := range s.spec.Networks {
			if n.AdapterGroup != g.Name || n.VLAN == 0 {
				continue
			}
			found := false
			for _, v := range gs.VLANs {
				if int(v.VID) == n.VLAN && !v.Untagged {
					found = true
				}
			}
			if !found {
				errs = append(errs, fmt.Errorf("bond %s: VLAN %d of network %s not on the bridge uplink (VLANs %v)", gs.Bond, n.VLAN, n.Name, gs.VLANs))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Scenario) stepSpecPush(ctx context.Context) error {
	h := s.hvs[0]
	out, err := run(ctx, h, "gallium-net spec push -f /etc/gallium-net/cluster.yaml")
	if err != nil {
		return err
	}
	s.logf("  %s: %s", h.Name, strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
	// The others see the same revision and keep their snapshots from it.
	return each(s.hvs, func(h *Hypervisor) error {
		if _, err := run(ctx, h, "gallium-net spec diff -f /etc/gallium-net/cluster.yaml"); err != nil {
			return fmt.Errorf("the stored spec differs from the file: %w", err)
		}
		_, err := run(ctx, h, "gallium-net state sync")
		return err
	})
}

// vipHolders returns the hypervisors that have the VIP on an interface.
func (s *Scenario) vipHolders(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	var holders []string
	err := each(s.up(), func(h *Hypervisor) error {
		out, err := run(ctx, h, "ip -o addr show to "+s.spec.Cluster.VIP)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			mu.Lock()
			holders = append(holders, h.Name)
			mu.Unlock()
		}
		return nil
	})
	sort.Strings(holders)
	return holders, err
}

// waitVIP waits until exactly one hypervisor other than not holds the
// VIP, and returns it and how long that took.
func (s *Scenario) waitVIP(ctx context.Context, timeout time.Duration, not string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		hs, err := s.vipHolders(ctx)
		if err != nil {
			return "", err
		}
		if len(hs) == 1 && hs[0] != not {
			return hs[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("after %s the VIP %s is held by %v, want exactly one hypervisor%s", timeout, s.spec.Cluster.VIP, hs, s.keepalivedLogs(ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stableVIP waits until one hypervisor has held the VIP alone for hold,
// and reports every change of holder it saw on the way (keepalived
// instances that start apart can hand the VIP over once).
func (s *Scenario) stableVIP(ctx context.Context, hold, timeout time.Duration) (string, []string, error) {
	deadline := time.Now().Add(timeout)
	var changes []string
	last, since := "", time.Now()
	for {
		hs, err := s.vipHolders(ctx)
		if err != nil {
			return "", changes, err
		}
		cur := strings.Join(hs, "+")
		if cur != last {
			changes = append(changes, fmt.Sprintf("%s at %s", orNone(cur), s.Elapsed().Round(100*time.Millisecond)))
			last, since = cur, time.Now()
		}
		if len(hs) == 1 && time.Since(since) >= hold {
			return hs[0], changes, nil
		}
		if time.Now().After(deadline) {
			return "", changes, fmt.Errorf("the VIP %s was not held by one hypervisor for %s within %s (holders: %v)%s", s.spec.Cluster.VIP, hold, timeout, changes, s.keepalivedLogs(ctx))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func orNone(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// keepalivedLogs are the last lines of each hypervisor's keepalived log,
// for an error message.
func (s *Scenario) keepalivedLogs(ctx context.Context) string {
	var b strings.Builder
	for _, h := range s.up() {
		out, _, _ := h.Run(ctx, "journalctl -b -u keepalived -n 8 -o short-monotonic --no-pager")
		fmt.Fprintf(&b, "\n--- keepalived on %s:\n%s", h.Name, strings.TrimSpace(out))
	}
	return b.String()
}

// startEcho starts the probes' UDP echo servers in h (test tools, not
// daemons of the product): one on every address, one bound to the VIP
// itself (ip_nonlocal_bind: before this host holds it), so that its answers
// come from the VIP and not from the management IP, which the prober's
// connected socket would drop.
func (s *Scenario) startEcho(ctx context.Context, h *Hypervisor) error {
	if err := background(ctx, h, "labtool echo -listen :7777 -duration 60m", "/var/log/labtool-echo.log"); err != nil {
		return err
	}
	if _, err := run(ctx, h, "sysctl -qw net.ipv4.ip_nonlocal_bind=1"); err != nil {
		return err
	}
	return background(ctx, h, fmt.Sprintf("labtool echo -listen %s:%d -duration 60m", s.spec.Cluster.VIP, vipEchoPort), "/var/log/labtool-echo-vip.log")
}

func (s *Scenario) stepVIP(ctx context.Context) error {
	var mu sync.Mutex
	var started time.Time // the last keepalived restart returned
	err := each(s.hvs, func(h *Hypervisor) error {
		t0 := time.Now()
		if _, err := run(ctx, h, "mkdir -p /etc/keepalived && gallium-net vip config > /etc/keepalived/keepalived.conf"); err != nil {
			return err
		}
		// Debian's keepalived unit (enabled by its package; it skipped the
		// boot for want of a configuration). --no-reload: enabling only
		// adds a link, no unit file changed, and a daemon-reload costs
		// seconds under TCG.
		t1 := time.Now()
		if _, err := run(ctx, h, "systemctl enable --no-reload keepalived.service && systemctl restart keepalived.service"); err != nil {
			return err
		}
		t2 := time.Now()
		mu.Lock()
		if t2.After(started) {
			started = t2
		}
		mu.Unlock()
		err := s.startEcho(ctx, h)
		s.logf("  %s: keepalived.conf in %s, enable and restart in %s, echo servers in %s", h.Name, t1.Sub(t0).Round(100*time.Millisecond), t2.Sub(t1).Round(100*time.Millisecond), time.Since(t2).Round(100*time.Millisecond))
		return err
	})
	if err != nil {
		return err
	}
	holder, changes, err := s.stableVIP(ctx, 5*time.Second, 90*time.Second)
	if err != nil {
		return err
	}
	s.Report.VIP.FirstHolder = holder
	s.logf("  VIP %s on %s, stable for 5 s, %s after the last keepalived restart returned (holders seen: %s)", s.spec.Cluster.VIP, holder, time.Since(started).Round(100*time.Millisecond), strings.Join(changes, ", "))
	mac, err := run(ctx, s.hv(holder), "cat /sys/class/net/gbr-infra/address")
	if err != nil {
		return err
	}
	mac = strings.TrimSpace(mac)
	// gallium-net vip status agrees everywhere: the others see the
	// holder's infrastructure bridge answer ARP for the VIP.
	return each(s.hvs, func(h *Hypervisor) error {
		var vs struct {
			HeldHere   bool   `json:"heldHere"`
			AnsweredBy string `json:"answeredBy"`
		}
		if err := runJSON(ctx, h, "gallium-net vip status -o json", &vs); err != nil {
			return err
		}
		if vs.HeldHere != (h.Name == holder) {
			return fmt.Errorf("vip status: heldHere=%v, but the VIP is on %s%s", vs.HeldHere, holder, s.keepalivedLogs(ctx))
		}
		if !vs.HeldHere && !strings.EqualFold(vs.AnsweredBy, mac) {
			return fmt.Errorf("vip status: answered by %q, want %s (gbr-infra of %s)", vs.AnsweredBy, mac, holder)
		}
		return nil
	})
}

func (s *Scenario) stepNetworks(ctx context.Context) error {
	return each(s.hvs, func(h *Hypervisor) error {
		if _, err := run(ctx, h, "gallium-net network define --all"); err != nil {
			return err
		}
		var nets []struct {
			Name      string `json:"name"`
			Owned     bool   `json:"owned"`
			Active    bool   `json:"active"`
			Autostart bool   `json:"autostart"`
			Bridge    string `json:"bridge"`
			Spec      string `json:"spec"`
		}
		if err := runJSON(ctx, h, "gallium-net network list -o json", &nets); err != nil {
			return err
		}
		got := map[string]bool{}
		for _, n := range nets {
			if !n.Owned && s.spec.Network(n.Name) == nil {
				// Not gallium-net's (libvirt-daemon-system's NAT network
				// "default"): left as it was.
				continue
			}
			if !n.Owned || !n.Active || !n.Autostart || n.Bridge != "gbr-vmgroup" {
				return fmt.Errorf("libvirt network %s: owned %v active %v autostart %v bridge %s (spec: %s)", n.Name, n.Owned, n.Active, n.Autostart, n.Bridge, n.Spec)
			}
			got[n.Name] = true
		}
		for _, n := range s.spec.Networks {
			if !got[n.Name] {
				return fmt.Errorf("libvirt network %s not defined (network list: %+v)", n.Name, nets)
			}
		}
		return nil
	})
}
