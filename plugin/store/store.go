package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Store is the cluster state on top of one Backend. It is safe for
// concurrent use when the Backend is.
type Store struct {
	// b is the backend with reads that outlast a slow or re-electing
	// cluster; raw is the backend as given, for Backend().
	b   Backend
	raw Backend
	now func() time.Time
	// newMAC draws a candidate MAC from the spec's prefix; the ledger's
	// compare-and-swap decides whether it is free.
	newMAC func(prefix string) (string, error)
}

// ReadRetryBudget is how long a read keeps trying after the backend
// reported ErrUnavailable. A leader election, or members starved of CPU
// or disk, make single requests time out for a few seconds; an operator's
// `spec diff` or a host's `state sync` should wait that out rather than
// fail, while a store that is really down still fails within this bound.
const ReadRetryBudget = 30 * time.Second

// New returns the store kept in b. The Store does not own b beyond Close.
func New(b Backend) *Store {
	return &Store{b: retryingReads{Backend: b, budget: ReadRetryBudget}, raw: b, now: time.Now, newMAC: candidateMAC}
}

// SetReadRetry changes how long reads keep trying after ErrUnavailable
// (ReadRetryBudget by default; 0 fails at the first). It is not safe to
// call while the store is in use.
func (s *Store) SetReadRetry(budget time.Duration) {
	s.b = retryingReads{Backend: s.raw, budget: budget}
}

// WithReadRetry is this store with reads that keep trying for budget
// instead (0: fail at the first), for one part of a command; the original
// keeps its own. Both share the backend.
func (s *Store) WithReadRetry(budget time.Duration) *Store {
	c := *s
	c.SetReadRetry(budget)
	return &c
}

// Backend returns the backend the store uses.
func (s *Store) Backend() Backend { return s.raw }

// String names the backend, for messages.
func (s *Store) String() string { return s.raw.String() }

// Close closes the backend.
func (s *Store) Close() error { return s.raw.Close() }

// retryingReads reads again when the backend reports ErrUnavailable.
// Reads are idempotent, so this is always safe; writes are not wrapped,
// because whether a timed-out write applied is for its caller to find out
// (the ledger re-reads before it writes again).
type retryingReads struct {
	Backend
	budget time.Duration
}

func (r retryingReads) Get(ctx context.Context, key string) (KeyValue, error) {
	var kv KeyValue
	err := r.retry(ctx, "read "+key, func() (err error) {
		kv, err = r.Backend.Get(ctx, key)
		return err
	})
	return kv, err
}

func (r retryingReads) List(ctx context.Context, prefix string) ([]KeyValue, int64, error) {
	var kvs []KeyValue
	var rev int64
	err := r.retry(ctx, "list "+prefix, func() (err error) {
		kvs, rev, err = r.Backend.List(ctx, prefix)
		return err
	})
	return kvs, rev, err
}

func (r retryingReads) retry(ctx context.Context, what string, read func() error) error {
	start := time.Now()
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := read()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			if err == nil && attempt > 1 {
				slog.Info("cluster store answered again", "store", r.Backend.String(), "op", what, "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		left := r.budget - time.Since(start)
		if left <= 0 {
			return &gaveUpError{err: err, attempts: attempt, took: time.Since(start)}
		}
		if attempt == 1 {
			slog.Warn("cluster store did not answer; reading again", "store", r.Backend.String(), "op", what, "budget", r.budget, "err", err)
		}
		if wait > left {
			wait = left
		}
		if sleep(ctx, wait) != nil {
			return err
		}
		if wait *= 2; wait > 2*time.Second {
			wait = 2 * time.Second
		}
	}
}

// gaveUpError is a read that stayed unavailable for the whole budget. It
// still wraps ErrUnavailable; callers that loop on ErrUnavailable (the
// ledger) stop on it instead of spending the budget again per attempt.
type gaveUpError struct {
	err      error
	attempts int
	took     time.Duration
}

func (e *gaveUpError) Error() string {
	return fmt.Sprintf("%v (no answer in %d attempts over %s; check that most of the store's members are up and reachable, e.g. with 'etcdctl endpoint health --cluster')", e.err, e.attempts, e.took.Round(time.Second))
}

func (e *gaveUpError) Unwrap() error { return e.err }

// retryable says whether a ledger loop should try again after err: a lost
// compare-and-swap or a transient failure, but not a read that already
// waited out its whole retry budget.
func retryable(err error) bool {
	var g *gaveUpError
	if errors.As(err, &g) {
		return false
	}
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable)
}
