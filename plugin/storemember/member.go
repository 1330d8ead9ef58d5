package storemember

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// ErrRemoved is what Start and Err wrap when the cluster has removed this
// member: its data directory is of no use any more.
var ErrRemoved = errors.New("member removed from the cluster")

// Member is this hypervisor's running store member.
type Member struct {
	cfg  Config
	etcd *embed.Etcd
	elog *etcdLog

	errc      chan error
	stopping  chan struct{}
	watchDone chan struct{}
	stopOnce  sync.Once
}

// Start starts the member and waits until it serves: it has joined its
// cluster and a leader knows it. It waits at most cfg.StartTimeout, or
// until ctx ends. On failure etcd is stopped again and the error explains
// what etcd reported, in operator words where the trap is a known one.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	cfg = cfg.WithDefaults()
	facts, err := cfg.check()
	if err != nil {
		return nil, err
	}
	fresh, err := cfg.checkDataDir(facts)
	if err != nil {
		return nil, err
	}
	// etcd wants its data directory private; created here so the marker
	// can go in before etcd writes anything.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: DataDir: %w", cfg.what(), err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: DataDir: %w", cfg.what(), err)
	}
	if fresh {
		// Written before etcd starts, so that no etcd data ever exists
		// without a marker that says whose it is.
		if err := writeMarker(cfg.DataDir, marker{Cluster: cfg.ClusterName, Member: cfg.Name, CAHashes: facts.caHashes}); err != nil {
			return nil, fmt.Errorf("%s: writing the data directory's marker: %w", cfg.what(), err)
		}
	}
	log := cfg.Logger.With("member", cfg.Name)
	elog := newEtcdLog(log)
	ecfg := cfg.embedConfig(facts, elog)

	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	started := time.Now()

	// StartEtcd takes no context and, for a joining member, asks the
	// other members for the cluster's membership before it returns.
	type result struct {
		e   *embed.Etcd
		err error
	}
	res := make(chan result, 1)
	go func() {
		e, err := embed.StartEtcd(ecfg)
		res <- result{e, err}
	}()
	var e *embed.Etcd
	select {
	case r := <-res:
		if r.err != nil {
			elog.silence()
			return nil, cfg.explain(r.err, elog.lastMessages())
		}
		e = r.e
	case <-ctx.Done():
		elog.silence()
		go func() {
			if r := <-res; r.e != nil {
				r.e.Close()
			}
		}()
		return nil, cfg.notReady(ctx.Err(), time.Since(started), elog.lastMessages())
	}

	fail := func(err error) (*Member, error) {
		elog.silence()
		e.Close()
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		if err == nil {
			err = errors.New("a listener stopped")
		}
		return fail(cfg.explain(err, elog.lastMessages()))
	case <-e.Server.StopNotify():
		return fail(cfg.explain(errors.New("etcd stopped while starting"), elog.lastMessages()))
	case <-ctx.Done():
		return fail(cfg.notReady(ctx.Err(), time.Since(started), elog.lastMessages()))
	}

	m := &Member{
		cfg: cfg, etcd: e, elog: elog,
		errc:      make(chan error, 1),
		stopping:  make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	mk := marker{
		Cluster: cfg.ClusterName, Member: cfg.Name, CAHashes: facts.caHashes,
		ClusterID: e.Server.Cluster().ID().String(), MemberID: e.Server.MemberID().String(),
	}
	if err := writeMarker(cfg.DataDir, mk); err != nil {
		// The running member is fine; the next start would still find
		// the marker written before the first one.
		log.Warn("store member: could not update the data directory's marker", "error", err)
	}
	log.Info("store member ready", "cluster", cfg.ClusterName, "cluster-id", mk.ClusterID, "member-id", mk.MemberID,
		"learner", e.Server.IsLearner(), "took", time.Since(started).Round(time.Millisecond))
	go m.watch()
	return m, nil
}

// watch turns etcd stopping by itself (removed from the cluster, a
// listener failing) into the one error Err delivers.
func (m *Member) watch() {
	defer close(m.watchDone)
	var err error
	select {
	case <-m.stopping:
		return
	case err = <-m.etcd.Err():
		if err == nil {
			err = errors.New("a listener stopped")
		}
	case <-m.etcd.Server.StopNotify():
		err = errors.New("etcd stopped")
	}
	select {
	case <-m.stopping:
		return
	default:
	}
	m.errc <- m.cfg.explain(err, m.elog.lastMessages())
}

// Stop stops the member: a leader hands its leadership over first, so the
// cluster does not wait an election timeout. Safe to call more than once.
func (m *Member) Stop() {
	m.stopOnce.Do(func() {
		close(m.stopping)
		m.elog.silence()
		m.etcd.Close()
		<-m.watchDone
		m.cfg.Logger.Info("store member stopped", "member", m.cfg.Name)
	})
}

// Err delivers one error if the member stops by itself, for example when
// the cluster removed it; call Stop afterwards to free its ports. Nothing
// arrives after Stop.
func (m *Member) Err() <-chan error { return m.errc }

// ClientEndpoints are the URLs a client on this hypervisor dials: the
// advertised client URL, then the loopback one when there is one.
func (m *Member) ClientEndpoints() []string {
	var out []string
	for _, u := range m.cfg.listenClientURLs() {
		out = append(out, u.String())
	}
	return out
}

// ID is etcd's ID of this member.
func (m *Member) ID() uint64 { return uint64(m.etcd.Server.MemberID()) }

func (c Config) embedConfig(facts tlsFacts, elog *etcdLog) *embed.Config {
	peer, _ := parseURL(c.PeerURL, DefaultPeerPort)
	client, _ := parseURL(c.ClientURL, DefaultClientPort)
	tlsInfo := transport.TLSInfo{
		CertFile: c.CertFile, KeyFile: c.KeyFile,
		TrustedCAFile: c.CAFile, ClientCertAuth: true,
	}
	e := embed.NewConfig()
	e.Name = c.Name
	e.Dir = c.DataDir
	e.ListenPeerUrls, e.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	e.ListenClientUrls, e.AdvertiseClientUrls = c.listenClientURLs(), []url.URL{*client}
	e.ClientTLSInfo, e.PeerTLSInfo = tlsInfo, tlsInfo
	var ic []string
	for _, name := range sortedKeys(c.InitialCluster) {
		u, _ := parseURL(c.InitialCluster[name], DefaultPeerPort)
		ic = append(ic, name+"="+u.String())
	}
	e.InitialCluster = strings.Join(ic, ",")
	// Only the first member's token counts (joiners take the running
	// cluster's ID). With the CA in it, a cluster initialised again under
	// the same name and IPs gets another cluster ID, so that old members
	// are refused rather than mixed in.
	e.InitialClusterToken = "gallium-net-" + c.ClusterName + "-" + facts.issuerHash[:16]
	e.ClusterState = embed.ClusterStateFlagNew
	if c.State == StateExisting {
		e.ClusterState = embed.ClusterStateFlagExisting
	}
	e.TickMs = uint(c.HeartbeatInterval / time.Millisecond)
	e.ElectionMs = uint(c.ElectionTimeout / time.Millisecond)
	e.SnapshotCount = c.SnapshotCount
	e.QuotaBackendBytes = c.QuotaBackendBytes
	e.AutoCompactionMode = embed.CompactorModePeriodic
	e.AutoCompactionRetention = c.CompactionRetention.String()
	e.Logger, e.LogLevel = "zap", "warn"
	e.ZapLoggerBuilder = embed.NewZapLoggerBuilder(elog.zapLogger())
	return e
}

// trap is one of etcd's known failures: a text etcd says (in an error or
// a log line) and what the operator does about it.
type trap struct {
	says     []string
	sentinel error
	advice   func(c Config) string
}

var traps = []trap{
	{
		says:     []string{"cluster ID mismatch"},
		sentinel: ErrStaleDataDir,
		advice: func(c Config) string {
			return fmt.Sprintf("the other members belong to another cluster than this member's data (cluster ID mismatch): data directory %s belongs to another cluster or an earlier member; move it aside (mv %s %s.old) and join again", c.DataDir, c.DataDir, c.DataDir)
		},
	},
	{
		says:     []string{"permanently removed"},
		sentinel: ErrRemoved,
		advice: func(c Config) string {
			return fmt.Sprintf("the cluster removed member %s, so its data directory %s is of no use any more: move it aside (mv %s %s.old), add %s again (AddLearner on a running member) and start it with State %q", c.Name, c.DataDir, c.DataDir, c.DataDir, c.Name, StateExisting)
		},
	},
	{
		says:     []string{"too many learner members"},
		sentinel: ErrJoinInProgress,
		advice: func(Config) string {
			return "another hypervisor is joining the cluster and etcd takes one at a time: retry when it is done"
		},
	},
	{
		says: []string{"member count is unequal", "no match found for existing member"},
		advice: func(c Config) string {
			return fmt.Sprintf("InitialCluster (%s) does not match the running cluster's members: add %s first (AddLearner on a running member) and start it with exactly the initial cluster that returns", strings.Join(sortedKeys(c.InitialCluster), ", "), c.Name)
		},
	},
	{
		says: []string{"has already been bootstrapped"},
		advice: func(c Config) string {
			return fmt.Sprintf("a cluster with member %s already runs: a hypervisor that joins it starts with State %q, not %q", c.Name, StateExisting, StateNew)
		},
	},
	{
		says: []string{"cannot fetch cluster info from peer urls"},
		advice: func(c Config) string {
			return "no running member answered on its peer URL: check that they run, that this hypervisor reaches their peer port, and that their certificates come from the same cluster CA as " + c.CAFile
		},
	},
	{
		says: []string{"address already in use"},
		advice: func(c Config) string {
			return fmt.Sprintf("a port of this member (%s, %s) is taken: stop the other etcd that listens there (Debian's etcd package, the cluster lab's clustertool, an earlier gallium-net store member)", c.PeerURL, c.ClientURL)
		},
	},
	{
		says: []string{"incompatible with current running cluster", "incompatible version"},
		advice: func(Config) string {
			return "the running members' etcd version does not accept this one: install the same gallium-net version on every hypervisor"
		},
	},
	{
		says: []string{"bad certificate", "unknown certificate authority", "certificate required", "tls:"},
		advice: func(c Config) string {
			return fmt.Sprintf("a TLS handshake between members failed: every member's certificate must come from the cluster CA in %s and hold its management IP", c.CAFile)
		},
	},
}

// ErrJoinInProgress is what an AddLearner (or a start) refused because
// another hypervisor is joining wraps.
var ErrJoinInProgress = errors.New("another hypervisor is joining")

// findTrap looks for a known trap in err, then in etcd's recent messages,
// newest first.
func findTrap(err error, recent []string) (*trap, string) {
	texts := []string{}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for i := len(recent) - 1; i >= 0; i-- {
		texts = append(texts, recent[i])
	}
	for _, t := range texts {
		for i := range traps {
			for _, s := range traps[i].says {
				if strings.Contains(t, s) {
					return &traps[i], t
				}
			}
		}
	}
	return nil, ""
}

// explain wraps an error from etcd with the advice for its trap.
func (c Config) explain(err error, recent []string) error {
	t, said := findTrap(err, recent)
	if t == nil {
		return fmt.Errorf("%s: %w%s", c.what(), err, lastWords(recent))
	}
	if t.sentinel != nil {
		if said != err.Error() {
			return fmt.Errorf("%s: %w: %s (etcd: %w; it said: %s)", c.what(), t.sentinel, t.advice(c), err, said)
		}
		return fmt.Errorf("%s: %w: %s (etcd: %w)", c.what(), t.sentinel, t.advice(c), err)
	}
	if said != err.Error() {
		return fmt.Errorf("%s: %s (etcd: %w; it said: %s)", c.what(), t.advice(c), err, said)
	}
	return fmt.Errorf("%s: %s (etcd: %w)", c.what(), t.advice(c), err)
}

// notReady is the error of a start that timed out or was cancelled.
func (c Config) notReady(cause error, waited time.Duration, recent []string) error {
	waited = waited.Round(time.Second)
	if t, said := findTrap(nil, recent); t != nil {
		if t.sentinel != nil {
			return fmt.Errorf("%s: not ready after %v: %w: %s (etcd said: %s): %w", c.what(), waited, t.sentinel, t.advice(c), said, cause)
		}
		return fmt.Errorf("%s: not ready after %v: %s (etcd said: %s): %w", c.what(), waited, t.advice(c), said, cause)
	}
	hint := "a member that creates the cluster waits for a quorum of InitialCluster, a joining one for the leader: check that the other members run and that the hypervisors reach each other's peer ports"
	return fmt.Errorf("%s: not ready after %v: %s%s: %w", c.what(), waited, hint, lastWords(recent), cause)
}

func lastWords(recent []string) string {
	if len(recent) == 0 {
		return ""
	}
	if len(recent) > 3 {
		recent = recent[len(recent)-3:]
	}
	return " (etcd's last warnings: " + strings.Join(recent, "; ") + ")"
}
