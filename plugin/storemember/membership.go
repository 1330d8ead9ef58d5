package storemember

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gallium/gallium-net/plugin/model"
)

// Errors the membership helpers wrap, for callers that act on them.
var (
	// ErrNameTaken: AddLearner found a member of that name.
	ErrNameTaken = errors.New("name already in the cluster")
	// ErrNoMember: no member of that name.
	ErrNoMember = errors.New("no such member")
)

// PromoteTimeout bounds Promote when its context has no earlier deadline:
// a learner of a small store catches up in seconds, and one that has not
// after this long is not going to without help.
const PromoteTimeout = 2 * time.Minute

// healthTries bound the status requests to each member: a dead one must
// not hold up the report on the others, and a live one on a loaded host
// (a TLS dial and a status call that outlast the first bound) must not be
// reported as not answering after a single slow try. The second try only
// follows a timeout: a refused connection is an answer.
var healthTries = []time.Duration{3 * time.Second, 5 * time.Second}

// AddLearner adds the hypervisor name, reachable at peerURL, to the cluster
// as a learner (a member that receives the data but does not vote yet), and
// returns the InitialCluster it must start with (State existing). It is run
// by a member of the cluster on behalf of the joiner.
//
// A name already in the cluster is refused: etcd would take it, and two
// members of one name are a reinstalled hypervisor's dead twin, which must
// be removed first (RemoveByName). Calling it again for a joiner that was
// added but never started returns the same answer, so a failed join can
// simply be retried.
func AddLearner(ctx context.Context, cli *clientv3.Client, name, peerURL string) (map[string]string, error) {
	what := "store member " + name
	if err := model.IsHostname(name); err != nil {
		return nil, fmt.Errorf("%s: the hypervisor %v", what, err)
	}
	u, err := parseURL(peerURL, DefaultPeerPort)
	if err != nil {
		return nil, fmt.Errorf("%s: peer URL: %v", what, err)
	}
	peerURL = u.String()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: listing the cluster's members: %w", what, err)
	}
	for _, m := range list.Members {
		if m.Name == name {
			return nil, fmt.Errorf("%s: %w: member %x (peer URL %s) already has this name; if %s was reinstalled, remove the dead member first (RemoveByName %s) and join again",
				what, ErrNameTaken, m.ID, strings.Join(m.PeerURLs, ","), name, name)
		}
		if !slices.Contains(m.PeerURLs, peerURL) {
			continue
		}
		if m.Name == "" && m.IsLearner {
			// Added by an earlier AddLearner whose joiner never started
			// (etcd learns a member's name when it starts).
			return initialCluster(list.Members, m.ID, name), nil
		}
		return nil, fmt.Errorf("%s: peer URL %s is already member %s's (ID %x): one member per management IP; if %s is a reinstalled %s under a new name, remove the old member first (RemoveByName %s)",
			what, peerURL, memberName(m), m.ID, name, memberName(m), memberName(m))
	}
	// etcd refuses a new member until every member has been connected to
	// the others for 5 s: the hypervisor that joined just before this one
	// makes the cluster "unhealthy" for that long.
	wctx, cancel := context.WithTimeout(ctx, removeUnhealthyWait)
	defer cancel()
	for {
		resp, err := cli.MemberAddAsLearner(wctx, []string{peerURL})
		if err == nil {
			return initialCluster(resp.Members, resp.Member.ID, name), nil
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || wctx.Err() != nil {
			return nil, explainAdd(what, err, list.Members)
		}
		select {
		case <-wctx.Done():
			return nil, explainAdd(what, err, list.Members)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func explainAdd(what string, err error, members []*etcdserverpb.Member) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyLearners) || strings.Contains(err.Error(), "too many learner"):
		var joining []string
		for _, m := range members {
			if m.IsLearner {
				joining = append(joining, memberName(m))
			}
		}
		return fmt.Errorf("%s: %w (%s, still a learner) and etcd takes one at a time: retry when it is done; if that join was abandoned, remove it first (RemoveByName %s) (etcd: %w)",
			what, ErrJoinInProgress, strings.Join(joining, ", "), strings.Join(joining, ", "), err)
	case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
		return fmt.Errorf("%s: the cluster takes no new member while some of its members are down (etcd keeps its quorum safe): start them, or remove the dead ones (RemoveByName), then retry (etcd: %w)", what, err)
	case errors.Is(err, rpctypes.ErrUnhealthy):
		return fmt.Errorf("%s: etcd takes no new member while the running members have not all been connected to each other for 5 s: check that every member runs and reaches the others' peer ports ('gallium-net cluster status'), then retry (etcd: %w)", what, err)
	case errors.Is(err, rpctypes.ErrPeerURLExist):
		return fmt.Errorf("%s: another hypervisor was added with this peer URL just now: check who is joining, then retry (etcd: %w)", what, err)
	}
	return fmt.Errorf("%s: adding it as a learner: %w", what, err)
}

// memberName names a member in messages: a member that never started has
// no name yet, only its peer URL.
func memberName(m *etcdserverpb.Member) string {
	if m.Name != "" {
		return m.Name
	}
	if len(m.PeerURLs) > 0 {
		return m.PeerURLs[0]
	}
	return fmt.Sprintf("%x", m.ID)
}

// initialCluster is what the member id, to be named name, starts with. A
// member that never started has no name; etcd matches members by peer URL
// when a member joins, so any unique name does for it.
func initialCluster(members []*etcdserverpb.Member, id uint64, name string) map[string]string {
	out := make(map[string]string, len(members))
	for _, m := range members {
		n := m.Name
		switch {
		case m.ID == id:
			n = name
		case n == "":
			n = fmt.Sprintf("unstarted-%x", m.ID)
		}
		if len(m.PeerURLs) > 0 {
			out[n] = m.PeerURLs[0]
		}
	}
	return out
}

// Promote makes the learner name a voting member. etcd refuses while the
// learner has not caught up with the leader; Promote retries until it has,
// ctx ends, or PromoteTimeout passes. A member that votes already is left
// as it is.
func Promote(ctx context.Context, cli *clientv3.Client, name string) error {
	what := "store member " + name
	ctx, cancel := context.WithTimeout(ctx, PromoteTimeout)
	defer cancel()
	started := time.Now()
	delay := 100 * time.Millisecond
	for {
		m, err := memberByName(ctx, cli, name)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !m.IsLearner {
			return nil
		}
		_, err = cli.MemberPromote(ctx, m.ID)
		switch {
		case err == nil, errors.Is(err, rpctypes.ErrMemberNotLearner):
			return nil
		case !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) && !strings.Contains(err.Error(), "in sync with leader"):
			return fmt.Errorf("%s: promoting the learner: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: still catching up with the leader after %v, so etcd does not promote it yet: check that it runs and reaches the other members' peer ports: %w",
				what, time.Since(started).Round(time.Second), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// memberByName finds the member name. etcd learns a member's name only
// when it starts, so a joiner added but not started is not found.
func memberByName(ctx context.Context, cli *clientv3.Client, name string) (*etcdserverpb.Member, error) {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's members: %w", err)
	}
	for _, m := range list.Members {
		if m.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: the cluster has no member of this name (members: %s); a hypervisor added by AddLearner gets its name when it starts", ErrNoMember, names(list.Members))
}

func names(members []*etcdserverpb.Member) string {
	var out []string
	for _, m := range members {
		out = append(out, memberName(m))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// RemoveByName removes the member name from the cluster: a hypervisor that
// is gone for good, or the dead twin of a reinstalled one before it joins
// again. name may also be the peer URL of a member that was added but
// never started, which has no name. A removed member's data directory is
// of no use any more; the member stops by itself when it learns of its
// removal.
func RemoveByName(ctx context.Context, cli *clientv3.Client, name string) error {
	what := "store member " + name
	list, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("%s: listing the cluster's members: %w", what, err)
	}
	var ids []uint64
	for _, m := range list.Members {
		if m.Name == name || (m.Name == "" && slices.Contains(m.PeerURLs, name)) {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("%s: %w: the cluster has no member of this name (members: %s)", what, ErrNoMember, names(list.Members))
	}
	if len(ids) == len(list.Members) {
		return fmt.Errorf("%s: it is the cluster's last member: removing it would leave no store; stop the service instead", what)
	}
	for _, id := range ids {
		if err := removeMember(ctx, cli, what, id); err != nil {
			return err
		}
	}
	return nil
}

// removeUnhealthyWait bounds RemoveByName's retries while etcd refuses to
// remove a running voting member: it wants the members that remain to have
// been connected for 5 s (its HealthInterval) first, so that the removal
// cannot cost the quorum; a member that just joined or restarted is
// refused until then.
const removeUnhealthyWait = 15 * time.Second

func removeMember(ctx context.Context, cli *clientv3.Client, what string, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, removeUnhealthyWait)
	defer cancel()
	for {
		_, err := cli.MemberRemove(ctx, id)
		switch {
		case err == nil, errors.Is(err, rpctypes.ErrMemberNotFound):
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
			return fmt.Errorf("%s: removing member %x would leave too few running members for a quorum (etcd refuses): start the stopped members first (etcd: %w)", what, id, err)
		case !errors.Is(err, rpctypes.ErrUnhealthy):
			return fmt.Errorf("%s: removing member %x: %w", what, id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: etcd refuses to remove member %x while the members that would remain have not all been connected to each other for 5 s: check that they run and reach each other's peer ports, then retry (etcd: %w)", what, id, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// MemberHealth is one member as `cluster status` shows it.
type MemberHealth struct {
	// Name is empty for a member added but never started.
	Name       string
	ID         uint64
	PeerURLs   []string
	ClientURLs []string
	// Leader: the leader that the reachable member with the latest term
	// names.
	Leader bool
	// Learner: added, not yet promoted to a voting member.
	Learner bool
	// Reachable: it answered a status request on a client URL.
	Reachable bool
	// Revision is the store's revision as this member has applied it;
	// Version its etcd version; DBSize its database file's size in bytes.
	Revision int64
	Version  string
	DBSize   int64
	// Err says why it is not reachable.
	Err error
}

// Health lists the cluster's members and asks each for its status, in
// parallel. Only a failure to list the members is an error; an
// unreachable member is a MemberHealth with Reachable false.
func Health(ctx context.Context, cli *clientv3.Client) ([]MemberHealth, error) {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("store health: listing the cluster's members: %w", err)
	}
	out := make([]MemberHealth, len(list.Members))
	terms := make([]uint64, len(list.Members))
	leaders := make([]uint64, len(list.Members))
	var wg sync.WaitGroup
	for i, m := range list.Members {
		out[i] = MemberHealth{
			Name: m.Name, ID: m.ID, Learner: m.IsLearner,
			PeerURLs: slices.Clone(m.PeerURLs), ClientURLs: slices.Clone(m.ClientURLs),
		}
		if len(m.ClientURLs) == 0 {
			out[i].Err = errors.New("not started yet: it has no client URL")
			continue
		}
		wg.Go(func() {
			h := &out[i]
			for _, ep := range m.ClientURLs {
				st, err := memberStatus(ctx, cli, ep, healthTries)
				if err != nil {
					h.Err = fmt.Errorf("%s: %w", ep, err)
					continue
				}
				h.Reachable, h.Err = true, nil
				h.Version, h.DBSize = st.Version, st.DbSize
				if st.Header != nil {
					h.Revision = st.Header.Revision
				}
				terms[i], leaders[i] = st.RaftTerm, st.Leader
				return
			}
		})
	}
	wg.Wait()
	var term, leader uint64
	for i := range out {
		if out[i].Reachable && terms[i] >= term && leaders[i] != 0 {
			term, leader = terms[i], leaders[i]
		}
	}
	for i := range out {
		out[i].Leader = leader != 0 && out[i].ID == leader
	}
	slices.SortFunc(out, func(a, b MemberHealth) int {
		// Unstarted (unnamed) members last.
		if (a.Name == "") != (b.Name == "") {
			if a.Name == "" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out, nil
}

// statuser is the one call of etcd's maintenance API that Health makes.
type statuser interface {
	Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error)
}

// memberStatus asks endpoint for its status, each try bounded by the next
// of tries (and by ctx); it tries again only when a try ran out of time
// while ctx had not.
func memberStatus(ctx context.Context, cli statuser, endpoint string, tries []time.Duration) (*clientv3.StatusResponse, error) {
	var err error
	for _, d := range tries {
		sctx, cancel := context.WithTimeout(ctx, d)
		var st *clientv3.StatusResponse
		st, err = cli.Status(sctx, endpoint)
		timedOut := sctx.Err() != nil
		cancel()
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil || !timedOut {
			return nil, err
		}
	}
	return nil, err
}
