package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
	"github.com/gallium/gallium-net/plugin/storemember"
)

// storeClient opens this hypervisor's client of the store, from its
// membership.
func storeClient(h clusterhome.Home) (*clusterhome.Member, *etcdstore.Backend, error) {
	m, err := h.Load()
	if err != nil {
		return nil, nil, err
	}
	b, err := etcdstore.Open(m.Client(h))
	if err != nil {
		return nil, nil, err
	}
	return m, b, nil
}

// storeHealth is the health of every member, asked through m's client.
func storeHealth(ctx context.Context, h clusterhome.Home, m clusterhome.Member) ([]storemember.MemberHealth, error) {
	b, err := etcdstore.Open(m.Client(h))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return storemember.Health(ctx, b.Client())
}

// clusterStatus is what `cluster status` prints.
type clusterStatus struct {
	Cluster string `json:"cluster" yaml:"cluster"`
	// Member is the hypervisor that answered.
	Member string      `json:"member" yaml:"member"`
	Store  storeStatus `json:"store" yaml:"store"`
	Spec   *specStatus `json:"spec,omitempty" yaml:"spec,omitempty"`
	// Hypervisors are what each agent published, by name; one that has
	// not published (or stopped) has Reachable false.
	Hypervisors []hvStatus `json:"hypervisors" yaml:"hypervisors"`
	VIPHolder   string     `json:"vipHolder,omitempty" yaml:"vipHolder,omitempty"`
	OK          bool       `json:"ok" yaml:"ok"`
	Issues      []string   `json:"issues,omitempty" yaml:"issues,omitempty"`
	// Warnings do not make the status fail (a two-member store works).
	Warnings []string  `json:"warnings,omitempty" yaml:"warnings,omitempty"`
	At       time.Time `json:"at" yaml:"at"`
}

type storeStatus struct {
	Leader  string         `json:"leader" yaml:"leader"`
	Members []memberStatus `json:"members" yaml:"members"`
}

type memberStatus struct {
	Name      string `json:"name" yaml:"name"`
	ID        string `json:"id" yaml:"id"`
	PeerURL   string `json:"peerURL" yaml:"peerURL"`
	Reachable bool   `json:"reachable" yaml:"reachable"`
	Leader    bool   `json:"leader" yaml:"leader"`
	Learner   bool   `json:"learner" yaml:"learner"`
	Revision  int64  `json:"revision,omitempty" yaml:"revision,omitempty"`
	Version   string `json:"version,omitempty" yaml:"version,omitempty"`
	DBSize    int64  `json:"dbSize,omitempty" yaml:"dbSize,omitempty"`
	Error     string `json:"error,omitempty" yaml:"error,omitempty"`
}

type hvStatus struct {
	Name string `json:"name" yaml:"name"`
	// Reachable: its agent published within three of its intervals.
	Reachable bool `json:"reachable" yaml:"reachable"`
	// HeartbeatAge is how long ago it last published (-1: never).
	HeartbeatAge    time.Duration        `json:"heartbeatAge" yaml:"heartbeatAge"`
	StoredRevision  int64                `json:"storedRevision" yaml:"storedRevision"`
	AppliedRevision int64                `json:"appliedRevision" yaml:"appliedRevision"`
	InSync          bool                 `json:"inSync" yaml:"inSync"`
	Drift           []string             `json:"drift,omitempty" yaml:"drift,omitempty"`
	Groups          []store.HostGroup    `json:"groups,omitempty" yaml:"groups,omitempty"`
	Networks        map[string]bool      `json:"networks,omitempty" yaml:"networks,omitempty"`
	RunningNICs     int                  `json:"runningNICs" yaml:"runningNICs"`
	HoldsVIP        bool                 `json:"holdsVIP,omitempty" yaml:"holdsVIP,omitempty"`
	Rollout         *store.RolloutStatus `json:"rollout,omitempty" yaml:"rollout,omitempty"`
	LastError       string               `json:"lastError,omitempty" yaml:"lastError,omitempty"`
	Version         string               `json:"version,omitempty" yaml:"version,omitempty"`
}

type specStatus struct {
	Revision int64     `json:"revision" yaml:"revision"`
	Pushed   time.Time `json:"pushed" yaml:"pushed"`
	By       string    `json:"by,omitempty" yaml:"by,omitempty"`
}

func clusterStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "the cluster store in one view: members, leader, health, the stored spec's revision",
		Description: `Asks every store member for its status through this hypervisor's member (or
the others when it is down). Exits 1 when a member does not answer, is
still a learner, or there is no leader: monitoring can run it as it is.

Examples:
   gallium-net cluster status
   gallium-net cluster status -o json`,
		Flags:  []cli.Flag{clusterDirFlag(), outputFlag(), configFlag()},
		Action: clusterStatusAction,
	}
}

func clusterStatusAction(c *cli.Context) error {
	h := homeOf(c)
	m, b, err := storeClient(h)
	if err != nil {
		return err
	}
	defer b.Close()
	st := collectStatus(c.Context, m, b)
	if err := printOut(c, st, func(w *tabwriter.Writer) { st.table(w) }); err != nil {
		return err
	}
	if !st.OK {
		return &exitError{code: exitFailure, err: fmt.Errorf("cluster %s: %s", st.Cluster, strings.Join(st.Issues, "; "))}
	}
	return nil
}

func collectStatus(ctx context.Context, m *clusterhome.Member, b *etcdstore.Backend) clusterStatus {
	st := clusterStatus{Cluster: m.Cluster, Member: m.Name, At: time.Now().UTC()}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := storemember.Health(hctx, b.Client())
	if err != nil {
		st.Issues = append(st.Issues, "store unreachable: "+err.Error())
		return st
	}
	for _, mh := range members {
		ms := memberStatus{
			Name: mh.Name, ID: fmt.Sprintf("%x", mh.ID), Reachable: mh.Reachable, Leader: mh.Leader, Learner: mh.Learner,
			Revision: mh.Revision, Version: mh.Version, DBSize: mh.DBSize,
		}
		if len(mh.PeerURLs) > 0 {
			ms.PeerURL = mh.PeerURLs[0]
		}
		name := mh.Name
		if name == "" {
			name = "(not started) " + ms.PeerURL
		}
		if mh.Err != nil {
			ms.Error = mh.Err.Error()
		}
		switch {
		case !mh.Reachable:
			st.Issues = append(st.Issues, fmt.Sprintf("member %s does not answer", name))
		case mh.Learner:
			st.Issues = append(st.Issues, fmt.Sprintf("member %s is a learner (joining, not voting yet)", name))
		}
		if mh.Leader {
			st.Store.Leader = mh.Name
		}
		st.Store.Members = append(st.Store.Members, ms)
	}
	if st.Store.Leader == "" {
		st.Issues = append(st.Issues, "the store has no leader")
	}
	voting := 0
	for _, ms := range st.Store.Members {
		if !ms.Learner {
			voting++
		}
	}
	if voting == 2 {
		st.Warnings = append(st.Warnings, "two voting members: the loss of either stops writes; join a third hypervisor")
	}
	sto := store.New(b)
	sto.SetReadRetry(5 * time.Second)
	rec, err := sto.Spec(ctx)
	switch {
	case err == nil:
		st.Spec = &specStatus{Revision: rec.Version, Pushed: rec.Pushed, By: rec.By}
		if spec, err := rec.Spec(); err == nil {
			st.hypervisors(ctx, sto, spec.HypervisorNames(), rec.Version)
		}
	case errors.Is(err, store.ErrNotFound):
	default:
		st.Issues = append(st.Issues, "reading the stored spec: "+err.Error())
	}
	st.OK = len(st.Issues) == 0
	return st
}

// hypervisors adds what each hypervisor's agent published.
func (st *clusterStatus) hypervisors(ctx context.Context, sto *store.Store, names []string, rev int64) {
	hosts, err := sto.Hosts(ctx)
	if err != nil {
		st.Issues = append(st.Issues, "reading the hypervisors' states: "+err.Error())
		return
	}
	now := time.Now()
	for _, name := range names {
		hs := hvStatus{Name: name, HeartbeatAge: -1}
		h := hosts[name]
		if h == nil {
			st.Issues = append(st.Issues, fmt.Sprintf("hypervisor %s: no state published: is gallium-net-agent running there?", name))
			st.Hypervisors = append(st.Hypervisors, hs)
			continue
		}
		hs.HeartbeatAge = now.Sub(h.Heartbeat).Round(100 * time.Millisecond)
		hs.Reachable = !h.Stale(now)
		hs.StoredRevision, hs.AppliedRevision, hs.InSync = h.StoredRevision, h.AppliedRevision, h.InSync
		hs.Drift, hs.Groups, hs.Networks, hs.RunningNICs = h.Drift, h.Groups, h.Networks, h.RunningNICs
		hs.HoldsVIP, hs.Rollout, hs.LastError, hs.Version = h.HoldsVIP, h.Rollout, h.LastError, h.Version
		if h.HoldsVIP && hs.Reachable {
			st.VIPHolder = name
		}
		switch {
		case !hs.Reachable:
			st.Issues = append(st.Issues, fmt.Sprintf("hypervisor %s: no heartbeat for %v", name, hs.HeartbeatAge.Round(time.Second)))
		case !h.InSync || h.AppliedRevision != rev:
			what := fmt.Sprintf("applied revision %d of %d", h.AppliedRevision, rev)
			if len(h.Drift) > 0 {
				what += "; " + strings.Join(h.Drift[:min(len(h.Drift), 3)], "; ")
				if len(h.Drift) > 3 {
					what += fmt.Sprintf(" (and %d more)", len(h.Drift)-3)
				}
			}
			st.Issues = append(st.Issues, fmt.Sprintf("hypervisor %s out of sync: %s", name, what))
		}
		for _, g := range h.Groups {
			if !g.Up || g.Active == "" {
				st.Issues = append(st.Issues, fmt.Sprintf("hypervisor %s: bond %s has no active adapter", name, g.Bond))
			}
		}
		st.Hypervisors = append(st.Hypervisors, hs)
	}
	if st.VIPHolder == "" && len(hosts) > 0 {
		st.Warnings = append(st.Warnings, "no hypervisor reports holding the VIP")
	}
}

func (st clusterStatus) table(w *tabwriter.Writer) {
	fmt.Fprintf(w, "cluster %s (asked through %s)\n", st.Cluster, st.Member)
	if st.Spec != nil {
		fmt.Fprintf(w, "spec revision %d, pushed %s by %s\n", st.Spec.Revision, st.Spec.Pushed.Format(time.RFC3339), st.Spec.By)
	} else {
		fmt.Fprintf(w, "no spec in the store yet ('gallium-net cluster apply -f SPEC')\n")
	}
	if len(st.Hypervisors) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "HYPERVISOR\tHEARTBEAT\tREVISION\tSYNC\tBONDS (ACTIVE; CARRIERS)\tNICS\tVIP\tLAST ROLL-OUT")
		for _, h := range st.Hypervisors {
			beat := "never"
			if h.HeartbeatAge >= 0 {
				beat = h.HeartbeatAge.Round(time.Second).String() + " ago"
				if !h.Reachable {
					beat += " (DOWN)"
				}
			}
			sync := "in sync"
			if !h.InSync {
				sync = fmt.Sprintf("DRIFT (%d)", len(h.Drift))
			}
			var bonds []string
			for _, g := range h.Groups {
				var carriers []string
				for _, ad := range sortedKeysOf(g.Carriers) {
					state := "up"
					if !g.Carriers[ad] {
						state = "DOWN"
					}
					carriers = append(carriers, ad+" "+state)
				}
				bonds = append(bonds, fmt.Sprintf("%s %s; %s", g.Bond, orDash(g.Active), strings.Join(carriers, ", ")))
			}
			vip := ""
			if h.HoldsVIP {
				vip = "holder"
			}
			ro := "-"
			if h.Rollout != nil {
				ro = fmt.Sprintf("%s r%d %s", h.Rollout.Phase, h.Rollout.Revision, h.Rollout.Took.Round(100*time.Millisecond))
			}
			fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%d\t%s\t%s\n", h.Name, beat, h.AppliedRevision, h.StoredRevision, sync, strings.Join(bonds, " | "), h.RunningNICs, vip, ro)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "MEMBER\tROLE\tSTATE\tREVISION\tDB\tPEER URL")
	for _, m := range st.Store.Members {
		role := "voter"
		switch {
		case m.Leader:
			role = "leader"
		case m.Learner:
			role = "learner"
		}
		state := "healthy"
		if !m.Reachable {
			state = "DOWN: " + m.Error
		}
		name := m.Name
		if name == "" {
			name = "(not started)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", name, role, state, m.Revision, humanBytes(m.DBSize), m.PeerURL)
	}
	if len(st.Issues)+len(st.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	for _, is := range st.Issues {
		fmt.Fprintf(w, "! %s\n", is)
	}
	for _, wa := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wa)
	}
}

func sortedKeysOf(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func humanBytes(n int64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func clusterRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a dead hypervisor's member from the store",
		ArgsUsage: "NAME",
		Description: `For a hypervisor that is gone for good, or was added but never started.
A reinstalled hypervisor does not need it: 'cluster join --replace' removes
its old member itself. Run it on any healthy member.

Example:
   gallium-net cluster remove hv3`,
		Flags: []cli.Flag{clusterDirFlag(), configFlag()},
		Action: func(c *cli.Context) error {
			name := c.Args().First()
			if name == "" {
				return usageErrorf("which member? 'gallium-net cluster status' lists them")
			}
			m, b, err := storeClient(homeOf(c))
			if err != nil {
				return err
			}
			defer b.Close()
			if name == m.Name {
				return fmt.Errorf("store member %s is this hypervisor: run the command on another member", name)
			}
			if err := storemember.RemoveByName(c.Context, b.Client(), name); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "store member %s removed from cluster %s\n", name, m.Cluster)
			return nil
		},
	}
}

func clusterBackupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "write a snapshot of the cluster store to a file",
		ArgsUsage: "FILE",
		Description: `Streams an etcd snapshot from this hypervisor's member (the spec history,
the MAC ledger, every host's published state) to FILE, atomically: a
failed backup leaves no partial file. The file is an ordinary etcd
snapshot ('etcdutl snapshot status FILE' reads it).

Example:
   gallium-net cluster backup /root/gallium-store-$(date +%F).db`,
		Flags:  []cli.Flag{clusterDirFlag(), configFlag()},
		Action: clusterBackup,
	}
}

func clusterBackup(c *cli.Context) error {
	path := c.Args().First()
	if path == "" {
		return usageErrorf("where to? 'gallium-net cluster backup FILE'")
	}
	m, b, err := storeClient(homeOf(c))
	if err != nil {
		return err
	}
	defer b.Close()
	started := time.Now()
	var n int64
	err = atomicfile.WriteFunc(path, 0o600, func(w io.Writer) error {
		rc, err := b.Client().Snapshot(c.Context)
		if err != nil {
			return err
		}
		defer rc.Close()
		n, err = io.Copy(w, rc)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup of cluster %s to %s: %w", m.Cluster, path, err)
	}
	fmt.Fprintf(c.App.Writer, "cluster %s: snapshot of %s (%s) written to %s in %v\n", m.Cluster, m.Name, humanBytes(n), path, time.Since(started).Round(time.Millisecond))
	return nil
}
