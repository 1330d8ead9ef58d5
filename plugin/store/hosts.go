package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key prefixes of the hosts' published states and of rolling-apply
// requests: one key per hypervisor each.
const (
	prefixHosts    = "hosts/"
	prefixRollouts = "rollouts/"
)

// HostState is what a hypervisor's agent publishes about itself: enough
// for `cluster status` to show every hypervisor in one view and for
// `cluster apply` to follow a roll-out.
type HostState struct {
	Hypervisor string `json:"hypervisor"`
	// Heartbeat is when the agent last wrote this record; a record older
	// than a few intervals means the agent (or its host) is down.
	Heartbeat time.Time `json:"heartbeat"`
	// Interval is how often the agent writes it.
	Interval time.Duration `json:"interval"`
	// StoredRevision is the spec revision the agent saw last; Applied the
	// one the host is converged to (0: never).
	StoredRevision  int64 `json:"storedRevision"`
	AppliedRevision int64 `json:"appliedRevision"`
	// InSync: the host's networking, libvirt networks and snapshot match
	// the stored spec. Drift lists what differs otherwise.
	InSync bool     `json:"inSync"`
	Drift  []string `json:"drift,omitempty"`
	// Groups are the host's bonds: active adapter, carriers, VLANs.
	Groups []HostGroup `json:"groups,omitempty"`
	// Networks are the libvirt networks gallium-net defined here, and
	// whether each is active.
	Networks map[string]bool `json:"networks,omitempty"`
	// HoldsVIP: the cluster's VIP is on this host now.
	HoldsVIP bool `json:"holdsVIP,omitempty"`
	// RunningNICs counts the gallium NICs of running domains here.
	RunningNICs int `json:"runningNICs"`
	// Failovers counts active-adapter changes per bond since the agent
	// started.
	Failovers map[string]int `json:"failovers,omitempty"`
	// LastApply is the last host apply the agent made.
	LastApply *ApplyResult `json:"lastApply,omitempty"`
	// Rollout is the agent's answer to the last rolling-apply request.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// LastError is the agent's last failure, "" after a success.
	LastError string `json:"lastError,omitempty"`
	// Observed is the host's networking as read last (netsetup.Snapshot,
	// kept as raw JSON so that this package stays free of netsetup): what
	// `cluster apply --dry-run` plans against.
	Observed json.RawMessage `json:"observed,omitempty"`
	// Version is the gallium-net version the agent runs.
	Version string `json:"version,omitempty"`
}

// HostGroup is one adapter group as published.
type HostGroup struct {
	Group    string          `json:"group"`
	Bond     string          `json:"bond"`
	Up       bool            `json:"up"`
	Active   string          `json:"active,omitempty"`
	Carriers map[string]bool `json:"carriers"`
	VLANs    []int           `json:"vlans,omitempty"`
}

// ApplyResult is one apply by the agent.
type ApplyResult struct {
	Revision int64         `json:"revision"`
	Steps    int           `json:"steps"`
	Took     time.Duration `json:"took"`
	At       time.Time     `json:"at"`
	Error    string        `json:"error,omitempty"`
}

// RolloutRequest asks one hypervisor's agent to apply a spec revision,
// disruptive steps included, with commit-confirm and a connectivity check.
type RolloutRequest struct {
	// ID names the roll-out (one `cluster apply`); Revision is the spec
	// revision to apply.
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
	// ConfirmTimeout bounds the apply and its connectivity check: without
	// a confirm in that time the host rolls back by itself.
	ConfirmTimeout time.Duration `json:"confirmTimeout"`
	By             string        `json:"by,omitempty"`
	At             time.Time     `json:"at"`
}

// Rollout phases an agent reports.
const (
	PhaseApplying   = "applying"
	PhaseChecking   = "checking"
	PhaseConfirmed  = "confirmed"
	PhaseRolledBack = "rolled-back"
	PhaseFailed     = "failed"
)

// RolloutStatus is the agent's progress on a RolloutRequest.
type RolloutStatus struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
	Phase    string `json:"phase"`
	// Steps is the plan's length; Detail what the phase is about (the
	// check that failed, the rollback's outcome).
	Steps   int           `json:"steps"`
	Detail  string        `json:"detail,omitempty"`
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took"`
}

// Done says whether the phase is final.
func (r *RolloutStatus) Done() bool {
	return r != nil && (r.Phase == PhaseConfirmed || r.Phase == PhaseRolledBack || r.Phase == PhaseFailed)
}

// Stale says whether a record with this heartbeat is older than three of
// its intervals at now: its agent or host is down.
func (h *HostState) Stale(now time.Time) bool {
	iv := h.Interval
	if iv <= 0 {
		iv = 10 * time.Second
	}
	return now.Sub(h.Heartbeat) > 3*iv
}

// Leaser is a backend that can tie a key to the writer's liveness (etcd's
// lease): the key goes away when the writer stops renewing it.
type Leaser interface {
	PutLeased(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// PublishHost writes hv's state; with a Leaser backend it lives under a
// lease of ttl, so a dead host's record disappears by itself.
func (s *Store) PublishHost(ctx context.Context, st HostState, ttl time.Duration) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	key := prefixHosts + st.Hypervisor
	if l, ok := s.raw.(Leaser); ok && ttl > 0 {
		return l.PutLeased(ctx, key, data, ttl)
	}
	_, err = s.raw.Txn(ctx, nil, []Op{{Key: key, Value: data}})
	return err
}

// Hosts returns every published host state, by hypervisor name.
func (s *Store) Hosts(ctx context.Context) (map[string]*HostState, error) {
	kvs, _, err := s.b.List(ctx, prefixHosts)
	if err != nil {
		return nil, err
	}
	out := map[string]*HostState{}
	for _, kv := range kvs {
		var st HostState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("host state %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(kv.Key, prefixHosts)] = &st
	}
	return out, nil
}

// RequestRollout asks hv's agent to apply req.
func (s *Store) RequestRollout(ctx context.Context, hv string, req RolloutRequest) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = s.raw.Txn(ctx, nil, []Op{{Key: prefixRollouts + hv, Value: data}})
	return err
}

// Rollout returns the last roll-out request for hv, nil when there is none.
func (s *Store) Rollout(ctx context.Context, hv string) (*RolloutRequest, error) {
	kv, err := s.b.Get(ctx, prefixRollouts+hv)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var req RolloutRequest
	if err := json.Unmarshal(kv.Value, &req); err != nil {
		return nil, fmt.Errorf("roll-out request for %s: %w", hv, err)
	}
	return &req, nil
}

// WatchChanges returns after the first change, after revision rev, of the
// spec, the ledger, or what the keys under the extra prefixes hold (a
// host's roll-out request, the host states). An error means the watch
// broke: re-read and watch again.
func (s *Store) WatchChanges(ctx context.Context, rev int64, prefixes ...string) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.b.Watch(wctx, "", rev)
	if err != nil {
		return err
	}
	for ev := range ch {
		if ev.Key == "" || strings.HasPrefix(ev.Key, prefixSpec) || strings.HasPrefix(ev.Key, prefixNICs) {
			return nil
		}
		for _, p := range prefixes {
			if strings.HasPrefix(ev.Key, p) {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watch on %s ended", s.b)
}

// Revision is the store's current revision (for WatchChanges).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	_, rev, err := s.b.List(ctx, keySpecCurrent)
	return rev, err
}

// RolloutKey and HostsPrefix name the keys for WatchChanges.
func RolloutKey(hv string) string { return prefixRollouts + hv }

// HostsPrefix is the prefix of the published host states.
const HostsPrefix = prefixHosts
