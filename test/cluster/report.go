package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin/diagram"
)

// Report is what the run found and measured.
type Report struct {
	Steps []StepTiming
	// Skipped are steps left out of this run (Options.Skip).
	Skipped      []string `json:",omitempty"`
	Images       []ImageReport
	BootReady    map[string]time.Duration
	Hypervisors  map[string]*HVReport
	NICs         []NICReport
	MACs         MACReport
	Isolation    []IsolationCheck
	VMFramesSeen int
	Failover     FailoverReport
	Etcd         EtcdReport
	Store        StoreReport
	// Rollouts are the cluster applies: the one that rolled back on hv2,
	// then the good change everywhere.
	Rollouts []RolloutReport
	VIP      VIPReport
	Reboots  []RebootReport
	// Takeovers: each hypervisor's manager handing eno1 to gallium-net
	// (step takeover); TakeoverReboot: hv1's reboot after it.
	Takeovers      []TakeoverReport
	TakeoverReboot *TakeoverRebootReport `json:",omitempty"`
	Migrations     []MigrationReport
	// MigrateRefused is the migration to a destination without the VLAN.
	MigrateRefused *RefusalReport `json:",omitempty"`
	// Files written by the report step.
	Files []string
}

// ImageReport is one lab image: its Debian suite, file and build time
// (seconds when cached).
type ImageReport struct {
	Suite, File string
	OnDiskMB    int64
	Took        time.Duration
}

type StepTiming struct {
	Name string
	Took time.Duration
	Err  string `json:",omitempty"`
	// Status is `cluster status -o json` after the step, once the store
	// exists: ok, how long it took to become ok, what it said otherwise.
	Status *StepStatus `json:",omitempty"`
}

// StepStatus is the cluster status after one step.
type StepStatus struct {
	OK     bool
	Waited time.Duration
	Asked  string
	Issues []string `json:",omitempty"`
}

// HVReport is one hypervisor's state as gallium-net reports it.
type HVReport struct {
	Name       string
	PoweredOff bool
	Status     *netsetup.HostStatus
	Networks   []string // libvirt networks: name, bridge, VLAN
	HoldsVIP   bool
	Collected  time.Time
	// What the hypervisor runs: Debian release (/etc/debian_version),
	// libvirt version (libvirtd --version), systemctl is-active of each
	// unit that matters, AppArmor ("enabled" and libvirtd's confinement).
	Debian, Libvirt string
	Units           map[string]string
	AppArmor        string
	// Denials are the AppArmor denials naming gallium-net logged at this
	// boot (the kernel's and the journal's copy of each).
	Denials []string
	// DaemonCPU is the CPU time each running gallium-net process used
	// over its life, as a share of one CPU: what the cluster's own
	// daemons cost the host.
	DaemonCPU string
}

// daemonCPU reads every gallium-net process's CPU time and age from /proc
// (the image has no procps).
const daemonCPU = `up=$(cut -d' ' -f1 /proc/uptime); hz=$(getconf CLK_TCK)
for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = gallium-net ] || continue
  st=$(cat $d/stat 2>/dev/null) || continue
  echo "cpu $up $hz $(echo "$st" | sed 's/^.*) //' | awk '{print $12, $13, $20}') $(tr '\0' ' ' < $d/cmdline)"
done`

// cpuShare sums up daemonCPU's lines: "agent 1.2% (7.3s in 10m2s), ...".
func cpuShare(lines []string) string {
	var parts []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 7 {
			continue
		}
		up, err1 := strconv.ParseFloat(f[0], 64)
		hz, err2 := strconv.ParseFloat(f[1], 64)
		ut, err3 := strconv.ParseFloat(f[2], 64)
		stt, err4 := strconv.ParseFloat(f[3], 64)
		start, err5 := strconv.ParseFloat(f[4], 64)
		if errors.Join(err1, err2, err3, err4, err5) != nil || hz <= 0 {
			continue
		}
		cpu, age := (ut+stt)/hz, up-start/hz
		if age <= 0 {
			continue
		}
		what := strings.Join(f[6:], " ")
		parts = append(parts, fmt.Sprintf("%s %.1f%% (%s in %s)", what, 100*cpu/age,
			time.Duration(cpu*float64(time.Second)).Round(100*time.Millisecond), time.Duration(age*float64(time.Second)).Round(time.Second)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// denials prints the kernel's AppArmor denials: from the kernel log, and
// from the journal's audit records (journald reads the audit socket).
const denials = `{ dmesg; journalctl -b _TRANSPORT=audit -o cat --no-pager; } 2>/dev/null | grep 'apparmor="DENIED"'`

// galliumDenials are the AppArmor denials naming gallium-net logged on h
// at this boot: libvirtd (confined) runs the hook, which must never be
// refused anything it does.
func galliumDenials(ctx context.Context, h *Hypervisor) ([]string, error) {
	out, err := run(ctx, h, denials+" | grep gallium-net || true")
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// unitsReported are the units whose state the report gives: gallium-net's,
// the distribution's keepalived and libvirtd (and its socket, which starts
// it), and the lab's store member.
var unitsReported = []string{"gallium-net-host.service", "gallium-net-watch.service", "gallium-net-ledger.service", "keepalived.service", "libvirtd.service", "libvirtd.socket", storeUnitName, "gallium-net-agent.service"}

// system reads what h runs (HVReport's Debian, Libvirt, Units, AppArmor).
func system(ctx context.Context, h *Hypervisor, hr *HVReport) error {
	out, err := run(ctx, h, `echo "debian $(cat /etc/debian_version)"; echo "libvirt $(libvirtd --version | awk '{print $NF}')"
for u in `+strings.Join(unitsReported, " ")+`; do echo "unit $u $(systemctl is-active $u)"; done
p=$(pidof libvirtd | cut -d' ' -f1); echo "apparmor $(cat /sys/module/apparmor/parameters/enabled) libvirtd=$(cat /proc/$p/attr/current 2>/dev/null || echo not-running)"
`+daemonCPU)
	if err != nil {
		return err
	}
	hr.Units = map[string]string{}
	var cpu []string
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch k {
		case "debian":
			hr.Debian = v
		case "libvirt":
			hr.Libvirt = v
		case "unit":
			u, st, _ := strings.Cut(v, " ")
			hr.Units[u] = st
		case "cpu":
			cpu = append(cpu, v)
		case "apparmor":
			en, conf, _ := strings.Cut(v, " ")
			if en == "Y" {
				hr.AppArmor = "enabled, " + conf
			} else {
				hr.AppArmor = "disabled"
			}
		}
	}
	hr.DaemonCPU = cpuShare(cpu)
	return nil
}

type NICReport struct {
	Hypervisor, Domain, Network string
	VLAN                        int
	Model, MAC, Tap             string
	// Hook is the hook's journal line about the tap at the VM's start.
	Hook string
}

type MACReport struct {
	VMNICs, Burst, BurstHVs int
	BurstTook               time.Duration
}

type IsolationCheck struct {
	What               string
	WantReach, Reached bool
}

type FailoverReport struct {
	Hypervisor, Bond, From, To string
	Switch                     time.Duration // carrier loss -> new active adapter, in the guest
	Sent, Lost, MaxBurst       int
	Interval, Outage           time.Duration
	// The cable back in: the primary active again (BackTo) Back after
	// its carrier returned (the bond's updelay), and the probes then.
	BackTo                           string
	Back                             time.Duration
	BackSent, BackLost, BackMaxBurst int
}

type EtcdReport struct {
	FirstLeader, Killed, NewLeader string
	Writes, Failed                 int
	WriteGap                       time.Duration // longest time without a successful write
	AllocWithMemberDown            time.Duration
	Rejoin                         time.Duration
}

type VIPReport struct {
	FirstHolder, Stopped, NewHolder, Observer string
	Sent, Lost, MaxBurst                      int
	Interval, Outage, SeenAfter               time.Duration
	// CutAt is when the holder lost its power.
	CutAt time.Time
}

// collect reads each hypervisor's host status, libvirt networks and VIP.
func (s *Scenario) collect(ctx context.Context, hvs []*Hypervisor) error {
	var mu sync.Mutex
	if s.Report.Hypervisors == nil {
		s.Report.Hypervisors = map[string]*HVReport{}
	}
	return each(hvs, func(h *Hypervisor) error {
		st, err := status(ctx, h)
		if err != nil {
			return err
		}
		var nets []struct {
			Name   string `json:"name"`
			Bridge string `json:"bridge"`
			VLAN   int    `json:"vlan"`
		}
		if err := runJSON(ctx, h, "gallium-net network list -o json", &nets); err != nil {
			return err
		}
		var ns []string
		for _, n := range nets {
			v := "untagged"
			if n.VLAN != 0 {
				v = fmt.Sprintf("VLAN %d", n.VLAN)
			}
			ns = append(ns, fmt.Sprintf("%s (%s on %s)", n.Name, v, n.Bridge))
		}
		out, err := run(ctx, h, "ip -o addr show to "+s.spec.Cluster.VIP)
		if err != nil {
			return err
		}
		hr := &HVReport{Name: h.Name, Status: st, Networks: ns, HoldsVIP: strings.TrimSpace(out) != "", Collected: time.Now()}
		if err := system(ctx, h, hr); err != nil {
			return err
		}
		if hr.Denials, err = galliumDenials(ctx, h); err != nil {
			return err
		}
		mu.Lock()
		s.Report.Hypervisors[h.Name] = hr
		mu.Unlock()
		return nil
	})
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// Text is the readable report.
func (s *Scenario) Text() string {
	r := &s.Report
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(&b, "Gallium lab cluster %q: %d hypervisors (QEMU/TCG, systemd, AppArmor, kernel %s), spec %s\n",
		s.spec.Cluster.Name, len(s.spec.Hypervisors), s.imgRelease(), SpecFile)
	for _, im := range r.Images {
		fmt.Fprintf(&b, "  image %s: %s, %d MB on disk, rootfs.sh %s\n", im.Suite, im.File, im.OnDiskMB, im.Took.Round(100*time.Millisecond))
	}
	fmt.Fprintln(&b)
	var names []string
	for n := range r.Hypervisors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		hr := r.Hypervisors[n]
		state := ""
		if s.down[n] {
			state = fmt.Sprintf("  [powered off by the VIP fault; state as of %s]", hr.Collected.Format("15:04:05"))
		}
		vip := ""
		if hr.HoldsVIP && !s.down[n] {
			vip = "  holds the VIP " + s.spec.Cluster.VIP
		}
		fmt.Fprintf(&b, "%s%s%s\n", n, vip, state)
		if hr.Debian != "" {
			var us []string
			for _, u := range unitsReported {
				us = append(us, strings.TrimSuffix(u, ".service")+"="+orNone(hr.Units[u]))
			}
			fmt.Fprintf(&b, "  Debian %s, libvirt %s, AppArmor %s\n  units: %s\n  gallium-net daemons' CPU: %s\n", hr.Debian, hr.Libvirt, hr.AppArmor, strings.Join(us, " "), orNone(hr.DaemonCPU))
		}
		for _, g := range hr.Status.Groups {
			var ads []string
			for _, a := range g.Adapters {
				c := "up"
				if !a.Carrier {
					c = "NO CARRIER"
				}
				mark := ""
				if a.Active {
					mark = "*"
				}
				ads = append(ads, fmt.Sprintf("%s%s(%s)", a.Name, mark, c))
			}
			var vl []string
			for _, v := range g.VLANs {
				vl = append(vl, fmt.Sprint(v.VID))
			}
			fmt.Fprintf(w, "  %s\tbond %s active %s\t[%s]\tbridge %s VLANs %s\t%s\n", g.Group, g.Bond, g.ActiveAdapter, strings.Join(ads, " "), g.Bridge, strings.Join(vl, ","), strings.Join(g.Addrs, " "))
		}
		w.Flush()
		fmt.Fprintf(&b, "  libvirt networks: %s\n", strings.Join(hr.Networks, ", "))
		for _, nic := range r.NICs {
			if nic.Hypervisor == n {
				fmt.Fprintf(&b, "  VM %s: NIC %s (%s) on network %s, tap %s on VLAN %d; hook: %s\n", nic.Domain, nic.MAC, nic.Model, nic.Network, nic.Tap, nic.VLAN, nic.Hook)
			}
		}
		fmt.Fprintln(&b)
	}
	fmt.Fprintf(&b, "MACs: %d VM NICs, all distinct and in the etcd ledger; %d MACs allocated concurrently by %d hypervisors in %s: 0 duplicates\n",
		r.MACs.VMNICs, r.MACs.Burst, r.MACs.BurstHVs, r.MACs.BurstTook.Round(100*time.Millisecond))
	fmt.Fprintln(&b, "VLAN isolation across hypervisors (probe ports on the VM bridges, one IP subnet):")
	for _, c := range r.Isolation {
		verdict := "ok"
		if c.Reached != c.WantReach {
			verdict = "WRONG"
		}
		fmt.Fprintf(w, "  %s\treached=%v\twant %v\t%s\n", c.What, c.Reached, c.WantReach, verdict)
	}
	w.Flush()
	fmt.Fprintln(&b)
	if len(r.Takeovers) > 0 {
		fmt.Fprintln(&b, "Takeover of the installers' networks (gallium-net host takeover; another hypervisor pings the management IP every 10 ms):")
		for _, t := range r.Takeovers {
			restore := "NOT restored"
			if t.RestoreOK {
				restore = fmt.Sprintf("restored %s after it exited (%d files byte for byte, eno1's addresses, route; %s)", t.RestoreAfter.Round(100*time.Millisecond), t.FilesRecorded, t.RestoreResult)
			}
			fmt.Fprintf(w, "  %s\tDebian %s\t%s\tunconfirmed: %s\n", t.Hypervisor, t.Debian, t.Manager, restore)
			fmt.Fprintf(w, "  \t\t\tconfirmed: %s; %s lost %d of %d probes (longest gap between answers %s); edits: %s\n", t.Took.Round(100*time.Millisecond), t.Prober, t.Lost, t.Sent, ms(t.LongestGap), strings.Join(t.Edits, ", "))
		}
		w.Flush()
		if tr := r.TakeoverReboot; tr != nil {
			rb := tr.Reboot
			fmt.Fprintf(&b, "  reboot of %s (%s, %s): userland %s, management IP %s, store whole %s, VM %s's tap forwarding %s after the request; host networking before libvirtd: %v\n",
				rb.Hypervisor, installers[rb.Hypervisor], rb.How, rb.Userland.Round(time.Second), rb.MgmtIP.Round(time.Second), rb.StoreHealthy.Round(time.Second), rb.Domain, rb.TapForwarding.Round(time.Second), rb.HostBeforeLibvirt)
			var names []string
			for n := range tr.After {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(&b, "  after it, %s (%s): %s\n", n, installers[n], tr.After[n])
			}
		}
		fmt.Fprintln(&b)
	}
	if st := r.Store; st.Init > 0 {
		fmt.Fprintln(&b, "Cluster store (cluster init, cluster join, gallium-net-store.service, mutual TLS):")
		fmt.Fprintf(&b, "  init %s; joins %s; a client without a certificate: %s\n", st.Init.Round(100*time.Millisecond), durations(st.Joins), st.Refused)
		if st.Rejoined != "" {
			fmt.Fprintf(&b, "  %s wiped (membership and data) and rejoined with --replace in %s\n", st.Rejoined, st.Rejoin.Round(100*time.Millisecond))
		}
		fmt.Fprintln(&b)
	}
	if len(r.Rollouts) > 0 {
		fmt.Fprintln(&b, "Rolling applies (cluster apply, one hypervisor at a time, commit-confirm and a connectivity check):")
		for _, ro := range r.Rollouts {
			what := "confirmed everywhere"
			if ro.RolledBack != "" {
				what = fmt.Sprintf("%s rolled back by itself after %s; untouched: %s", ro.RolledBack, ro.RollbackTook.Round(100*time.Millisecond), strings.Join(ro.Untouched, ", "))
			}
			fmt.Fprintf(&b, "  %s in %s: per hypervisor %s; agent reaction %s\n", what, ro.Took.Round(100*time.Millisecond), durations(ro.PerHV), durations(ro.Reaction))
		}
		fmt.Fprintln(&b)
	}
	f := r.Failover
	fmt.Fprintln(&b, "Faults:")
	fmt.Fprintf(&b, "  1. cable pull  %s %s: bond %s %s -> %s; %d of %d probes lost at %s (longest gap ~%s); in the guest %s from carrier loss to the new active adapter\n",
		f.Hypervisor, f.From, f.Bond, f.From, f.To, f.Lost, f.Sent, f.Interval, ms(f.Outage), ms(f.Switch))
	fmt.Fprintf(&b, "     cable back   %s %s: bond %s %s -> %s %s after carrier returned (updelay); %d of %d probes lost\n",
		f.Hypervisor, f.From, f.Bond, f.To, f.BackTo, ms(f.Back), f.BackLost, f.BackSent)
	e := r.Etcd
	fmt.Fprintf(&b, "  2. etcd leader %s killed: new leader %s; longest time without a successful write %s (%d of %d writes failed); gallium-net on %s with its member dead: %s; rejoined in %s\n",
		e.Killed, e.NewLeader, ms(e.WriteGap), e.Failed, e.Writes, e.Killed, ms(e.AllocWithMemberDown), e.Rejoin.Round(100*time.Millisecond))
	v := r.VIP
	fmt.Fprintf(&b, "  3. VIP holder  %s powered off: VIP %s moved to %s; %s lost %d of %d probes at %s (longest gap ~%s); seen on %s %s after the cut\n",
		v.Stopped, s.spec.Cluster.VIP, v.NewHolder, v.Observer, v.Lost, v.Sent, v.Interval, ms(v.Outage), v.NewHolder, ms(v.SeenAfter))
	for i, rb := range r.Reboots {
		fmt.Fprintf(&b, "  %d. reboot      %s (Debian %s) by %s, VM %s autostarted: userland %s, management IP %s, store whole %s, VM tap forwarding on its VLAN %s after the request; host networking before libvirtd: %v; hook: %s\n",
			4+i, rb.Hypervisor, rb.Debian, rb.How, rb.Domain, rb.Userland.Round(time.Second), rb.MgmtIP.Round(time.Second), rb.StoreHealthy.Round(time.Second), rb.TapForwarding.Round(time.Second), rb.HostBeforeLibvirt, rb.HookLine)
	}
	if ls := r.migrationLines(); len(ls) > 0 {
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "Live migrations (virsh migrate --live over qemu+ssh, VM "+moverVM+" with NICs on prod and flat):")
		for _, l := range ls {
			fmt.Fprintln(&b, "  "+l)
		}
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "Steps:")
	var total time.Duration
	for _, st := range r.Steps {
		total += st.Took
		res := "ok"
		if st.Err != "" {
			res = "FAILED: " + st.Err
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", st.Name, st.Took.Round(100*time.Millisecond), res)
	}
	for _, k := range r.Skipped {
		fmt.Fprintf(w, "  %s\t-\tskipped\n", k)
	}
	fmt.Fprintf(w, "  total\t%s\t\n", total.Round(time.Second))
	w.Flush()
	return b.String()
}

func (s *Scenario) imgRelease() string {
	for _, im := range s.imgs {
		if im != nil {
			return im.Release
		}
	}
	return "?"
}

func (s *Scenario) stepReport(ctx context.Context) error {
	if err := os.MkdirAll(s.opt.Out, 0o755); err != nil {
		return err
	}
	// The topology with every hypervisor's VM NICs and its state at the
	// end: active and failed adapters, the VIP holder, the one powered off.
	opt := diagram.Options{Live: map[string]diagram.HostLive{}}
	for _, n := range s.Report.NICs {
		opt.NICs = append(opt.NICs, diagram.NIC{Hypervisor: n.Hypervisor, Domain: n.Domain, MAC: n.MAC, Network: n.Network})
	}
	for name, hr := range s.Report.Hypervisors {
		live := diagram.HostLive{Down: s.down[name], HoldsVIP: hr.HoldsVIP && !s.down[name]}
		for _, g := range hr.Status.Groups {
			if g.ActiveAdapter != "" {
				live.ActiveAdapters = append(live.ActiveAdapters, g.ActiveAdapter)
			}
			for _, a := range g.Adapters {
				if !a.Carrier {
					live.NoCarrier = append(live.NoCarrier, a.Name)
				}
			}
		}
		opt.Live[name] = live
	}
	dot, err := diagram.DOT(s.spec, opt)
	if err != nil {
		return err
	}
	mer, err := diagram.Mermaid(s.spec, opt)
	if err != nil {
		return err
	}
	write := func(name string, data []byte) error {
		p := filepath.Join(s.opt.Out, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		s.Report.Files = append(s.Report.Files, p)
		return nil
	}
	if err := write("topology.dot", []byte(dot)); err != nil {
		return err
	}
	if err := write("topology.mmd", []byte(mer)); err != nil {
		return err
	}
	if dotBin, err := exec.LookPath("dot"); err == nil {
		svg := filepath.Join(s.opt.Out, "topology.svg")
		cmd := exec.CommandContext(ctx, dotBin, "-Tsvg", "-o", svg)
		cmd.Stdin = strings.NewReader(dot)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("dot -Tsvg: %v: %s", err, out)
		}
		s.Report.Files = append(s.Report.Files, svg)
	} else {
		s.logf("  Graphviz (dot) not installed: topology as DOT and Mermaid text only")
	}
	text := s.Text()
	if err := write("report.txt", []byte(text)); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(&s.Report, "", "  ")
	if err := write("report.json", js); err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		s.opt.Logf("  %s", l)
	}
	s.logf("  report files: %s", strings.Join(s.Report.Files, " "))
	return nil
}

// durations prints a name -> duration map sorted by name.
func durations(m map[string]time.Duration) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, n+" "+m[n].Round(100*time.Millisecond).String())
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
