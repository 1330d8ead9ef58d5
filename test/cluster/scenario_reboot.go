package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The reboot faults: hypervisors with an autostarted VM on a tagged network
// go down, one cleanly (systemctl reboot) and one by its reset button
// (QEMU system_reset), at the same time: each release of the mixed cluster
// reboots, and the cluster also lives through losing two of its three
// store members at once. Nothing is started by hand afterwards: systemd
// brings back gallium-net-host.service (bonds, bridges, VLANs, the
// management IP) before libvirtd, which autostarts the VM through the
// hook; keepalived and the store member come back from their units.

// RebootReport is one hypervisor's reboot, timed from the request.
type RebootReport struct {
	Hypervisor, Debian, How, Domain string
	// Userland: the lab agent (a systemd service) answers from the new
	// boot. MgmtIP: another hypervisor's ping gets an answer again.
	// StoreHealthy: all three etcd members healthy. TapForwarding: the
	// autostarted VM's tap forwards on its network's VLAN (PVID untagged).
	Userland, MgmtIP, StoreHealthy, TapForwarding time.Duration
	// HostBeforeLibvirt: gallium-net-host.service finished before
	// libvirtd.service started (both monotonic times, from systemd).
	HostBeforeLibvirt bool
	// HookLine is what the hook logged to the journal for the VM's tagged
	// NIC at this boot ("tap programmed" or "tap already right").
	HookLine string
	// Slowest are the slowest units of the boot (systemd-analyze blame).
	Slowest string
}

// rebootPlan: which hypervisor reboots how, and the VM it autostarts.
type rebootPlan struct {
	HV, How, Domain, Network string
}

var rebootPlans = []rebootPlan{
	{"hv3", "clean", "ci3", "dev"},  // Debian 13: systemctl reboot
	{"hv2", "reset", "db2", "prod"}, // Debian 12: the reset button
}

func (s *Scenario) stepReboot(ctx context.Context) error {
	watcher := s.hv("hv1")
	if watcher == nil {
		return errors.New("hv1 must be up to watch the reboots")
	}
	// The first boot's life (install, takeover, VMs, migrations, the
	// rejoin) ran the hook under libvirtd's AppArmor profile: a denial
	// would be gone from the kernel log after the reboot.
	if err := each(s.up(), func(h *Hypervisor) error {
		d, err := galliumDenials(ctx, h)
		if err == nil && len(d) > 0 {
			err = fmt.Errorf("%s: AppArmor denials naming gallium-net before the reboot:\n%s", h.Name, strings.Join(d, "\n"))
		}
		return err
	}); err != nil {
		return err
	}
	var plans []rebootPlan
	for _, p := range rebootPlans {
		if s.hv(p.HV) != nil {
			plans = append(plans, p)
		}
	}
	reports := make([]RebootReport, len(plans))
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.reboot(ctx, watcher, s.hv(p.HV), p)
			reports[i] = r
			if err != nil {
				errs[i] = fmt.Errorf("%s (%s reboot): %w", p.HV, p.How, err)
			}
		}()
	}
	wg.Wait()
	s.Report.Reboots = reports
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The whole cluster: every host converged, the VIP held once.
	for _, h := range s.up() {
		st, err := status(ctx, h)
		if err != nil {
			return err
		}
		if err := s.checkStatus(h.Name, st, nil); err != nil {
			return fmt.Errorf("%s after the reboots: %w", h.Name, err)
		}
	}
	holder, err := s.waitVIP(ctx, 60*time.Second, "")
	if err != nil {
		return err
	}
	s.logf("  cluster whole again: 3 store members, every host converged, VIP on %s", holder)
	return nil
}

// reboot reboots h as p says and times its way back, watched from w.
func (s *Scenario) reboot(ctx context.Context, w, h *Hypervisor, p rebootPlan) (RebootReport, error) {
	r := RebootReport{Hypervisor: h.Name, Debian: string(h.Suite), How: p.How, Domain: p.Domain}
	if p.How == "clean" {
		r.How = "systemctl reboot"
	} else {
		r.How = "reset (QEMU system_reset)"
	}
	// What an operator sets before relying on reboots: the VM autostarts,
	// and libvirt-guests does not wait its default 120 s for guests that
	// ignore ACPI (the lab's halt kernel) before a clean shutdown. Then
	// sync: on an operator's host that configuration was written long
	// before a power cut; here the reset comes seconds later, and a run
	// lost the autostart link with the guest's unwritten page cache (the
	// VM stayed shut off).
	if _, err := h.Virsh(ctx, "autostart "+p.Domain); err != nil {
		return r, err
	}
	if _, err := run(ctx, h, "echo SHUTDOWN_TIMEOUT=3 >> /etc/default/libvirt-guests && sync"); err != nil {
		return r, err
	}
	oldID, err := h.BootID(ctx)
	if err != nil {
		return r, err
	}
	ip := mgmtIP(*s.spec.Hypervisor(h.Name))
	// The watcher pings the management IP every 0.3 s: down first, then
	// the first answer, in seconds since it started (just before t0).
	type ping struct {
		up  time.Duration
		err error
	}
	pc := make(chan ping, 1)
	go func() {
		out, err := run(ctx, w, fmt.Sprintf(`s=$(date +%%s%%N); down=; i=0
while [ $i -lt 3000 ]; do i=$((i+1))
  if ping -c 1 -W 1 %s >/dev/null 2>&1; then [ -n "$down" ] && { echo $(( ($(date +%%s%%N) - s) / 1000000 )); exit 0; }; else down=1; fi
  sleep 0.3
done; echo "no answer"; exit 1`, ip))
		if err != nil {
			pc <- ping{err: fmt.Errorf("management IP %s: %w", ip, err)}
			return
		}
		msec, err := strconv.Atoi(strings.TrimSpace(lastLine(out)))
		pc <- ping{up: time.Duration(msec) * time.Millisecond, err: err}
	}()
	time.Sleep(time.Second) // the pinger runs before the host goes down
	t0 := time.Now()
	if p.How == "clean" {
		if _, err := run(ctx, h, "systemctl reboot --no-block"); err != nil {
			return r, err
		}
	} else if err := h.Reset(); err != nil {
		return r, err
	}
	s.logf("  %s (%s): %s at %s", h.Name, h.Suite, r.How, time.Now().Format("15:04:05"))
	actx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	if err := h.AwaitReboot(actx, oldID); err != nil {
		return r, err
	}
	r.Userland = time.Since(t0)
	// The echo servers the VIP fault's probes need (test tools: nothing
	// of the product is started here).
	if err := s.startEcho(ctx, h); err != nil {
		return r, err
	}
	// The VM, autostarted by libvirtd after gallium-net-host.service:
	// its tap on the bridge, forwarding, on the network's VLAN only.
	want := s.wantVLAN(p.Network)
	var tap string
	lastLog := time.Now()
	for {
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			out, _, _ := h.Run(actx, "virsh -c "+LibvirtURI+" domstate "+p.Domain+" 2>&1; systemctl is-active gallium-net-host libvirtd; bridge vlan show | grep -A1 vnet")
			s.logf("  %s: waiting %s for %s's tap %q on VLAN %d: %s", h.Name, time.Since(t0).Round(time.Second), p.Domain, tap, want, strings.Join(strings.Fields(out), " "))
		}
		if err := actx.Err(); err != nil {
			out, _, _ := h.Run(ctx, "systemctl --no-pager --failed; journalctl -b -n 30 --no-pager -u libvirtd -u gallium-net-host -t gallium-net-hook")
			return r, fmt.Errorf("%s's tap on VLAN %d never forwarded: %w\n%s", p.Domain, want, err, out)
		}
		if tap == "" || tap == "-" {
			if rows, err := domiflist(actx, h, p.Domain); err == nil {
				for _, row := range rows {
					if row.Source == p.Network {
						tap = row.Tap
					}
				}
			}
		}
		if tap != "" && tap != "-" && tapForwarding(actx, h, tap, want) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.TapForwarding = time.Since(t0)
	pg := <-pc
	if pg.err != nil {
		return r, pg.err
	}
	r.MgmtIP = pg.up - time.Second
	if _, err := run(ctx, w, "clustertool health -want 3 -timeout 300s -endpoints "+s.endpoints()); err != nil {
		return r, fmt.Errorf("the store did not become whole again: %w", err)
	}
	r.StoreHealthy = time.Since(t0)
	// systemd's own record of the order: the host's networking was done
	// before libvirtd started.
	out, err := run(ctx, h, "systemctl show -P ExecMainExitTimestampMonotonic gallium-net-host.service; systemctl show -P ExecMainStartTimestampMonotonic libvirtd.service")
	if err != nil {
		return r, err
	}
	if f := strings.Fields(out); len(f) == 2 {
		hostDone, _ := strconv.ParseInt(f[0], 10, 64)
		libvirtStart, _ := strconv.ParseInt(f[1], 10, 64)
		r.HostBeforeLibvirt = hostDone > 0 && hostDone <= libvirtStart
	}
	if !r.HostBeforeLibvirt {
		return r, fmt.Errorf("gallium-net-host.service did not finish before libvirtd started: %q", out)
	}
	hook, err := hookJournal(ctx, h, p.Domain, tap)
	if err != nil {
		return r, err
	}
	r.HookLine = hook
	if r.HookLine == "" {
		return r, fmt.Errorf("the hook logged nothing for %s's tap %s in the journal at this boot:\n%s", p.Domain, tap, hook)
	}
	if out, err := run(ctx, h, "systemctl is-active gallium-net-host.service gallium-net-watch.service keepalived.service "+storeUnitName); err != nil {
		return r, fmt.Errorf("units after the reboot: %w\n%s", err, out)
	}
	r.Slowest = slowestUnits(ctx, h)
	s.logf("  %s (%s) after %s: userland %s, management IP %s, %s's tap forwarding on VLAN %d %s, store whole %s; slowest units: %s",
		h.Name, h.Suite, r.How, r.Userland.Round(time.Second), r.MgmtIP.Round(time.Second), p.Domain, want, r.TapForwarding.Round(time.Second), r.StoreHealthy.Round(time.Second), r.Slowest)
	return r, nil
}

// hookJournal is the hook's last journal line of this boot about domain's
// tap ("tap programmed" or "tap already right"), with its VLAN: the hook
// logs there when journald runs (fields GALLIUM_*).
func hookJournal(ctx context.Context, h *Hypervisor, domain, tap string) (string, error) {
	out, err := run(ctx, h, "journalctl -b -t gallium-net-hook GALLIUM_OBJECT="+domain+" GALLIUM_TAP="+tap+
		" --output-fields=MESSAGE,GALLIUM_VLAN -o verbose --no-pager | grep -E '^ *(MESSAGE|GALLIUM_VLAN)=' || true")
	if err != nil {
		return "", err
	}
	var last, msg string
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch k {
		case "MESSAGE":
			msg = v
		case "GALLIUM_VLAN":
			if strings.HasPrefix(msg, "tap ") {
				last = msg + " (VLAN " + v + ")"
			}
		}
	}
	return last, nil
}

// tapForwarding reports whether tap is a forwarding port of its bridge
// with only VLAN vid, as PVID and untagged.
func tapForwarding(ctx context.Context, h *Hypervisor, tap string, vid int) bool {
	out, _, err := h.Run(ctx, "cat /sys/class/net/"+tap+"/brport/state")
	// 3 is BR_STATE_FORWARDING.
	if err != nil || strings.TrimSpace(out) != "3" {
		return false
	}
	vl, err := portVLANs(ctx, h, tap)
	return err == nil && len(vl) == 1 && vl[0].VLAN == vid &&
		slices.Contains(vl[0].Flags, "PVID") && slices.Contains(vl[0].Flags, "Egress Untagged")
}

// slowestUnits are the five slowest units of h's current boot.
func slowestUnits(ctx context.Context, h *Hypervisor) string {
	// blame needs the boot to be finished.
	out, _, err := h.Run(ctx, "timeout 90 systemctl is-system-running --wait >/dev/null; systemd-analyze blame --no-pager 2>/dev/null | head -5")
	if err != nil {
		return "?"
	}
	var us []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			us = append(us, f[len(f)-1]+" "+strings.Join(f[:len(f)-1], ""))
		}
	}
	return strings.Join(us, ", ")
}
