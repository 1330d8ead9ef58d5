package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
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
	Rejoined string
	Rejoin   time.Duration
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
		} `json:"members"`
	} `json:"store"`
	Issues   []string `json:"issues"`
	Warnings []string `json:"warnings"`
}

// checkClusterStatus runs `cluster status -o json` on h and checks that the store
// is whole with exactly the members want.
func (s *Scenario) checkClusterStatus(ctx context.Context, h *Hypervisor, want ...string) (storeStatus, error) {
	var st storeStatus
	// Exit 1 means "something is wrong" and still prints the status.
	out, err := run(ctx, h, "gallium-net cluster status -o json 2>/dev/null; true")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("%s: cluster status -o json: %w: %s", h.Name, err, tailLines(out, 5))
	}
	var names []string
	for _, m := range st.Store.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !st.OK || !slices.Equal(names, want) || st.Store.Leader == "" {
		return st, fmt.Errorf("%s: cluster status: ok %v, members %v (want %v), leader %q, issues %v", h.Name, st.OK, names, want, st.Store.Leader, st.Issues)
	}
	return st, nil
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
		if _, err := s.checkClusterStatus(ctx, h, members...); err != nil {
			return err
		}
		s.logf("  %s: cluster join: voting member after %s", h.Name, s.Report.Store.Joins[h.Name].Round(100*time.Millisecond))
	}
	// Every hypervisor sees the same three members and leader.
	if err := each(s.hvs, func(h *Hypervisor) error {
		_, err := s.checkClusterStatus(ctx, h, members...)
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
	if err := each(s.hvs, func(o *Hypervisor) error {
		_, err := s.checkClusterStatus(ctx, o, names...)
		return err
	}); err != nil {
		return err
	}
	// The wiped hypervisor reads the stored spec again.
	if _, err := run(ctx, h, "gallium-net spec diff -f /etc/gallium-net/cluster.yaml"); err != nil {
		return fmt.Errorf("%s after the rejoin: %w", h.Name, err)
	}
	s.logf("  %s: membership and data wiped; refused without --replace; rejoined with --replace in %s, store whole on all three", h.Name, s.Report.Store.Rejoin.Round(100*time.Millisecond))
	return nil
}
