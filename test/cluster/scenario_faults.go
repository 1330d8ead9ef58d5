package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gallium/gallium-net/test/lab/labwire"
)

type (
	probeStats = labwire.ProbeStats
	bondEvent  = labwire.BondEvent
)

// probe runs labtool probe in h towards to (IP:port) in the background of
// the caller; the result arrives on the returned channel.
func probe(ctx context.Context, h *Hypervisor, to string, interval, duration time.Duration) <-chan probeResult {
	ch := make(chan probeResult, 1)
	go func() {
		var r probeResult
		out, err := run(ctx, h, fmt.Sprintf("labtool probe -to %s -interval %s -duration %s -grace 1s", to, interval, duration))
		if err == nil {
			err = json.Unmarshal([]byte(lastLine(out)), &r.Stats)
		}
		r.Err = err
		ch <- r
	}()
	return ch
}

type probeResult struct {
	Stats probeStats
	Err   error
}

// answeredBefore reports whether the probe stream worked before the
// fault (at 2 s in): a loss from the very first probe on means the probe
// never reached its target, and the gap would not measure the fault.
func answeredBefore(st probeStats) error {
	for _, r := range st.LostRanges {
		var a, b int
		if n, _ := fmt.Sscanf(r, "%d-%d", &a, &b); n == 2 && a == 0 && b >= 5 {
			return fmt.Errorf("the probe got no answer before the fault either (lost %s of %d): it measured nothing", r, st.Sent)
		}
	}
	return nil
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// stepBondFailover pulls the cable of the infrastructure bond's active
// adapter on the first hypervisor while the second sends it a UDP probe
// every 10 ms over the management network.
func (s *Scenario) stepBondFailover(ctx context.Context) error {
	h, peer := s.hvs[0], s.hvs[1]
	st, err := status(ctx, h)
	if err != nil {
		return err
	}
	var from, bond string
	for _, g := range st.Groups {
		if g.Infrastructure {
			from, bond = g.ActiveAdapter, g.Bond
		}
	}
	if from == "" {
		return fmt.Errorf("%s: the infrastructure bond has no active adapter", h.Name)
	}
	nic := h.Name + "-" + from
	r, out, err := s.cable(ctx, h, peer, bond, nic, false)
	if err != nil {
		return err
	}
	s.logf("  cable of %s %s pulled (active adapter of %s)", h.Name, from, bond)
	// The bond's own account: carrier lost -> new active adapter.
	to, took, ok := bondSwitch(out, from, false, func(active string) bool { return active != from })
	if !ok {
		return fmt.Errorf("%s: bond %s did not change its active adapter after %s lost carrier: %s", h.Name, bond, from, out)
	}
	f := FailoverReport{
		Hypervisor: h.Name, Bond: bond, From: from, To: to,
		Switch: took,
		Sent:   r.Stats.Sent, Lost: r.Stats.Lost, Interval: cableProbeEvery,
		Outage:   time.Duration(r.Stats.MaxBurst) * cableProbeEvery,
		MaxBurst: r.Stats.MaxBurst,
	}
	s.Report.Failover = f
	s.logf("  bond %s on %s: %s -> %s; %d probes lost of %d (longest burst %d = ~%s without traffic); in the guest %s from carrier loss to the new active adapter (polled every 2 ms)",
		bond, h.Name, f.From, f.To, f.Lost, f.Sent, f.MaxBurst, f.Outage, f.Switch.Round(time.Millisecond))
	if err := answeredBefore(r.Stats); err != nil {
		return err
	}
	if r.Stats.Received == 0 || r.Stats.Lost > r.Stats.Sent/2 {
		return fmt.Errorf("traffic did not come back after the failover: %+v", r.Stats)
	}
	// The host agrees, and the management network still works both ways.
	st, err = status(ctx, h)
	if err != nil {
		return err
	}
	if err := s.checkStatus(h.Name, st, map[string]string{"infra": f.To}); err != nil {
		return err
	}
	return s.failback(ctx, h, peer, bond, nic, from, to)
}

// failback plugs the cable back in (probing as for the failover): the
// bond makes its primary adapter active again after its updelay
// (primary_reselect always), without losing traffic if the updelay
// covers the time the switch port takes to forward.
func (s *Scenario) failback(ctx context.Context, h, peer *Hypervisor, bond, nic, from, to string) error {
	primary := s.spec.InfrastructureGroup().PrimaryOn(h.Name)
	if primary == "" || primary == to {
		return fmt.Errorf("%s: bond %s was on %s, not on its primary %q, before the cable pull: with every adapter up and primary_reselect always it must be on the primary", h.Name, bond, from, primary)
	}
	r, out, err := s.cable(ctx, h, peer, bond, nic, true)
	if err != nil {
		return err
	}
	s.logf("  cable of %s %s plugged back", h.Name, from)
	back, took, ok := bondSwitch(out, primary, true, func(active string) bool { return active == primary })
	if !ok {
		return fmt.Errorf("%s: bond %s did not make its primary %s active again after its cable came back: %s", h.Name, bond, primary, out)
	}
	f := &s.Report.Failover
	f.Back, f.BackTo = took, back
	f.BackSent, f.BackLost, f.BackMaxBurst = r.Stats.Sent, r.Stats.Lost, r.Stats.MaxBurst
	s.logf("  failback on %s: %s -> %s %s after carrier came back (updelay); %d probes lost of %d (longest burst %d)",
		h.Name, to, back, took.Round(time.Millisecond), f.BackLost, f.BackSent, f.BackMaxBurst)
	if err := answeredBefore(r.Stats); err != nil {
		return err
	}
	if r.Stats.Received == 0 || r.Stats.Lost > r.Stats.Sent/2 {
		return fmt.Errorf("traffic did not survive the failback: %+v", r.Stats)
	}
	// The announcer (the package's gallium-net-watch.service) announced
	// both changes. Whether that saves probes is not visible here: the
	// lab's switch relearns from the host's own traffic within a probe or
	// two, and the runs lost 0-2 on failback with and without it.
	out, err = run(ctx, h, "journalctl -b -u gallium-net-watch -o cat | grep 'announced' || true")
	if err != nil {
		return err
	}
	for _, a := range []string{to, primary} {
		if !strings.Contains(out, "bond="+bond+" active="+a) {
			return fmt.Errorf("%s: gallium-net host watch did not announce the change of bond %s to %s:\n%s", h.Name, bond, a, out)
		}
	}
	s.logf("  gallium-net host watch announced both changes (%d announcement(s))", strings.Count(out, "announced"))
	st, err := status(ctx, h)
	if err != nil {
		return err
	}
	return s.checkStatus(h.Name, st, map[string]string{"infra": primary})
}

// cableProbeEvery is the probe interval while a cable is pulled or plugged.
const cableProbeEvery = 10 * time.Millisecond

// cable pulls (up false) or plugs back h's cable nic while peer probes
// h's management IP every cableProbeEvery for 6 s (the change 2 s in) and
// labtool watch-bond records bond's events. It returns the probe's result
// and the events, once they hold the bond's first active adapter and one
// change (or after 10 s).
func (s *Scenario) cable(ctx context.Context, h, peer *Hypervisor, bond, nic string, up bool) (probeResult, string, error) {
	events := fmt.Sprintf("/tmp/watch-bond-%s-up-%v.json", nic, up)
	if err := background(ctx, h, "labtool watch-bond -bond "+bond+" -changes 1 -timeout 60s -poll 2ms", events); err != nil {
		return probeResult{}, "", err
	}
	time.Sleep(time.Second)
	res := probe(ctx, peer, mgmtIP(*s.spec.Hypervisor(h.Name))+":7777", cableProbeEvery, 6*time.Second)
	time.Sleep(2 * time.Second)
	if err := h.SetLink(nic, up); err != nil {
		return probeResult{}, "", err
	}
	r := <-res
	if r.Err != nil {
		return r, "", r.Err
	}
	out, err := run(ctx, h, "i=0; until grep -q '\"active\":\"[a-z]' "+events+" && [ $(grep -c '\"event\":\"active\"' "+events+") -ge 2 ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done; cat "+events)
	return r, out, err
}

// bondSwitch reads labtool watch-bond's events (out): dev's carrier going
// up (or down), then the first active-adapter change after it that want
// accepts. It returns the new active adapter and the time between the two.
func bondSwitch(out, dev string, up bool, want func(active string) bool) (string, time.Duration, bool) {
	var carrier *bondEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e bondEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch {
		case e.Event == "carrier" && e.Dev == dev && e.Up == up && carrier == nil:
			carrier = &e
		case e.Event == "active" && carrier != nil && e.Active != "" && want(e.Active):
			return e.Active, time.Duration((e.Ms - carrier.Ms) * float64(time.Millisecond)), true
		}
	}
	return "", 0, false
}

// etcdLeader asks the store which member leads.
func (s *Scenario) etcdLeader(ctx context.Context, h *Hypervisor) (string, error) {
	out, err := run(ctx, h, "clustertool leader -endpoints "+s.endpoints())
	// The name is the last line; any before it are the tool's retries.
	return strings.TrimSpace(lastLine(out)), err
}

// stepEtcdLeader kills the etcd leader's member (SIGKILL) while another
// hypervisor writes to the store every 20 ms, then uses gallium-net on the
// killed member's own hypervisor (its local member is gone) and restarts
// the member, which rejoins.
func (s *Scenario) stepEtcdLeader(ctx context.Context) error {
	leader, err := s.etcdLeader(ctx, s.hvs[0])
	if err != nil {
		return err
	}
	lh := s.hv(leader)
	var writer *Hypervisor
	for _, h := range s.hvs {
		if h.Name != leader {
			writer = h
			break
		}
	}
	type pr struct {
		out string
		err error
	}
	res := make(chan pr, 1)
	go func() {
		out, err := run(ctx, writer, "clustertool probe -interval 20ms -duration 10s -endpoints "+s.endpoints())
		res <- pr{out, err}
	}()
	time.Sleep(3 * time.Second)
	// A crash: the unit's process killed. systemd would restart it after
	// RestartSec (20 s); the test starts it earlier, as an operator would.
	if _, err := run(ctx, lh, "systemctl kill --signal=KILL "+storeUnitName); err != nil {
		return err
	}
	s.logf("  etcd leader %s killed (SIGKILL to %s); %s writes to the store every 20 ms", leader, storeUnitName, writer.Name)
	// gallium-net on the leader's own hypervisor, whose member is dead:
	// the client moves to the other endpoints.
	t0 := time.Now()
	var nic ledgerNIC
	if err := runJSON(ctx, lh, "gallium-net mac allocate --domain-uuid etcd-fault --key net0 --network prod --domain etcd-fault -o json", &nic); err != nil {
		return fmt.Errorf("a store write on %s with its member killed: %w", leader, err)
	}
	allocTook := time.Since(t0)
	p := <-res
	if p.err != nil {
		return p.err
	}
	var ps struct {
		Writes   int     `json:"writes"`
		Failed   int     `json:"failed"`
		MaxGapMs float64 `json:"maxGapMs"`
	}
	if err := json.Unmarshal([]byte(lastLine(p.out)), &ps); err != nil {
		return fmt.Errorf("clustertool probe: %w: %s", err, p.out)
	}
	newLeader, err := s.etcdLeader(ctx, writer)
	if err != nil {
		return err
	}
	if newLeader == leader || newLeader == "" {
		return fmt.Errorf("etcd leader after killing %s: %q", leader, newLeader)
	}
	// The member comes back with its data and rejoins.
	if _, err := run(ctx, lh, "systemctl start "+storeUnitName); err != nil {
		return err
	}
	t1 := time.Now()
	if _, err := run(ctx, writer, "clustertool health -want 3 -timeout 60s -endpoints "+s.endpoints()); err != nil {
		return fmt.Errorf("member %s did not rejoin: %w", leader, err)
	}
	rejoin := time.Since(t1)
	if _, err := run(ctx, lh, "gallium-net mac release --domain-uuid etcd-fault --key net0"); err != nil {
		return err
	}
	s.Report.Etcd.Killed, s.Report.Etcd.NewLeader = leader, newLeader
	s.Report.Etcd.Writes, s.Report.Etcd.Failed = ps.Writes, ps.Failed
	s.Report.Etcd.WriteGap = time.Duration(ps.MaxGapMs * float64(time.Millisecond))
	s.Report.Etcd.AllocWithMemberDown = allocTook
	s.Report.Etcd.Rejoin = rejoin
	s.logf("  new leader %s; longest time without a successful write %s (%d of %d writes failed); gallium-net mac allocate on %s (its member dead) took %s; %s rejoined in %s",
		newLeader, s.Report.Etcd.WriteGap.Round(time.Millisecond), ps.Failed, ps.Writes, leader, allocTook.Round(10*time.Millisecond), leader, rejoin.Round(100*time.Millisecond))
	return nil
}

// stepVIPHolder powers the VIP holder off (a power cut: QEMU killed) while
// the hypervisor that will not take the VIP over probes the VIP every
// 20 ms; the VIP must move to the remaining one, and the cluster (store,
// VMs) keeps going on the two that are left.
func (s *Scenario) stepVIPHolder(ctx context.Context) error {
	// The state of every hypervisor before one goes away, for the report.
	if err := s.collect(ctx, s.hvs); err != nil {
		return err
	}
	holders, err := s.vipHolders(ctx)
	if err != nil {
		return err
	}
	if len(holders) != 1 {
		return fmt.Errorf("VIP held by %v before the fault", holders)
	}
	holder := holders[0]
	// The observer is the lowest-priority hypervisor that is not the
	// holder (keepalived priorities follow the spec order), so the VIP
	// moves to the third one and the probe crosses the network.
	var observer *Hypervisor
	for i := len(s.hvs) - 1; i >= 0; i-- {
		if s.hvs[i].Name != holder {
			observer = s.hvs[i]
			break
		}
	}
	interval := 20 * time.Millisecond
	res := probe(ctx, observer, fmt.Sprintf("%s:%d", s.spec.Cluster.VIP, vipEchoPort), interval, 12*time.Second)
	time.Sleep(2 * time.Second)
	cut := time.Now()
	if err := s.hv(holder).Close(); err != nil {
		s.logf("  %s: close: %v", holder, err)
	}
	s.down[holder] = true
	s.logf("  %s (VIP holder) powered off; %s probes %s every %s", holder, observer.Name, s.spec.Cluster.VIP, interval)
	newHolder, err := s.waitVIP(ctx, 30*time.Second, holder)
	if err != nil {
		return err
	}
	seen := time.Since(cut)
	r := <-res
	if r.Err != nil {
		return r.Err
	}
	v := VIPReport{FirstHolder: s.Report.VIP.FirstHolder, Stopped: holder, NewHolder: newHolder, Observer: observer.Name,
		Sent: r.Stats.Sent, Lost: r.Stats.Lost, MaxBurst: r.Stats.MaxBurst, Interval: interval,
		Outage: time.Duration(r.Stats.MaxBurst) * interval, SeenAfter: seen, CutAt: cut}
	s.Report.VIP = v
	s.logf("  VIP moved %s -> %s; %s lost %d of %d probes (longest burst %d = ~%s without an answer); VIP seen on %s %s after the cut",
		holder, newHolder, observer.Name, v.Lost, v.Sent, v.MaxBurst, v.Outage, newHolder, seen.Round(100*time.Millisecond))
	if err := answeredBefore(r.Stats); err != nil {
		return err
	}
	if r.Stats.Received == 0 || r.Stats.Lost == r.Stats.Sent {
		return fmt.Errorf("the VIP never answered again: %+v", r.Stats)
	}
	// The cluster keeps going: two etcd members of three answer, a store
	// write works, the VMs on the survivors still run.
	up := s.up()
	if _, err := run(ctx, up[0], "clustertool health -want 2 -timeout 60s -endpoints "+s.endpoints()); err != nil {
		return err
	}
	if _, err := run(ctx, up[0], "gallium-net mac allocate --domain-uuid after-cut --key net0 --network dev --domain after-cut && gallium-net mac release --domain-uuid after-cut --key net0"); err != nil {
		return fmt.Errorf("store write with %s down: %w", holder, err)
	}
	for _, h := range up {
		for _, p := range vmPlans {
			if p.HV != h.Name {
				continue
			}
			if out, err := h.Virsh(ctx, "domstate "+p.Name); err != nil || strings.TrimSpace(out) != "running" {
				return fmt.Errorf("%s: domain %s is %q after %s went down (%v)", h.Name, p.Name, strings.TrimSpace(out), holder, err)
			}
		}
	}
	return s.collect(ctx, up)
}
