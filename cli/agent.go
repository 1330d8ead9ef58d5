package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm"
	"github.com/gallium/gallium-net/netsetup/reach"
	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// clusterApplyBy starts the By of a spec pushed by `cluster apply`: the
// agents leave its host changes to the roll-out, one hypervisor at a time.
const clusterApplyBy = "cluster apply "

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "follow the stored spec on this hypervisor and publish its state (gallium-net-agent.service)",
		Description: `What gallium-net-agent.service runs on every hypervisor of a cluster. It
follows the spec in the cluster store and, after each change:
  - rewrites the host snapshot the libvirt hook reads;
  - defines and starts the libvirt networks of this hypervisor;
  - applies host networking changes that neither re-create a bond or bridge
    nor touch the management link (after a 'spec push'); other changes wait
    for 'gallium-net cluster apply', which asks one hypervisor at a time;
  - on such a request applies with commit-confirm, checks that the other
    hypervisors' management IPs and the VIP still answer and the store is
    reachable, then keeps the change, or rolls it back by itself.
Every --interval it publishes this hypervisor's state to the store (under a
lease: it disappears when the host dies): applied and stored revision,
drift, bonds with their active adapter and carriers, libvirt networks,
running gallium NICs, the last apply and roll-out, the last error.
'gallium-net cluster status' shows them.

Prometheus metrics are served on --metrics-address (/metrics).

Example:
   gallium-net agent`,
		Flags: append(storeFlags(), hypervisorFlag(), snapshotFlag(), connectFlag(), hostStateDirFlag(),
			&cli.StringFlag{Name: "spec", Aliases: []string{"f"}, Value: DefaultSpecPath, Usage: "the local spec `FILE` the agent keeps at the applied revision (gallium-net-host.service applies it at boot)"},
			&cli.DurationFlag{Name: "interval", Value: 10 * time.Second, Usage: "how often to publish this host's state"},
			&cli.StringFlag{Name: "metrics-address", Value: "127.0.0.1:9474", Usage: "`ADDRESS` of the Prometheus metrics endpoint (empty: none)"},
			&cli.StringFlag{Name: "agent-state", Value: defaultAgentState, Usage: "`FILE` where the agent remembers its last roll-out across restarts and reboots"},
		),
		Action: runAgent,
	}
}

// defaultAgentState keeps the last roll-out this host answered: its
// published record lives under a lease and is gone after a reboot, and a
// request it already answered (a rollback included) must not run again.
const defaultAgentState = "/var/lib/gallium-net/agent.json"

// agentState is the agent's memory on disk.
type agentState struct {
	Rollout   *store.RolloutStatus `json:"rollout,omitempty"`
	Applied   int64                `json:"applied"`
	LastApply *store.ApplyResult   `json:"lastApply,omitempty"`
}

// agent is one hypervisor's agent.
type agent struct {
	c        *cli.Context
	st       *store.Store
	interval time.Duration
	stateDir string
	pinger   *reach.Pinger
	metrics  *agentMetrics

	hv         string
	netRev     int64 // the spec revision whose libvirt networks are defined
	applied    int64
	lastActive map[string]string
	failovers  map[string]int
	lastApply  *store.ApplyResult
	rollout    *store.RolloutStatus
	observed   *netsetup.Snapshot
	warnedEdit int64

	// What libvirt said last (read every libvirtEvery ticks).
	ticks      int
	nets       map[string]bool
	netDrift   []string
	nics       int
	libvirtErr error
}

// libvirtEvery is how many ticks apart the agent reads libvirt when the
// spec did not change: once a minute at the default interval.
const libvirtEvery = 6

func runAgent(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	// A single read may wait out an election; the agent reads again at its
	// next tick anyway.
	st.SetReadRetry(5 * time.Second)
	p, err := reach.Open()
	if err != nil {
		return err
	}
	defer p.Close()
	a := &agent{
		c: c, st: st, interval: c.Duration("interval"), stateDir: c.String("state-dir"), pinger: p,
		lastActive: map[string]string{}, failovers: map[string]int{},
	}
	if addr := c.String("metrics-address"); addr != "" {
		m, err := serveMetrics(ctx, addr)
		if err != nil {
			return err
		}
		a.metrics = m
	}
	slog.Info("agent started", "store", st.String(), "interval", a.interval)
	sdNotify("READY=1")
	for ctx.Err() == nil {
		rev, err := st.Revision(ctx)
		if err != nil && ctx.Err() == nil {
			slog.Warn("agent: store unreachable; will retry", "error", err)
		}
		a.reconcile(ctx)
		// Until the next tick, or at once on a change of the spec, the
		// ledger or this host's roll-out request. A watch that cannot
		// start (the store out of reach) waits the tick out.
		wctx, cancel := context.WithTimeout(ctx, a.interval)
		if err == nil {
			err = st.WatchChanges(wctx, rev, store.RolloutKey(cmpOrStr(a.hv, "-")))
		}
		if err != nil {
			<-wctx.Done()
		}
		cancel()
	}
	return nil
}

func cmpOrStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// reconcile brings this host in line with the stored spec as far as the
// agent may on its own, serves a pending roll-out request, and publishes.
func (a *agent) reconcile(ctx context.Context) {
	hs := store.HostState{Hypervisor: a.hv, Interval: a.interval, Version: version}
	var errs []string
	defer func() {
		hs.Heartbeat = time.Now().UTC()
		hs.AppliedRevision = a.applied
		hs.LastApply, hs.Rollout = a.lastApply, a.rollout
		hs.Failovers = a.failovers
		hs.LastError = strings.Join(errs, "; ")
		if a.hv != "" {
			hs.Hypervisor = a.hv
			a.publish(ctx, hs)
		}
		a.metrics.observe(hs)
	}()
	rec, spec, err := storedSpec(ctx, a.st)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			errs = append(errs, "no spec in the store yet")
		} else {
			errs = append(errs, err.Error())
		}
		return
	}
	hv, err := thisHypervisor(a.c, spec)
	if err != nil {
		errs = append(errs, err.Error())
		return
	}
	if a.hv == "" {
		a.hv = hv
		a.resume(ctx)
	}
	hs.StoredRevision = rec.Version
	if _, err := a.st.SyncSnapshot(ctx, hv, snapshotPath(a.c)); err != nil {
		errs = append(errs, "host snapshot: "+err.Error())
	}
	// libvirt is read on a change of the spec and every libvirtEvery
	// ticks: a connection, every network's and domain's XML, parsed, cost
	// more than everything else of a tick together.
	if a.netRev != rec.Version || a.ticks%libvirtEvery == 0 || a.libvirtErr != nil {
		a.nets, a.netDrift, a.libvirtErr = a.syncNetworks(spec, hv, rec.Version)
		a.nics = a.runningNICs(spec, hv)
	}
	a.ticks++
	hs.Networks = a.nets
	hs.Drift = append(hs.Drift, a.netDrift...)
	if a.libvirtErr != nil {
		errs = append(errs, a.libvirtErr.Error())
	}
	hs.RunningNICs = a.nics
	hs.HoldsVIP = holdsAddr(spec.Cluster.VIP)

	desired, err := netsetup.Desired(spec, hv)
	if err != nil {
		errs = append(errs, err.Error())
		return
	}
	k := netsetup.NewNetlink()
	obs, err := k.Observe()
	if err != nil {
		errs = append(errs, err.Error())
		return
	}
	p, err := netsetup.Preview(desired, obs)
	if err != nil {
		errs = append(errs, err.Error())
		return
	}
	req, err := a.st.Rollout(ctx, hv)
	if err != nil {
		errs = append(errs, "roll-out request: "+err.Error())
	}
	switch {
	case req != nil && req.Revision == rec.Version && (a.rollout == nil || a.rollout.ID != req.ID):
		if err := a.doRollout(ctx, k, spec, hv, req, desired, obs, p); err != nil {
			errs = append(errs, err.Error())
		}
	case p.Empty():
		a.applied = max(a.applied, rec.Version)
	case p.Refused == "" && !p.Disruptive() && !p.ChangesManagement(desired, obs) && !strings.HasPrefix(rec.By, clusterApplyBy):
		a.autoApply(k, hv, rec.Version, desired, obs, p)
		if a.lastApply.Error != "" {
			errs = append(errs, a.lastApply.Error)
		}
	}
	// Read the host again: the apply or roll-out changed it.
	if obs2, err := k.Observe(); err == nil {
		obs = obs2
	}
	a.observed = obs
	if p2, err := netsetup.Preview(desired, obs); err == nil && !p2.Empty() {
		for _, l := range p2.Lines() {
			hs.Drift = append(hs.Drift, "host: "+l)
		}
		if p2.Refused != "" {
			hs.Drift = append(hs.Drift, "host: cannot converge: "+p2.Refused)
		}
	} else if err == nil && a.applied < rec.Version && len(hs.Drift) == 0 {
		a.applied = rec.Version
	}
	hs.InSync = len(hs.Drift) == 0 && a.applied == rec.Version
	if a.applied == rec.Version {
		a.persistSpec(ctx, rec)
	}
	status := netsetup.Status(desired, obs, netsetup.SysfsReader(netsetup.DefaultSysfs))
	hs.Groups = a.groups(status)
	if data, err := jsonRaw(obs); err == nil {
		hs.Observed = data
	}
}

// persistSpec keeps the local spec file (what gallium-net-host.service
// applies at boot, before the store can be reached) at the revision this
// host applied, so that a reboot comes back as the cluster left it. A file
// that is no stored revision (an operator's edit not applied yet) is left
// alone, with a warning.
func (a *agent) persistSpec(ctx context.Context, rec *store.SpecRecord) {
	path := specPath(a.c)
	want := []byte(fmt.Sprintf("%s %d\n%s", store.RevisionHeader, rec.Version, rec.YAML))
	have, err := os.ReadFile(path)
	if err == nil && bytes.Equal(have, want) {
		return
	}
	if err == nil {
		body, _, err := store.SplitRevisionHeader(have)
		if err != nil {
			return
		}
		sum := sha256.Sum256(body)
		hist, err := a.st.SpecHistory(ctx)
		if err != nil {
			return
		}
		known := false
		for _, h := range hist {
			known = known || h.SHA256 == hex.EncodeToString(sum[:])
		}
		if !known {
			if a.warnedEdit != rec.Version {
				slog.Warn("agent: the local spec file is no stored revision (edited, not applied?): not updated to the applied one; a reboot applies the file", "file", path, "applied", rec.Version)
				a.warnedEdit = rec.Version
			}
			return
		}
	}
	if err := atomicfile.Write(path, want, 0o644); err != nil {
		slog.Warn("agent: updating the local spec file", "file", path, "error", err)
		return
	}
	slog.Info("agent: local spec file now holds the applied revision", "file", path, "revision", rec.Version)
}

// resume takes the last roll-out answer from the agent's state file, else
// from its own published record, so that a restarted agent (or a
// rebooted host) does not run a finished roll-out again.
func (a *agent) resume(ctx context.Context) {
	if data, err := os.ReadFile(a.c.String("agent-state")); err == nil {
		var st agentState
		if json.Unmarshal(data, &st) == nil {
			a.rollout, a.applied, a.lastApply = st.Rollout, st.Applied, st.LastApply
			return
		}
	}
	hosts, err := a.st.Hosts(ctx)
	if err != nil {
		return
	}
	if me := hosts[a.hv]; me != nil {
		a.rollout, a.applied, a.lastApply = me.Rollout, me.AppliedRevision, me.LastApply
	}
}

// remember writes the agent's state file.
func (a *agent) remember() {
	data, err := json.Marshal(agentState{Rollout: a.rollout, Applied: a.applied, LastApply: a.lastApply})
	if err == nil {
		err = atomicfile.Write(a.c.String("agent-state"), data, 0o600)
	}
	if err != nil {
		slog.Warn("agent: writing its state file", "error", err)
	}
}

func (a *agent) publish(ctx context.Context, hs store.HostState) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.st.PublishHost(pctx, hs, 3*a.interval); err != nil && ctx.Err() == nil {
		slog.Warn("agent: publishing this host's state", "error", err)
	}
}

// syncNetworks defines this hypervisor's libvirt networks once per spec
// revision and reports them with what drifted.
func (a *agent) syncNetworks(spec *model.Spec, hv string, rev int64) (map[string]bool, []string, error) {
	conn, err := openConn(a.c)
	if err != nil {
		return nil, nil, fmt.Errorf("libvirt: %w", err)
	}
	defer conn.Close()
	opt, _, err := vmnet.NetworkOptions(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("libvirt: %w", err)
	}
	var defErr error
	if a.netRev != rev {
		names, err := vmnet.NetworksToDefine(spec, hv, "")
		if err == nil {
			var results []vmnet.NetworkResult
			results, defErr = vmnet.DefineNetworks(conn, spec, hv, names, opt)
			for _, r := range results {
				if r.Action != "" && r.Action != "unchanged" {
					slog.Info("agent: libvirt network", "network", r.Name, "action", r.Action, "revision", rev)
				}
			}
			if defErr == nil {
				a.netRev = rev
			}
		} else {
			defErr = err
		}
	}
	rows, err := vmnet.ListNetworks(conn, spec, hv, opt)
	if err != nil {
		return nil, nil, errors.Join(defErr, err)
	}
	nets := map[string]bool{}
	var drift []string
	for _, r := range rows {
		if !r.Owned && !strings.HasPrefix(r.Spec, "missing") {
			continue
		}
		nets[r.Name] = r.Active
		if r.Spec != "in line" && r.Spec != "not on this hypervisor" {
			drift = append(drift, "libvirt network "+r.Name+": "+r.Spec)
		}
	}
	return nets, drift, defErr
}

// runningNICs counts the NICs of running domains on this hypervisor's
// gallium networks.
func (a *agent) runningNICs(spec *model.Spec, hv string) int {
	conn, err := openConn(a.c)
	if err != nil {
		return 0
	}
	defer conn.Close()
	doms, err := vmnet.AllDomains(conn)
	if err != nil {
		return 0
	}
	ours := vmnet.NetworksOn(spec, hv)
	n := 0
	for _, d := range doms {
		if !d.Active || d.Live == nil {
			continue
		}
		for _, nic := range d.Live.NICs {
			if slices.Contains(ours, nic.Network) {
				n++
			}
		}
	}
	return n
}

// groups turns host status into the published groups and counts changes
// of each bond's active adapter.
func (a *agent) groups(st *netsetup.HostStatus) []store.HostGroup {
	var out []store.HostGroup
	for _, g := range st.Groups {
		hg := store.HostGroup{Group: g.Group, Bond: g.Bond, Up: g.BondUp, Active: g.ActiveAdapter, Carriers: map[string]bool{}}
		for _, ad := range g.Adapters {
			hg.Carriers[ad.Name] = ad.Carrier
		}
		for _, v := range g.VLANs {
			hg.VLANs = append(hg.VLANs, int(v.VID))
		}
		if prev, ok := a.lastActive[g.Bond]; ok && prev != "" && g.ActiveAdapter != "" && prev != g.ActiveAdapter {
			a.failovers[g.Bond]++
			a.metrics.failover(g.Bond)
			slog.Info("agent: bond changed its active adapter", "bond", g.Bond, "from", prev, "to", g.ActiveAdapter)
		}
		if g.ActiveAdapter != "" {
			a.lastActive[g.Bond] = g.ActiveAdapter
		}
		out = append(out, hg)
	}
	return out
}

// autoApply applies a plan that cannot cut this host off: nothing
// re-created, the management link untouched.
func (a *agent) autoApply(k netsetup.Kernel, hv string, rev int64, desired *netsetup.HostState, obs *netsetup.Snapshot, p *netsetup.Plan) {
	start := time.Now()
	_, err := confirm.Apply(k, confirm.Request{
		Store: confirm.Store{Dir: a.stateDir}, Hypervisor: hv, Desired: desired, Observed: obs, Plan: p,
		RollbackArgv: a.rollbackArgv,
	})
	a.lastApply = &store.ApplyResult{Revision: rev, Steps: len(p.Steps), Took: time.Since(start), At: time.Now().UTC()}
	if err != nil {
		a.lastApply.Error = fmt.Sprintf("apply of revision %d: %v", rev, err)
		slog.Error("agent: apply failed (undone)", "revision", rev, "steps", len(p.Steps), "error", err)
		a.metrics.applied(a.lastApply)
		return
	}
	a.applied = rev
	a.remember()
	slog.Info("agent: applied", "revision", rev, "steps", len(p.Steps), "took", a.lastApply.Took.Round(time.Millisecond))
	a.metrics.applied(a.lastApply)
}

func (a *agent) rollbackArgv(dir, id string, wait time.Duration) ([]string, error) {
	exe, err := os.Executable()
	return []string{exe, "host", "rollback", "--state-dir", dir, "--if-unconfirmed", id, "--after", wait.String()}, err
}

// checkWindow bounds the connectivity check of a roll-out: the other
// hypervisors answer within a second or two of a bond or bridge change
// (the switch relearns from the gratuitous ARPs), so a host that is
// still cut off after this long is cut off.
const checkWindow = 20 * time.Second

// doRollout serves a roll-out request: apply with an armed rollback, check
// connectivity, then confirm or roll back.
func (a *agent) doRollout(ctx context.Context, k netsetup.Kernel, spec *model.Spec, hv string, req *store.RolloutRequest,
	desired *netsetup.HostState, obs *netsetup.Snapshot, p *netsetup.Plan) error {
	rs := &store.RolloutStatus{ID: req.ID, Revision: req.Revision, Phase: store.PhaseApplying, Steps: len(p.Steps), Started: time.Now().UTC()}
	a.rollout = rs
	log := slog.With("rollout", req.ID, "revision", req.Revision, "steps", len(p.Steps))
	finish := func(phase, detail string) {
		rs.Phase, rs.Detail, rs.Took = phase, detail, time.Since(rs.Started)
		log.Info("agent: roll-out "+phase, "detail", detail, "took", rs.Took.Round(time.Millisecond))
		a.remember()
	}
	if p.Refused != "" {
		finish(store.PhaseFailed, "the plan cannot run here: "+p.Refused)
		return nil
	}
	targets := a.peers(spec, hv)
	before := a.answering(ctx, targets)
	if p.Empty() {
		a.applied = req.Revision
		finish(store.PhaseConfirmed, "nothing to change")
		return nil
	}
	a.publishRollout(ctx)
	timeout := req.ConfirmTimeout
	if timeout <= 0 {
		timeout = 2 * checkWindow
	}
	start := time.Now()
	id, err := confirm.Apply(k, confirm.Request{
		Store: confirm.Store{Dir: a.stateDir}, Hypervisor: hv, Desired: desired, Observed: obs, Plan: p,
		Options: netsetup.ApplyOptions{AllowDisruptive: true}, Timeout: timeout, AlwaysArm: true,
		RollbackArgv: a.rollbackArgv,
	})
	a.lastApply = &store.ApplyResult{Revision: req.Revision, Steps: len(p.Steps), Took: time.Since(start), At: time.Now().UTC()}
	if err != nil {
		a.lastApply.Error = err.Error()
		a.metrics.applied(a.lastApply)
		if id != "" {
			_, rerr := confirm.Store{Dir: a.stateDir}.RollbackNow(k, id, nil)
			finish(store.PhaseRolledBack, fmt.Sprintf("apply failed (%v); rolled back%s", err, errSuffix(rerr)))
		} else {
			finish(store.PhaseFailed, fmt.Sprintf("apply failed and was undone: %v", err))
		}
		return nil
	}
	a.metrics.applied(a.lastApply)
	rs.Phase = store.PhaseChecking
	a.publishRollout(ctx)
	missing := a.check(ctx, before)
	if len(missing) == 0 {
		if err := (confirm.Store{Dir: a.stateDir}).Confirm(id); err != nil {
			finish(store.PhaseFailed, "applied and checked, but the confirm failed (the automatic rollback will undo it): "+err.Error())
			return nil
		}
		a.applied = req.Revision
		finish(store.PhaseConfirmed, fmt.Sprintf("%d steps; %s answer", len(p.Steps), describeTargets(before)))
		return nil
	}
	_, rerr := confirm.Store{Dir: a.stateDir}.RollbackNow(k, id, nil)
	a.lastApply.Error = "connectivity check failed: " + strings.Join(missing, ", ")
	finish(store.PhaseRolledBack, fmt.Sprintf("after the apply %s did not answer within %v; rolled back%s", strings.Join(missing, ", "), checkWindow, errSuffix(rerr)))
	return nil
}

func errSuffix(err error) string {
	if err != nil {
		return " (with an error: " + err.Error() + ")"
	}
	return ""
}

// publishRollout publishes the roll-out's phase at once, best effort: the
// store may be out of reach while the change is in flight.
func (a *agent) publishRollout(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	hs := store.HostState{Hypervisor: a.hv, Heartbeat: time.Now().UTC(), Interval: a.interval, Version: version,
		AppliedRevision: a.applied, Rollout: a.rollout, LastApply: a.lastApply}
	_ = a.st.PublishHost(pctx, hs, 3*a.interval)
}

// target is an address the connectivity check pings.
type target struct {
	what string
	addr netip.Addr
}

// peers are the other hypervisors' management IPs and the VIP.
func (a *agent) peers(spec *model.Spec, hv string) []target {
	var out []target
	for _, h := range spec.Hypervisors {
		if h.Name == hv {
			continue
		}
		if ip, err := managementAddr(h.ManagementIP); err == nil {
			out = append(out, target{h.Name + " (" + ip.String() + ")", ip})
		}
	}
	if ip, err := netip.ParseAddr(spec.Cluster.VIP); err == nil {
		out = append(out, target{"the VIP " + ip.String(), ip})
	}
	return out
}

// answering are the targets that answer now: only those must answer after
// the change (a hypervisor already down must not stop every roll-out).
func (a *agent) answering(ctx context.Context, ts []target) []target {
	var out []target
	for _, t := range ts {
		if _, err := a.pinger.Any(ctx, t.addr, 3, 500*time.Millisecond); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// check waits up to checkWindow for every target and the store; it
// returns what never answered.
func (a *agent) check(ctx context.Context, ts []target) []string {
	deadline := time.Now().Add(checkWindow)
	pending := slices.Clone(ts)
	storeOK := false
	for {
		pending = slices.DeleteFunc(pending, func(t target) bool {
			_, err := a.pinger.Ping(ctx, t.addr, 300*time.Millisecond)
			return err == nil
		})
		if !storeOK {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _, err := a.st.Backend().List(sctx, "spec/current")
			cancel()
			storeOK = err == nil
		}
		if (len(pending) == 0 && storeOK) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var missing []string
	for _, t := range pending {
		missing = append(missing, t.what)
	}
	if !storeOK {
		missing = append(missing, "the cluster store")
	}
	return missing
}

func describeTargets(ts []target) string {
	if len(ts) == 0 {
		return "no peer answered before the change either"
	}
	var names []string
	for _, t := range ts {
		names = append(names, t.what)
	}
	return strings.Join(names, ", ") + " and the store"
}
