// Package etcdstore is the cluster-state backend for multi-hypervisor
// clusters: etcd through go.etcd.io/etcd/client/v3. Every hypervisor talks to
// the same etcd cluster; compare-and-swap on key modification revisions makes
// MAC allocation cluster-unique. Only the CLI links this package.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gallium/gallium-net/plugin/store"
)

// DefaultPrefix is the etcd key prefix of gallium-net's state.
const DefaultPrefix = "/gallium-net/"

// Config says how to reach etcd.
type Config struct {
	Endpoints []string
	// Prefix is prepended to every key (default DefaultPrefix), so several
	// clusters or tools can share one etcd.
	Prefix string
	// TLS: CAFile verifies the servers; CertFile/KeyFile authenticate
	// this client. All empty means plain HTTP.
	CAFile, CertFile, KeyFile string
	Username, Password        string
	// DialTimeout bounds connecting (default 5 s); OpTimeout bounds each
	// request (default 5 s), so a lost leader turns into a retryable error.
	DialTimeout, OpTimeout time.Duration
	// KeepAliveTime and KeepAliveTimeout are gRPC's pings on a connection
	// with streams open (defaults 10 s, gRPC's least, and 5 s). Without
	// them a member that vanishes without a reset (a powered-off host)
	// keeps its connection "ready": the lease keep-alive and watch streams
	// on it hang until the kernel gives up minutes later, so a live
	// agent's leased record expires and its watch goes deaf.
	KeepAliveTime, KeepAliveTimeout time.Duration
}

// Backend is a store.Backend in etcd.
type Backend struct {
	// leaseMu guards lease: the one lease PutLeased ties keys to,
	// granted on first use and kept alive until Close or expiry.
	leaseMu sync.Mutex
	lease   clientv3.LeaseID
	cli     *clientv3.Client
	prefix  string
	opTO    time.Duration
	name    string
	// endpoints and tls are kept for diagnose. diag is its last verdict on
	// a request that timed out, at diagAt: a configuration fault is kept,
	// anything else is asked again after diagFresh.
	endpoints []string
	tls       *tls.Config
	diagMu    sync.Mutex
	diag      diagnosis
	diagAt    time.Time
}

const diagFresh = 30 * time.Second

func (b *Backend) timeoutDiagnosis(ctx context.Context) diagnosis {
	b.diagMu.Lock()
	defer b.diagMu.Unlock()
	if b.diag.permanent || (!b.diagAt.IsZero() && time.Since(b.diagAt) < diagFresh) {
		return b.diag
	}
	b.diag, b.diagAt = diagnose(ctx, b.endpoints, b.tls), time.Now()
	return b.diag
}

// Open connects to etcd. It does not wait for the cluster: the first
// request reports an unreachable one.
func Open(cfg Config) (*Backend, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints; set store.etcd.endpoints in /etc/gallium-net/config.yaml or pass --etcd-endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 5 * time.Second
	}
	if cfg.KeepAliveTime == 0 {
		cfg.KeepAliveTime = 10 * time.Second
	}
	if cfg.KeepAliveTimeout == 0 {
		cfg.KeepAliveTimeout = 5 * time.Second
	}
	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		info := transport.TLSInfo{TrustedCAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
		var err error
		tlsCfg, err = info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS (ca %q, cert %q, key %q): %w", cfg.CAFile, cfg.CertFile, cfg.KeyFile, err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    cfg.KeepAliveTime,
		DialKeepAliveTimeout: cfg.KeepAliveTimeout,
		TLS:                  tlsCfg,
		Username:             cfg.Username,
		Password:             cfg.Password,
		// The client's own zap logger would write JSON to stderr on every
		// reconnect; gallium-net reports errors itself.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Backend{cli: cli, prefix: cfg.Prefix, opTO: cfg.OpTimeout,
		name:      "etcd " + strings.Join(cfg.Endpoints, ",") + " (prefix " + cfg.Prefix + ")",
		endpoints: cfg.Endpoints, tls: tlsCfg}, nil
}

func (b *Backend) String() string { return b.name }

// Close closes the client connection.
func (b *Backend) Close() error { return b.cli.Close() }

// Client returns the underlying etcd client (for status commands).
func (b *Backend) Client() *clientv3.Client { return b.cli }

// wrap marks transient failures with store.ErrUnavailable so idempotent
// callers retry them, and names the backend.
func (b *Backend) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", b.name, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		switch d := b.timeoutDiagnosis(ctx); {
		case d.permanent:
			return fmt.Errorf("%s: %v: %s", b.name, err, d.text)
		case d.text != "":
			return fmt.Errorf("%s: %v: %s: %w", b.name, err, d.text, store.ErrUnavailable)
		}
	}
	if transient(err) {
		return fmt.Errorf("%s: %v: %w", b.name, err, store.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", b.name, err)
}

func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true // our per-request timeout, not the caller's
	}
	switch rpctypes.Error(err) {
	case rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrTimeout,
		rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrNotCapable, rpctypes.ErrStopped, rpctypes.ErrTooManyRequests,
		rpctypes.ErrUnhealthy:
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	case codes.Unknown:
		// A member whose raft node is shutting down (say, the leader just
		// killed) answers with raft's own error, which gRPC carries as
		// Unknown; another member answers the retry, and callers re-read
		// before they write again, so retrying is safe.
		return strings.Contains(err.Error(), "raft: stopped")
	}
	return false
}

func (b *Backend) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opTO)
}

// PutLeased implements store.Leaser: key lives as long as this client
// renews its lease (ttl), so a dead writer's key goes away by itself.
func (b *Backend) PutLeased(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		if b.lease == 0 {
			octx, cancel := b.op(ctx)
			g, err := b.cli.Grant(octx, int64(max(ttl/time.Second, 2)))
			cancel()
			if err != nil {
				return b.wrap(ctx, err)
			}
			// Kept alive until Close; an expired or revoked lease closes
			// the channel, and the next put grants a new one.
			ka, err := b.cli.KeepAlive(context.Background(), g.ID)
			if err != nil {
				return b.wrap(ctx, err)
			}
			b.lease = g.ID
			go func(id clientv3.LeaseID) {
				for range ka {
				}
				b.leaseMu.Lock()
				if b.lease == id {
					b.lease = 0
				}
				b.leaseMu.Unlock()
			}(g.ID)
		}
		octx, cancel := b.op(ctx)
		_, err := b.cli.Put(octx, b.prefix+key, string(value), clientv3.WithLease(b.lease))
		cancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return b.wrap(ctx, err)
		}
		b.lease = 0
	}
	return fmt.Errorf("%s: put %s: the lease expired twice in a row", b.name, key)
}

// Get implements store.Backend.
func (b *Backend) Get(ctx context.Context, key string) (store.KeyValue, error) {
	octx, cancel := b.op(ctx)
	defer cancel()
	resp, err := b.cli.Get(octx, b.prefix+key)
	if err != nil {
		return store.KeyValue{}, b.wrap(ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return store.KeyValue{}, fmt.Errorf("key %s: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return store.KeyValue{Key: key, Value: kv.Value, ModRevision: kv.ModRevision}, nil
}

// List implements store.Backend.
func (b *Backend) List(ctx context.Context, prefix string) ([]store.KeyValue, int64, error) {
	octx, cancel := b.op(ctx)
	defer cancel()
	resp, err := b.cli.Get(octx, b.prefix+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, b.wrap(ctx, err)
	}
	out := make([]store.KeyValue, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, store.KeyValue{Key: strings.TrimPrefix(string(kv.Key), b.prefix), Value: kv.Value, ModRevision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// Txn implements store.Backend with one etcd transaction comparing each
// key's ModRevision (0 for "absent").
func (b *Backend) Txn(ctx context.Context, cmps []store.Cmp, ops []store.Op) (int64, error) {
	conds := make([]clientv3.Cmp, 0, len(cmps))
	for _, c := range cmps {
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(b.prefix+c.Key), "=", c.ModRevision))
	}
	thens := make([]clientv3.Op, 0, len(ops))
	for _, o := range ops {
		if o.Delete {
			thens = append(thens, clientv3.OpDelete(b.prefix+o.Key))
		} else {
			thens = append(thens, clientv3.OpPut(b.prefix+o.Key, string(o.Value)))
		}
	}
	octx, cancel := b.op(ctx)
	defer cancel()
	resp, err := b.cli.Txn(octx).If(conds...).Then(thens...).Commit()
	if err != nil {
		return 0, b.wrap(ctx, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: %w", b.name, store.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Watch implements store.Backend. When etcd compacted the revisions after
// afterRev away, the first event is a "re-read everything" event.
func (b *Backend) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	out := make(chan store.Event, 64)
	wctx := clientv3.WithRequireLeader(ctx)
	wch := b.cli.Watch(wctx, b.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(afterRev+1))
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.CompactRevision != 0 {
				select {
				case out <- store.Event{Revision: resp.CompactRevision}:
				case <-ctx.Done():
				}
				return
			}
			if err := resp.Err(); err != nil {
				return
			}
			for _, ev := range resp.Events {
				e := store.Event{
					Revision: ev.Kv.ModRevision,
					Key:      strings.TrimPrefix(string(ev.Kv.Key), b.prefix),
					Value:    ev.Kv.Value,
					Delete:   ev.Type == clientv3.EventTypeDelete,
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
