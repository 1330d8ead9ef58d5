package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Issue 15 in the cluster: each lab hypervisor first holds its management
// IP on eno1 the way its installer left it (hv1 ifupdown as
// debian-installer writes it, hv2 NetworkManager with a keyfile, hv3
// systemd-networkd with a .network file matching eno1 by MAC), and then
// `gallium-net host takeover` makes that manager let go while another
// hypervisor probes the management IP every 10 ms. An unconfirmed takeover
// must give everything back byte for byte; the confirmed one must survive
// a reboot with the other manager still running and no duplicate address.

// Manager names, as the report gives them.
const (
	mgrIfupdown = "ifupdown"
	mgrNM       = "NetworkManager"
	mgrNetworkd = "systemd-networkd"
)

// installers: which network manager each hypervisor's installer left.
var installers = map[string]string{"hv1": mgrIfupdown, "hv2": mgrNM, "hv3": mgrNetworkd}

// managerUnit is the systemd unit of a manager that must stay active.
func managerUnit(m string) string {
	switch m {
	case mgrIfupdown:
		return "networking.service" // a oneshot that stays active
	case mgrNM:
		return "NetworkManager.service"
	default:
		return "systemd-networkd.service"
	}
}

// managerFiles are the configuration files every takeover check records.
const managerFiles = "/etc/network/interfaces /etc/network/interfaces.d/* /etc/NetworkManager/conf.d/* /etc/NetworkManager/system-connections/* /etc/systemd/network/*"

// TakeoverReport is one hypervisor's takeover (step takeover).
type TakeoverReport struct {
	Hypervisor, Debian, Manager string
	// FilesRecorded: the manager files (managerFiles) before.
	FilesRecorded int
	// The unconfirmed takeover (--confirm-timeout 15s, no confirm):
	// RestoreOK when files, eno1's addresses, the default route and the
	// manager were as before; RestoreAfter from the takeover's exit;
	// RestoreResult is the rollback's record in the state dir.
	RestoreOK     bool
	RestoreAfter  time.Duration
	RestoreResult string
	// The confirmed takeover: how long `host takeover` ran, and the
	// prober's pings (every Interval) of the management IP meanwhile.
	Took                 time.Duration
	Prober               string
	Sent, Received, Lost int
	Interval, LongestGap time.Duration
	// Edits are the manager files the takeover created or changed.
	Edits []string
}

// TakeoverRebootReport is step takeover-reboot: hv1 (ifupdown) rebooted,
// and what every hypervisor's manager shows afterwards.
type TakeoverRebootReport struct {
	Reboot RebootReport
	// After: per hypervisor, the manager's view of gallium-net's devices.
	After map[string]string
}

// --- the installer's network ----------------------------------------------

// installerNetwork gives h its management IP on eno1 as its installer
// would have, with the manager of installers, and waits for the address.
func (s *Scenario) installerNetwork(ctx context.Context, h *Hypervisor) error {
	hv := s.spec.Hypervisor(h.Name)
	cidr, ip, gw := hv.ManagementIP, mgmtIP(*hv), s.spec.Cluster.Gateway
	m := installers[h.Name]
	switch m {
	case mgrIfupdown:
		// What debian-installer writes for a static address.
		conf := `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eno1
iface eno1 inet static
	address ` + cidr + "\n"
		if gw != "" {
			conf += "\tgateway " + gw + "\n"
		}
		if err := h.Put(ctx, "/etc/network/interfaces", []byte(conf), 0o644); err != nil {
			return err
		}
		if _, err := run(ctx, h, "ifup eno1"); err != nil {
			return err
		}
	case mgrNM:
		uuid, err := run(ctx, h, "cat /proc/sys/kernel/random/uuid")
		if err != nil {
			return err
		}
		addr := cidr
		if gw != "" {
			addr += "," + gw
		}
		// A keyfile as NetworkManager's installers and nmcli write it.
		conf := fmt.Sprintf(`[connection]
id=eno1
uuid=%s
type=ethernet
interface-name=eno1

[ethernet]

[ipv4]
address1=%s
method=manual

[ipv6]
addr-gen-mode=default
method=disabled

[proxy]
`, strings.TrimSpace(uuid), addr)
		if err := h.Put(ctx, "/etc/NetworkManager/system-connections/eno1.nmconnection", []byte(conf), 0o600); err != nil {
			return err
		}
		if _, err := run(ctx, h, "systemctl enable --now NetworkManager.service"); err != nil {
			return err
		}
	case mgrNetworkd:
		mac, err := run(ctx, h, "cat /sys/class/net/eno1/address")
		if err != nil {
			return err
		}
		conf := "[Match]\nMACAddress=" + strings.TrimSpace(mac) + "\n\n[Network]\nAddress=" + cidr + "\n"
		if gw != "" {
			conf += "Gateway=" + gw + "\n"
		}
		if err := h.Put(ctx, "/etc/systemd/network/10-eno1.network", []byte(conf), 0o644); err != nil {
			return err
		}
		if _, err := run(ctx, h, "systemctl enable --now systemd-networkd.service"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("no installer network manager for %s", h.Name)
	}
	t0 := time.Now()
	if _, err := run(ctx, h, fmt.Sprintf("i=0; until ip -o -4 addr show dev eno1 | grep -q ' %s/'; do i=$((i+1)); [ $i -lt 300 ] || { ip addr; systemctl status --no-pager %s; exit 1; }; sleep 0.2; done", ip, managerUnit(m))); err != nil {
		return fmt.Errorf("%s did not put %s on eno1: %w", m, cidr, err)
	}
	out, _ := run(ctx, h, "ip -br addr show eno1")
	s.logf("  %s: %s holds the management IP (%s after the start): %s", h.Name, m, time.Since(t0).Round(100*time.Millisecond), strings.Join(strings.Fields(out), " "))
	return nil
}

// pingAll checks that every hypervisor reaches every other's management IP.
func (s *Scenario) pingAll(ctx context.Context, what string) error {
	return each(s.up(), func(h *Hypervisor) error {
		for _, o := range s.spec.Hypervisors {
			if o.Name == h.Name || s.down[o.Name] {
				continue
			}
			ip := mgmtIP(o)
			if _, err := run(ctx, h, fmt.Sprintf("ping -c 1 -W 2 %[1]s >/dev/null || ping -c 3 -W 2 %[1]s", ip)); err != nil {
				return fmt.Errorf("management IP %s (%s) unreachable %s: %w", ip, o.Name, what, err)
			}
		}
		return nil
	})
}

// --- snapshots of the manager's state -----------------------------------

// netSnap is what an unconfirmed takeover must give back.
type netSnap struct {
	Files    map[string]string // path -> "sha256 mode"
	Contents string
	Addrs    []string // eno1's addresses, without lifetimes
	Route    string   // the default route
	Links    string   // ip -br link
}

func snapshot(ctx context.Context, h *Hypervisor) (*netSnap, error) {
	out, err := run(ctx, h, `for f in `+managerFiles+`; do [ -f "$f" ] && echo "$(sha256sum < "$f" | cut -c1-64) $(stat -c %a "$f") $f"; done; true`)
	if err != nil {
		return nil, err
	}
	sn := &netSnap{Files: map[string]string{}}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			sn.Files[f[2]] = f[0] + " " + f[1]
		}
	}
	if sn.Contents, err = run(ctx, h, `for f in `+managerFiles+`; do [ -f "$f" ] && { echo "==> $f"; cat "$f"; }; done; true`); err != nil {
		return nil, err
	}
	out, err = run(ctx, h, "ip -o addr show dev eno1")
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		l, _, _ = strings.Cut(l, `\`)
		if f := strings.Fields(l); len(f) > 2 {
			sn.Addrs = append(sn.Addrs, strings.Join(f[2:], " "))
		}
	}
	sort.Strings(sn.Addrs)
	if sn.Route, err = run(ctx, h, "ip -4 route show default"); err != nil {
		return nil, err
	}
	sn.Route = strings.TrimSpace(sn.Route)
	if sn.Links, err = run(ctx, h, "ip -br link"); err != nil {
		return nil, err
	}
	return sn, nil
}

// diffFiles lists the files created, changed or removed from a to b.
func diffFiles(a, b *netSnap) []string {
	var d []string
	for p, v := range b.Files {
		if w, ok := a.Files[p]; !ok {
			d = append(d, p+" created")
		} else if w != v {
			d = append(d, p+" changed")
		}
	}
	for p := range a.Files {
		if _, ok := b.Files[p]; !ok {
			d = append(d, p+" removed")
		}
	}
	sort.Strings(d)
	return d
}

// restored says what differs between before and now (nil: as before).
func restored(before, now *netSnap) error {
	var errs []error
	if d := diffFiles(before, now); len(d) > 0 {
		errs = append(errs, fmt.Errorf("files not as before: %s\n--- before:\n%s--- now:\n%s", strings.Join(d, ", "), before.Contents, now.Contents))
	}
	// IPv6 link-local addresses come back on their own time: compare IPv4.
	v4 := func(as []string) []string {
		return slices.DeleteFunc(slices.Clone(as), func(a string) bool { return !strings.HasPrefix(a, "inet ") })
	}
	if a, b := v4(before.Addrs), v4(now.Addrs); !slices.Equal(a, b) {
		errs = append(errs, fmt.Errorf("eno1's addresses %q, before %q", b, a))
	}
	// The gateway and the device: ifup adds the route "onlink", a
	// restored one may lack that flag (same route).
	if r := routeVia(now.Route); r != routeVia(before.Route) {
		errs = append(errs, fmt.Errorf("default route %q, before %q", now.Route, before.Route))
	}
	for _, l := range strings.Split(now.Links, "\n") {
		if f := strings.Fields(l); len(f) > 0 && (strings.HasPrefix(f[0], "gb-") || strings.HasPrefix(f[0], "gbr-")) {
			errs = append(errs, fmt.Errorf("link %s still there", f[0]))
		}
	}
	return errors.Join(errs...)
}

// routeVia is "via GATEWAY dev DEVICE" of ip route's lines.
func routeVia(route string) string {
	var out []string
	for _, l := range strings.Split(route, "\n") {
		f := strings.Fields(l)
		var keep []string
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "via" || f[i] == "dev" {
				keep = append(keep, f[i], f[i+1])
			}
		}
		out = append(out, strings.Join(keep, " "))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// --- step takeover -------------------------------------------------------

func (s *Scenario) stepTakeover(ctx context.Context) error {
	s.Report.Takeovers = make([]TakeoverReport, len(s.hvs))
	for i, h := range s.hvs {
		s.Report.Takeovers[i] = TakeoverReport{Hypervisor: h.Name, Debian: string(h.Suite), Manager: installers[h.Name],
			Prober: s.hvs[(i+1)%len(s.hvs)].Name, Interval: 10 * time.Millisecond}
	}
	// The unconfirmed takeovers on all three at once (each waits out its
	// own confirm timeout and rollback; nobody probes them), then every
	// management IP must answer again.
	befores := make([]*netSnap, len(s.hvs))
	err := each(s.hvs, func(h *Hypervisor) error {
		i := slices.Index(s.hvs, h)
		var err error
		befores[i], err = s.unconfirmedTakeover(ctx, h, &s.Report.Takeovers[i])
		return err
	})
	if err != nil {
		return err
	}
	if err := s.pingAll(ctx, "after the unconfirmed takeovers rolled back"); err != nil {
		return err
	}
	// The confirmed ones one after the other, each probed by the next
	// hypervisor.
	for i, h := range s.hvs {
		r := &s.Report.Takeovers[i]
		if err := s.takeover(ctx, h, s.hvs[(i+1)%len(s.hvs)], befores[i], r); err != nil {
			return fmt.Errorf("%s (%s): %w", h.Name, r.Manager, err)
		}
	}
	return s.pingAll(ctx, "after the takeovers")
}

// confirmResults lists the rollback records in gallium-net's state dir.
const confirmResults = "ls /var/lib/gallium-net/confirm/*.result /var/lib/gallium-net/*.result 2>/dev/null; true"

// unconfirmedTakeover runs a takeover on h that nobody confirms and waits
// until everything is back by itself: the manager's files byte for byte,
// eno1's addresses, the default route, the manager running. It returns the
// state before, for the confirmed takeover's checks.
func (s *Scenario) unconfirmedTakeover(ctx context.Context, h *Hypervisor, r *TakeoverReport) (*netSnap, error) {
	m := installers[h.Name]
	unit := managerUnit(m)
	ip := mgmtIP(*s.spec.Hypervisor(h.Name))
	before, err := snapshot(ctx, h)
	if err != nil {
		return nil, err
	}
	r.FilesRecorded = len(before.Files)
	if len(before.Addrs) == 0 {
		return nil, fmt.Errorf("eno1 holds no address before the takeover: %s", before.Links)
	}
	results, err := run(ctx, h, confirmResults)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	out, err := run(ctx, h, "gallium-net host takeover --yes --confirm-timeout 15s")
	if err != nil {
		return nil, err
	}
	applied := time.Since(t0)
	mid, _ := run(ctx, h, "ip -o -4 addr show to "+ip+"; ls /etc/NetworkManager/conf.d /etc/systemd/network 2>/dev/null | tr '\\n' ' '")
	s.logf("  %s (%s): unconfirmed takeover applied in %s, %d plan lines; %s; now waiting for the automatic rollback", h.Name, m, applied.Round(100*time.Millisecond), strings.Count(out, "\n"), strings.Join(strings.Fields(mid), " "))
	if !strings.Contains(out, "host confirm") {
		return nil, fmt.Errorf("host takeover did not ask for 'gallium-net host confirm':\n%s", tailLines(out, 20))
	}
	deadline := time.Now().Add(15*time.Second + 60*time.Second)
	var last error
	for {
		now, err := snapshot(ctx, h)
		if err != nil {
			return nil, err
		}
		last = restored(before, now)
		res, _ := run(ctx, h, confirmResults)
		newRes := ""
		for _, f := range strings.Fields(res) {
			if !strings.Contains(results, f) {
				newRes = f
			}
		}
		if newRes == "" {
			last = errors.Join(last, errors.New("no new rollback record in /var/lib/gallium-net"))
		} else if r.RestoreResult == "" {
			rec, _ := run(ctx, h, "cat "+newRes)
			r.RestoreResult = strings.TrimSpace(rec)
		}
		if active, _ := run(ctx, h, "systemctl is-active "+unit); strings.TrimSpace(active) != "active" {
			last = errors.Join(last, fmt.Errorf("%s is %q", unit, strings.TrimSpace(active)))
		}
		if last == nil {
			break
		}
		if time.Now().After(deadline) {
			logs, _, _ := h.Run(ctx, "tail -n 30 /var/lib/gallium-net/confirm/*.log 2>/dev/null; journalctl -b -n 40 --no-pager -u "+unit+" -t gallium-net; ip -br addr")
			return nil, fmt.Errorf("75 s after an unconfirmed takeover, not as before (rollback record %q): %w\n%s", r.RestoreResult, last, logs)
		}
		time.Sleep(time.Second)
	}
	r.RestoreAfter = time.Since(t0) - applied
	if strings.Contains(r.RestoreResult, "FAILED") {
		return nil, fmt.Errorf("the rollback says %q", r.RestoreResult)
	}
	r.RestoreOK = true
	s.logf("  %s (%s): rolled back %s after the takeover exited (%q): %d files byte for byte, eno1 %v, %s active",
		h.Name, m, r.RestoreAfter.Round(100*time.Millisecond), r.RestoreResult, r.FilesRecorded, before.Addrs, unit)
	return before, nil
}

// takeover is the confirmed takeover of h while prober pings its
// management IP every 10 ms; before is h's state before any takeover.
func (s *Scenario) takeover(ctx context.Context, h, prober *Hypervisor, before *netSnap, r *TakeoverReport) error {
	m := installers[h.Name]
	unit := managerUnit(m)
	ip := mgmtIP(*s.spec.Hypervisor(h.Name))
	// 2. Confirmed, while the prober pings the management IP every 10 ms.
	log, pid := "/tmp/takeover-probe-"+h.Name+".log", "/tmp/takeover-probe-"+h.Name+".pid"
	if err := background(ctx, prober, fmt.Sprintf("echo $$ >%s; exec ping -n -D -O -i 0.01 -W 1 -w 900 %s", pid, ip), log); err != nil {
		return err
	}
	if _, err := run(ctx, prober, fmt.Sprintf("i=0; until [ $(grep -c 'bytes from' %s) -ge 20 ]; do i=$((i+1)); [ $i -lt 100 ] || { cat %s; exit 1; }; sleep 0.1; done", log, log)); err != nil {
		return fmt.Errorf("%s's probe of %s never answered before the takeover: %w", prober.Name, ip, err)
	}
	t0 := time.Now()
	out, err := run(ctx, h, "gallium-net host takeover --yes --confirm-timeout 120s")
	r.Took = time.Since(t0)
	if err != nil {
		run(ctx, prober, "kill -INT $(cat "+pid+")")
		return err
	}
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 12 {
			break
		}
		s.logf("    %s| %s", h.Name, l)
	}
	// A new session proves the host is still reachable.
	if _, err := run(ctx, h, "gallium-net host confirm"); err != nil {
		run(ctx, prober, "kill -INT $(cat "+pid+")")
		return err
	}
	time.Sleep(2 * time.Second)
	stats, err := run(ctx, prober, fmt.Sprintf(`kill -INT $(cat %[1]s); i=0; until grep -q 'packets transmitted' %[2]s; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
awk '/bytes from/ {t=substr($1,2,length($1)-2)+0; if (p && t-p>g) g=t-p; p=t} /packets transmitted/ {s=$1; r=$4} END {printf "%%d %%d %%.0f\n", s, r, g*1000}' %[2]s`, pid, log))
	if err != nil {
		return fmt.Errorf("the probe's summary: %w", err)
	}
	if f := strings.Fields(lastLine(stats)); len(f) == 3 {
		r.Sent, _ = strconv.Atoi(f[0])
		r.Received, _ = strconv.Atoi(f[1])
		g, _ := strconv.Atoi(f[2])
		r.LongestGap = time.Duration(g) * time.Millisecond
		r.Lost = r.Sent - r.Received
	}
	if r.Sent == 0 {
		return fmt.Errorf("no probe summary: %q", stats)
	}

	// 3. The state: the IP on the bridge only, the manager running, its
	// files telling it to let go.
	after, err := snapshot(ctx, h)
	if err != nil {
		return err
	}
	r.Edits = diffFiles(before, after)
	if err := s.heldByGallium(ctx, h); err != nil {
		return err
	}
	if out, err := run(ctx, h, "systemctl is-active "+unit); err != nil {
		return fmt.Errorf("%s after the takeover: %w: %s", unit, err, out)
	}
	var check string
	switch m {
	case mgrIfupdown:
		check = `grep -Eq '^[[:space:]]*#.*iface eno1 inet static' /etc/network/interfaces && ! grep -Eq '^[[:space:]]*(allow-hotplug|auto|iface)[[:space:]]+eno1' /etc/network/interfaces`
	case mgrNM:
		check = "grep -q unmanaged-devices /etc/NetworkManager/conf.d/90-gallium-net.conf"
	case mgrNetworkd:
		check = "grep -q 'Unmanaged=yes' /etc/systemd/network/00-gallium-net.network"
	}
	if _, err := run(ctx, h, check); err != nil {
		return fmt.Errorf("the takeover's edit for %s is not there (%v):\n%s", m, err, after.Contents)
	}
	s.logf("  %s (%s): takeover in %s and confirmed; %s lost %d of %d probes at 10 ms (longest gap between answers %s); edits: %s",
		h.Name, m, r.Took.Round(100*time.Millisecond), prober.Name, r.Lost, r.Sent, r.LongestGap, strings.Join(r.Edits, ", "))
	return nil
}

// heldByGallium: h's management IP is on the infrastructure bridge and
// nowhere else (no duplicate on eno1).
func (s *Scenario) heldByGallium(ctx context.Context, h *Hypervisor) error {
	ip := mgmtIP(*s.spec.Hypervisor(h.Name))
	out, err := run(ctx, h, "ip -o -4 addr show to "+ip)
	if err != nil {
		return err
	}
	var devs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			devs = append(devs, f[1])
		}
	}
	if !slices.Equal(devs, []string{"gbr-infra"}) {
		all, _ := run(ctx, h, "ip -br addr")
		return fmt.Errorf("management IP %s on %v, want gbr-infra only:\n%s", ip, devs, all)
	}
	if out, _ := run(ctx, h, "ip -o -4 addr show dev eno1"); strings.TrimSpace(out) != "" {
		return fmt.Errorf("eno1 still has an IPv4 address: %s", out)
	}
	return nil
}

// --- step takeover-reboot ------------------------------------------------

// takeoverRebootPlan: hv1 (ifupdown, the one the reboot step leaves out)
// rebooted as an operator would after the takeover (systemctl reboot),
// with its VM autostarted, watched from hv2.
var takeoverRebootPlan = rebootPlan{"hv1", "clean", "web1", "prod"}

func (s *Scenario) stepTakeoverReboot(ctx context.Context) error {
	h, w := s.hv(takeoverRebootPlan.HV), s.hv("hv2")
	if h == nil || w == nil {
		return errors.New("hv1 and hv2 must be up")
	}
	rr := &TakeoverRebootReport{After: map[string]string{}}
	s.Report.TakeoverReboot = rr
	r, err := s.reboot(ctx, w, h, takeoverRebootPlan)
	rr.Reboot = r
	if err != nil {
		return fmt.Errorf("%s (%s reboot): %w", h.Name, r.How, err)
	}
	var mu sync.Mutex
	err = each(s.up(), func(h *Hypervisor) error {
		v, err := s.afterBoot(ctx, h)
		mu.Lock()
		rr.After[h.Name] = v
		mu.Unlock()
		return err
	})
	if err != nil {
		return err
	}
	holder, err := s.waitVIP(ctx, 60*time.Second, "")
	if err != nil {
		return err
	}
	s.logf("  after hv1's reboot: every management IP on gbr-infra only, every manager active and leaving gallium-net's devices alone; VIP on %s", holder)
	return nil
}

// afterBoot checks h after a reboot: the management IP on the bridge
// only, its manager active and not holding gallium-net's devices,
// gallium-net-host.service done this boot before libvirtd. It returns the
// manager's view of those devices.
func (s *Scenario) afterBoot(ctx context.Context, h *Hypervisor) (string, error) {
	m := installers[h.Name]
	unit := managerUnit(m)
	if err := s.heldByGallium(ctx, h); err != nil {
		return "", err
	}
	if out, err := run(ctx, h, "systemctl is-active "+unit); err != nil {
		return "", fmt.Errorf("%s: %w: %s", unit, err, out)
	}
	out, err := run(ctx, h, "systemctl show -P Result gallium-net-host.service; systemctl show -P ExecMainExitTimestampMonotonic gallium-net-host.service; systemctl show -P ExecMainStartTimestampMonotonic libvirtd.service")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "success" {
		return "", fmt.Errorf("gallium-net-host.service this boot: %q", out)
	}
	done, _ := strconv.ParseInt(f[1], 10, 64)
	lv, _ := strconv.ParseInt(f[2], 10, 64)
	if done <= 0 || done > lv {
		return "", fmt.Errorf("gallium-net-host.service did not finish before libvirtd started this boot (monotonic %d, %d)", done, lv)
	}
	st, err := status(ctx, h)
	if err != nil {
		return "", err
	}
	var devs []string
	for _, g := range st.Groups {
		devs = append(devs, g.Bond, g.Bridge)
		for _, a := range g.Adapters {
			devs = append(devs, a.Name)
		}
	}
	sort.Strings(devs)
	var view string
	var bad []string
	switch m {
	case mgrNM:
		out, err := run(ctx, h, "nmcli -t -f DEVICE,STATE device")
		if err != nil {
			return "", err
		}
		states := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			d, st, _ := strings.Cut(l, ":")
			states[d] = st
		}
		for _, d := range devs {
			if states[d] != "unmanaged" {
				bad = append(bad, d+"="+orNone(states[d]))
			}
		}
		view = "nmcli: " + strings.Join(strings.Fields(out), " ")
	case mgrNetworkd:
		out, err := run(ctx, h, "networkctl list --no-legend --no-pager")
		if err != nil {
			return "", err
		}
		setup := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) >= 5 {
				setup[f[1]] = f[4]
			}
		}
		for _, d := range devs {
			if setup[d] != "unmanaged" {
				bad = append(bad, d+"="+orNone(setup[d]))
			}
		}
		var vs []string
		for _, d := range devs {
			vs = append(vs, d+"="+setup[d])
		}
		view = "networkctl: " + strings.Join(vs, " ")
	case mgrIfupdown:
		out, err := run(ctx, h, "grep -H . /run/network/ifstate* 2>/dev/null; true")
		if err != nil {
			return "", err
		}
		re := regexp.MustCompile(`[:=]`)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			// /run/network/ifstate[.IFACE]:IFACE=IFACE
			parts := re.Split(l, -1)
			for _, p := range parts[1:] {
				if slices.Contains(devs, strings.TrimSpace(p)) {
					bad = append(bad, l)
					break
				}
			}
		}
		view = "ifstate: " + strings.Join(strings.Fields(out), " ")
	}
	if len(bad) > 0 {
		return view, fmt.Errorf("%s manages gallium-net's devices after the boot: %v (%s)", m, bad, view)
	}
	s.logf("  %s (%s): management IP on gbr-infra only, %s active, gallium-net-host done before libvirtd; %s", h.Name, m, unit, view)
	return view, nil
}
