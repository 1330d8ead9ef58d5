package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
)

// storeUnitName is the packaged unit that runs a hypervisor's store member.
const storeUnitName = "gallium-net-store.service"

// StoreReport is how the store came to be: `cluster init`, the joins, the
// rejoin of a wiped hypervisor.
type StoreReport struct {
	// Init is `cluster init` on the first hypervisor, to a ready member.
	Init time.Duration
	// Joins are `cluster join` per hypervisor, to a voting member.
	Joins map[string]time.Duration
	// Refused is the store's answer to a client without a certificate.
	Refused string
	// Rejoined is the hypervisor whose membership and data were wiped and
	// that joined again with --replace; Rejoin how long that took.
	// RejoinWhole: from the end of the join to cluster status whole on
	// every hypervisor.
	Rejoined    string
	Rejoin      time.Duration
	RejoinWhole time.Duration
}

// storeStatus is the part of `gallium-net cluster status -o json` the lab
// checks.
type storeStatus struct {
	Cluster string `json:"cluster"`
	OK      bool   `json:"ok"`
	Store   struct {
		Leader  string `json:"leader"`
		Members []struct {
			Name      string `json:"name"`
			Reachable bool   `json:"reachable"`
			Learner   bool   `json:"learner"`
			Error     string `json:"error"`
		} `json:"members"`
	} `json:"store"`
	Issues      []string `json:"issues"`
	Warnings    []string `json:"warnings"`
	Hypervisors []struct {
		Name     string          `json:"name"`
		InSync   bool            `json:"inSync"`
		Drift    []string        `json:"drift"`
		Networks map[string]bool `json:"networks"`
		Groups   []struct {
			Bond  string `json:"bond"`
			VLANs []int  `json:"vlans"`
		} `json:"groups"`
		Rollout *struct {
			ID    string `json:"id"`
			Phase string `json:"phase"`
		} `json:"rollout"`
	} `json:"hypervisors"`
}

// clusterStatus is `cluster status -o json` on h; its exit 1 ("something
// is wrong") still prints the status.
func (s *Scenario) clusterStatus(ctx context.Context, h *Hypervisor) (storeStatus, error) {
	var st storeStatus
	out, err := run(ctx, h, "gallium-net cluster status -o json 2>/dev/null; true")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("%s: cluster status -o json: %w: %s", h.Name, err, tailLines(out, 5))
	}
	return st, nil
}

// checkClusterStatus runs `cluster status -o json` on h and checks that the store
// is whole with exactly the members want.
func (s *Scenario) checkClusterStatus(ctx context.Context, h *Hypervisor, want ...string) (storeStatus, error) {
	st, err := s.clusterStatus(ctx, h)
	if err != nil {
		return st, err
	}
	var names []string
	for _, m := range st.Store.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !st.OK || !slices.Equal(names, want) || st.Store.Leader == "" {
		var errs []string
		for _, m := range st.Store.Members {
			if m.Error != "" {
				errs = append(errs, m.Name+": "+m.Error)
			}
		}
		return st, fmt.Errorf("%s: cluster status: ok %v, members %v (want %v), leader %q, issues %v, member errors %v", h.Name, st.OK, names, want, st.Store.Leader, st.Issues, errs)
	}
	return st, nil
}

// waitClusterStatus is checkClusterStatus until it passes or statusWait is up:
// after a membership change the members catch up (the leader sends the
// new one a snapshot), and under TCG a member's status answer can take
// longer than cluster status waits for it. It returns how long it waited.
func (s *Scenario) waitClusterStatus(ctx context.Context, h *Hypervisor, want ...string) (time.Duration, error) {
	t0 := time.Now()
	for {
		_, err := s.checkClusterStatus(ctx, h, want...)
		if err == nil || time.Since(t0) > statusWait {
			return time.Since(t0), err
		}
		s.logf("  %s: not yet whole after %s: %v", h.Name, time.Since(t0).Round(100*time.Millisecond), err)
		time.Sleep(2 * time.Second)
	}
}

// stepClusterInit: `gallium-net cluster init` on the first hypervisor,
// from the installed package alone.
func (s *Scenario) stepClusterInit(ctx context.Context) error {
	h := s.hvs[0]
	t0 := time.Now()
	out, err := run(ctx, h, "gallium-net cluster init")
	if err != nil {
		return err
	}
	s.Report.Store.Init = time.Since(t0)
	if !strings.Contains(out, "gallium-net cluster join --server "+mgmtIP(*s.spec.Hypervisor(h.Name))+" gn1::") {
		return fmt.Errorf("%s: cluster init printed no join command:\n%s", h.Name, out)
	}
	st, err := s.checkClusterStatus(ctx, h, h.Name)
	if err != nil {
		return err
	}
	s.Report.Etcd.FirstLeader = st.Store.Leader
	s.logf("  %s: cluster init: CA, member and %s ready in %s", h.Name, storeUnitName, s.Report.Store.Init.Round(100*time.Millisecond))
	return nil
}

// stepClusterJoin: `gallium-net cluster join` on the others, one after the
// other (etcd takes one learner at a time), with the token hv1 prints.
func (s *Scenario) stepClusterJoin(ctx context.Context) error {
	first := s.hvs[0]
	tok, err := run(ctx, first, "gallium-net cluster token")
	if err != nil {
		return err
	}
	tok = strings.TrimSpace(tok)
	server := mgmtIP(*s.spec.Hypervisor(first.Name))
	s.Report.Store.Joins = map[string]time.Duration{}
	members := []string{first.Name}
	for _, h := range s.hvs[1:] {
		t0 := time.Now()
		if _, err := run(ctx, h, "gallium-net cluster join --server "+server+" "+tok); err != nil {
			return err
		}
		s.Report.Store.Joins[h.Name] = time.Since(t0)
		members = append(members, h.Name)
		if _, err := s.waitClusterStatus(ctx, h, members...); err != nil {
			return err
		}
		s.logf("  %s: cluster join: voting member after %s", h.Name, s.Report.Store.Joins[h.Name].Round(100*time.Millisecond))
	}
	// Every hypervisor sees the same three members and leader.
	if err := each(s.hvs, func(h *Hypervisor) error {
		_, err := s.waitClusterStatus(ctx, h, members...)
		return err
	}); err != nil {
		return err
	}
	// A client that trusts the CA but has no certificate of its own is
	// refused by every member.
	out, err := run(ctx, s.hvs[1], "clustertool refused -endpoints "+s.endpoints())
	if err != nil {
		return fmt.Errorf("a client without a certificate: %w", err)
	}
	s.Report.Store.Refused = strings.TrimSpace(out)
	s.logf("  client without a certificate: %s", lastLine(out))
	// What an operator sees who points gallium-net at the store without
	// a certificate: the refusal named, at once.
	cmd := "gallium-net spec history --store etcd --etcd-endpoints " + s.endpoints() + " --etcd-ca /etc/gallium-net/cluster/ca.pem"
	t0 := time.Now()
	out, code, err := s.hvs[1].Run(ctx, cmd+" 2>&1")
	took := time.Since(t0)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if code == 0 || !strings.Contains(out, "refuses this client's certificate") {
		return fmt.Errorf("%s without a client certificate: exit %d, want an error naming the refused certificate: %s", cmd, code, strings.TrimSpace(tailLines(out, 5)))
	}
	s.logf("  gallium-net without a certificate, after %s: %s", took.Round(100*time.Millisecond), lastLine(out))
	return nil
}

// stepRejoin: a hypervisor's membership and store data are wiped (as a
// reinstall would) and it joins again under its old name with --replace;
// the store stays whole throughout for the other two.
func (s *Scenario) stepRejoin(ctx context.Context) error {
	h := s.hvs[len(s.hvs)-1]
	first := s.hvs[0]
	if _, err := run(ctx, h, "systemctl disable --now "+storeUnitName+" && rm -rf /etc/gallium-net/cluster /var/lib/gallium-net/store"); err != nil {
		return err
	}
	tok, err := run(ctx, first, "gallium-net cluster token")
	if err != nil {
		return err
	}
	server := mgmtIP(*s.spec.Hypervisor(first.Name))
	// Without --replace the member of the same name is in the way, and the
	// error says what to do.
	out, err := run(ctx, h, "gallium-net cluster join --server "+server+" "+strings.TrimSpace(tok))
	if err == nil || !strings.Contains(out, "--replace") {
		return fmt.Errorf("%s: join over its own old member: want a refusal naming --replace, got %v:\n%s", h.Name, err, out)
	}
	t0 := time.Now()
	if _, err := run(ctx, h, "gallium-net cluster join --replace --server "+server+" "+strings.TrimSpace(tok)); err != nil {
		return err
	}
	s.Report.Store.Rejoined, s.Report.Store.Rejoin = h.Name, time.Since(t0)
	var names []string
	for _, o := range s.hvs {
		names = append(names, o.Name)
	}
	var mu sync.Mutex
	var whole time.Duration
	if err := each(s.hvs, func(o *Hypervisor) error {
		d, err := s.waitClusterStatus(ctx, o, names...)
		mu.Lock()
		whole = max(whole, d)
		mu.Unlock()
		return err
	}); err != nil {
		return err
	}
	s.Report.Store.RejoinWhole = whole
	// The wiped hypervisor reads the stored spec again.
	if _, err := run(ctx, h, "gallium-net spec diff -f /etc/gallium-net/cluster.yaml"); err != nil {
		return fmt.Errorf("%s after the rejoin: %w", h.Name, err)
	}
	s.logf("  %s: membership and data wiped; refused without --replace; rejoined with --replace in %s, store whole on all three %s later", h.Name, s.Report.Store.Rejoin.Round(100*time.Millisecond), whole.Round(100*time.Millisecond))
	return nil
}

// rolledNetwork is the tagged network the rolling-apply step adds.
const (
	rolledNetwork = "rolled"
	rolledVLAN    = 300
	rolledVM      = "rollvm"
)

// specVariant is a deep copy of the lab's spec, changed by edit, as YAML.
func (s *Scenario) specVariant(edit func(*model.Spec)) ([]byte, error) {
	data, err := yaml.Marshal(s.spec)
	if err != nil {
		return nil, err
	}
	var cp model.Spec
	if err := yaml.Unmarshal(data, &cp); err != nil {
		return nil, err
	}
	edit(&cp)
	return yaml.Marshal(&cp)
}

// withRolled adds the rolled network on the VM group.
func withRolled(sp *model.Spec) {
	vmGroup := ""
	for _, g := range sp.AdapterGroups {
		if !g.Infrastructure {
			vmGroup = g.Name
		}
	}
	sp.Networks = append(sp.Networks, model.Network{Name: rolledNetwork, AdapterGroup: vmGroup, VLAN: rolledVLAN})
}

// applyLine matches cluster apply's progress lines: "[2/3] hv2: applying
// (4 steps) [1.2s]".
var applyLine = regexp.MustCompile(`^\[\d+/\d+\] (\S+): (applying|checking|confirmed|rolled-back|failed)\b.*\[([0-9.]+m?s|[0-9hms.]+)\]$`)

// applyPhases reads the phase lines of cluster apply's output: per
// hypervisor, per phase, the time since it was asked.
func applyPhases(out string) map[string]map[string]time.Duration {
	res := map[string]map[string]time.Duration{}
	for _, l := range strings.Split(out, "\n") {
		m := applyLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[3])
		if err != nil {
			continue
		}
		if res[m[1]] == nil {
			res[m[1]] = map[string]time.Duration{}
		}
		res[m[1]][m[2]] = d
	}
	return res
}

// RolloutReport is a `cluster apply` in the lab.
type RolloutReport struct {
	// Took is the whole command; PerHV the time from each hypervisor's
	// request to its confirm (or rollback); Reaction from the request to
	// the agent's "applying".
	Took     time.Duration
	PerHV    map[string]time.Duration
	Reaction map[string]time.Duration
	Output   string
	// RolledBack is the hypervisor that rolled back (the bad change), and
	// RollbackTook its agent's time from request to restored.
	RolledBack   string        `json:",omitempty"`
	RollbackTook time.Duration `json:",omitempty"`
	Untouched    []string      `json:",omitempty"`
}

// clusterApply runs cluster apply on h with the spec data; ok says whether
// it exited 0.
func (s *Scenario) clusterApply(ctx context.Context, h *Hypervisor, name string, data []byte) (*RolloutReport, bool, error) {
	path := "/root/" + name + ".yaml"
	if err := h.Put(ctx, path, data, 0o644); err != nil {
		return nil, false, err
	}
	t0 := time.Now()
	out, code, err := h.Run(ctx, "gallium-net cluster apply -f "+path+" 2>&1")
	if err != nil {
		return nil, false, err
	}
	r := &RolloutReport{Took: time.Since(t0), PerHV: map[string]time.Duration{}, Reaction: map[string]time.Duration{}, Output: out}
	for hv, ph := range applyPhases(out) {
		r.Reaction[hv] = ph["applying"]
		for _, end := range []string{"confirmed", "rolled-back", "failed"} {
			if d, ok := ph[end]; ok {
				r.PerHV[hv] = d
			}
		}
	}
	return r, code == 0, nil
}

// stepRollingApply: a spec that adds a tagged network, rolled out with
// `cluster apply` one hypervisor at a time; every hypervisor confirms, the
// bridges carry the VLAN, the libvirt network is there, and a new VM on
// hv3 uses it.
func (s *Scenario) stepRollingApply(ctx context.Context) error {
	h := s.hvs[0]
	data, err := s.specVariant(withRolled)
	if err != nil {
		return err
	}
	r, ok, err := s.clusterApply(ctx, h, "spec-rolled", data)
	if err != nil {
		return err
	}
	s.Report.Rollouts = append(s.Report.Rollouts, *r)
	if !ok {
		return fmt.Errorf("cluster apply (adds network %s, VLAN %d) failed:\n%s", rolledNetwork, rolledVLAN, r.Output)
	}
	for _, l := range strings.Split(strings.TrimSpace(r.Output), "\n") {
		s.logf("    %s", l)
	}
	var names []string
	for _, o := range s.hvs {
		names = append(names, o.Name)
	}
	if err := each(s.hvs, func(o *Hypervisor) error {
		st, err := s.checkClusterStatus(ctx, o, names...)
		if err != nil {
			return err
		}
		return checkRolled(st)
	}); err != nil {
		return err
	}
	// A VM uses the new network: on the last hypervisor, rolled out last.
	vh := s.hvs[len(s.hvs)-1]
	if err := vh.Put(ctx, "/root/"+rolledVM+".xml", []byte(vmXML(rolledVM)), 0o644); err != nil {
		return err
	}
	if _, err := vh.Virsh(ctx, "define /root/"+rolledVM+".xml"); err != nil {
		return err
	}
	if _, err := run(ctx, vh, "gallium-net nic add "+rolledVM+" --network "+rolledNetwork+" --profile modern"); err != nil {
		return err
	}
	if _, err := vh.Virsh(ctx, "start "+rolledVM); err != nil {
		return err
	}
	rows, err := domiflist(ctx, vh, rolledVM)
	if err != nil {
		return err
	}
	if len(rows) != 1 || rows[0].Source != rolledNetwork {
		return fmt.Errorf("%s on %s: interfaces %+v, want one on %s", rolledVM, vh.Name, rows, rolledNetwork)
	}
	vl, err := portVLANs(ctx, vh, rows[0].Tap)
	if err != nil {
		return err
	}
	if len(vl) != 1 || vl[0].VLAN != rolledVLAN || !slices.Contains(vl[0].Flags, "PVID") {
		return fmt.Errorf("%s tap %s: bridge VLANs %+v, want only VLAN %d PVID", rolledVM, rows[0].Tap, vl, rolledVLAN)
	}
	// Leave the cluster as the later steps expect it.
	if _, err := run(ctx, vh, "virsh destroy "+rolledVM+" && gallium-net nic remove "+rolledVM+" "+rows[0].MAC+" && virsh undefine "+rolledVM); err != nil {
		return err
	}
	s.logf("  revision with network %s (VLAN %d) rolled over %d hypervisors in %s; agent reaction %v; %s on %s: tap %s on VLAN %d",
		rolledNetwork, rolledVLAN, len(s.hvs), r.Took.Round(100*time.Millisecond), r.Reaction, rolledVM, vh.Name, rows[0].Tap, rolledVLAN)
	return nil
}

// checkRolled checks that every hypervisor has the rolled network's VLAN
// on its VM group's bond and the libvirt network active.
func checkRolled(st storeStatus) error {
	for _, h := range st.Hypervisors {
		if !h.InSync || !h.Networks[rolledNetwork] {
			return fmt.Errorf("hypervisor %s: in sync %v, libvirt network %s active %v (drift %v)", h.Name, h.InSync, rolledNetwork, h.Networks[rolledNetwork], h.Drift)
		}
		found := false
		for _, g := range h.Groups {
			found = found || slices.Contains(g.VLANs, rolledVLAN)
		}
		if !found {
			return fmt.Errorf("hypervisor %s: no bond carries VLAN %d: %+v", h.Name, rolledVLAN, h.Groups)
		}
	}
	if len(st.Hypervisors) == 0 {
		return fmt.Errorf("cluster status lists no hypervisor")
	}
	return nil
}

// stepRollingApplyRollback: a spec that puts the wrong adapters in hv2's
// infrastructure group. hv1 (unchanged by it) confirms; hv2 applies, loses
// its peers, and rolls back by itself; hv3 is never asked. cluster apply
// exits 1 and says so; cluster status shows hv2 and hv3 behind. The next
// step (rolling-apply) is the operator's fix: a good spec, rolled out.
func (s *Scenario) stepRollingApplyRollback(ctx context.Context) error {
	h := s.hvs[0]
	bad := s.hvs[1].Name
	data, err := s.specVariant(func(sp *model.Spec) {
		for i := range sp.AdapterGroups {
			g := &sp.AdapterGroups[i]
			if g.Infrastructure {
				g.Adapters[bad] = []string{"eno3", "eno4"}
			} else {
				g.Adapters[bad] = []string{"eno1", "eno2"}
			}
		}
		// The operator believed eno3 and eno4 were the fast ones.
		for i := range sp.Hypervisors {
			if sp.Hypervisors[i].Name != bad {
				continue
			}
			for j := range sp.Hypervisors[i].Adapters {
				a := &sp.Hypervisors[i].Adapters[j]
				if a.Name == "eno3" || a.Name == "eno4" {
					a.SpeedMbps = 10000
				} else {
					a.SpeedMbps = 1000
				}
			}
		}
	})
	if err != nil {
		return err
	}
	before, err := s.rolloutIDs(ctx, h)
	if err != nil {
		return err
	}
	r, ok, err := s.clusterApply(ctx, h, "spec-bad", data)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(r.Output), "\n") {
		s.logf("    %s", l)
	}
	if ok {
		return fmt.Errorf("cluster apply with hv2's infrastructure on the wrong adapters succeeded:\n%s", r.Output)
	}
	if !strings.Contains(r.Output, bad+" rolled-back") || !strings.Contains(r.Output, "not touched") {
		return fmt.Errorf("cluster apply did not say that %s rolled back and the rest is untouched:\n%s", bad, r.Output)
	}
	r.RolledBack, r.RollbackTook = bad, r.PerHV[bad]
	// hv3 was never asked: its last roll-out is the one before.
	after, err := s.rolloutIDs(ctx, h)
	if err != nil {
		return err
	}
	for _, o := range s.hvs[2:] {
		if after[o.Name] != before[o.Name] {
			return fmt.Errorf("%s was asked to apply the bad spec (roll-out %q, before %q)", o.Name, after[o.Name], before[o.Name])
		}
		r.Untouched = append(r.Untouched, o.Name)
	}
	// Status says so: not ok, hv2 behind.
	st, err := s.clusterStatus(ctx, h)
	if err != nil {
		return err
	}
	if st.OK {
		return fmt.Errorf("cluster status ok after a rolled-back change: %+v", st)
	}
	// hv2 is behind; hv3, never asked, is in sync all the same: the bad
	// revision changes nothing of it.
	if !slices.ContainsFunc(st.Issues, func(is string) bool { return strings.Contains(is, "hypervisor "+bad+" out of sync") }) {
		return fmt.Errorf("cluster status does not name %s out of sync: %v", bad, st.Issues)
	}
	// hv2 still reaches everyone (its change was undone).
	if err := s.pingAll(ctx, "after "+bad+"'s rollback"); err != nil {
		return err
	}
	s.Report.Rollouts = append(s.Report.Rollouts, *r)
	s.logf("  %s rolled back by itself %s after it was asked; %v untouched; cluster status: %v", bad, r.RollbackTook.Round(100*time.Millisecond), r.Untouched, st.Issues)
	return nil
}

// rolloutIDs is each hypervisor's last roll-out ID as cluster status shows.
func (s *Scenario) rolloutIDs(ctx context.Context, h *Hypervisor) (map[string]string, error) {
	st, err := s.clusterStatus(ctx, h)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, hv := range st.Hypervisors {
		if hv.Rollout != nil {
			ids[hv.Name] = hv.Rollout.ID
		}
	}
	return ids, nil
}

// statusWait bounds the wait for `cluster status` to be ok after a step:
// agents publish at once after a change and every 10 s otherwise, and a
// rebooted hypervisor's agent publishes a few seconds after its start.
const statusWait = 60 * time.Second

// statusAfter checks `cluster status -o json` after each step once the
// store exists: ok within statusWait, except after the VIP holder's power
// cut, where it must name the dead hypervisor instead.
func (s *Scenario) statusAfter(ctx context.Context, step string) (*StepStatus, error) {
	if s.Report.Store.Init == 0 || step == "report" {
		return nil, nil
	}
	// The rolled-back change leaves hv2 and hv3 behind on purpose; the
	// step checks that status itself.
	expectNotOK := step == "rolling-apply-rollback"
	down := s.Report.VIP.Stopped
	var asker *Hypervisor
	for _, h := range s.hvs {
		if h.Name != down {
			asker = h
			break
		}
	}
	if down != "" {
		// Past the agents' lease (3 intervals of 10 s) from the cut, so a
		// lease whose renewals hung on the dead member has run out.
		time.Sleep(time.Until(s.Report.VIP.CutAt.Add(35 * time.Second)))
	}
	t0 := time.Now()
	ss := &StepStatus{Asked: asker.Name}
	for {
		st, err := s.clusterStatus(ctx, asker)
		if err != nil {
			return ss, err
		}
		ss.OK, ss.Issues, ss.Waited = st.OK, st.Issues, time.Since(t0)
		if down != "" {
			// The powered-off hypervisor is named, and nothing else is
			// wrong. A live hypervisor's record must outlive the other's
			// power cut: its agent renews the lease through the members
			// that still answer.
			named, others := false, []string(nil)
			for _, is := range st.Issues {
				if strings.Contains(is, down) {
					named = true
				} else {
					others = append(others, is)
				}
			}
			for _, is := range others {
				if strings.Contains(is, "no state published") {
					return ss, fmt.Errorf("cluster status on %s %s after %s lost its power: a live hypervisor's state is gone: %s",
						asker.Name, time.Since(s.Report.VIP.CutAt).Round(time.Second), down, is)
				}
			}
			if named && len(others) == 0 {
				s.logf("  cluster status after %s (from %s, %s after the power cut): %s down, as it must be: %v",
					step, asker.Name, time.Since(s.Report.VIP.CutAt).Round(time.Second), down, st.Issues)
				return ss, nil
			}
		} else if expectNotOK {
			return ss, nil
		} else if st.OK {
			if ss.Waited > 2*time.Second {
				s.logf("  cluster status ok after %s (from %s), %s after the step", step, asker.Name, ss.Waited.Round(100*time.Millisecond))
			}
			return ss, nil
		}
		if ss.Waited > statusWait {
			return ss, fmt.Errorf("cluster status on %s not ok %v after step %s: %v", asker.Name, statusWait, step, st.Issues)
		}
		time.Sleep(2 * time.Second)
	}
}
