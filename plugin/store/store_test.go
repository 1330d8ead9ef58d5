package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// flakyBackend answers its first failures reads with err, then reads well.
type flakyBackend struct {
	Backend
	failures int
	err      error
	reads    int
}

func (f *flakyBackend) Get(ctx context.Context, key string) (KeyValue, error) {
	f.reads++
	if f.reads <= f.failures {
		return KeyValue{}, f.err
	}
	return KeyValue{Key: key, Value: []byte("v"), ModRevision: 3}, nil
}

func (f *flakyBackend) List(ctx context.Context, prefix string) ([]KeyValue, int64, error) {
	f.reads++
	if f.reads <= f.failures {
		return nil, 0, f.err
	}
	return []KeyValue{{Key: prefix + "a"}}, 3, nil
}

func (f *flakyBackend) String() string { return "flaky" }

func TestReadsOutlastAnUnavailableStore(t *testing.T) {
	unavailable := fmt.Errorf("etcd x: context deadline exceeded: %w", ErrUnavailable)
	bad := errors.New("bad request")
	for _, tc := range []struct {
		name      string
		failures  int
		err       error
		budget    time.Duration
		wantReads int   // 0: more than one, as many as the budget allows
		wantErr   error // nil: the read answers
	}{
		{"answers at once", 0, nil, time.Second, 1, nil},
		{"answers after two timeouts", 2, unavailable, 5 * time.Second, 3, nil},
		{"never answers within the budget", 1 << 30, unavailable, 250 * time.Millisecond, 0, ErrUnavailable},
		{"not found is an answer", 1 << 30, fmt.Errorf("key k: %w", ErrNotFound), time.Second, 1, ErrNotFound},
		{"another error is not retried", 1 << 30, bad, time.Second, 1, bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []string{"get", "list"} {
				f := &flakyBackend{failures: tc.failures, err: tc.err}
				r := retryingReads{Backend: f, budget: tc.budget}
				var err error
				if op == "get" {
					_, err = r.Get(context.Background(), "k")
				} else {
					_, _, err = r.List(context.Background(), "p/")
				}
				switch {
				case tc.wantReads > 0 && f.reads != tc.wantReads:
					t.Errorf("%s: %d reads, want %d", op, f.reads, tc.wantReads)
				case tc.wantReads == 0 && f.reads < 2:
					t.Errorf("%s: %d reads, want it to read again within the budget", op, f.reads)
				}
				switch {
				case tc.wantErr == nil && err != nil:
					t.Errorf("%s: %v, want an answer", op, err)
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Errorf("%s: error %v, want one wrapping %v", op, err, tc.wantErr)
				case tc.wantReads == 0 && !strings.Contains(err.Error(), "attempts over"):
					t.Errorf("%s: error %q does not say how long it tried", op, err)
				}
			}
		})
	}
}

func TestReadRetryStopsWithTheContext(t *testing.T) {
	f := &flakyBackend{failures: 1000, err: ErrUnavailable}
	r := retryingReads{Backend: f, budget: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Get(ctx, "k")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("read went on for %s after its context ended", d)
	}
}

func TestStoreReadsThroughTheRetry(t *testing.T) {
	f := &flakyBackend{failures: 1, err: ErrUnavailable}
	s := New(f)
	if s.Backend() != Backend(f) {
		t.Fatalf("Backend() is %T, want the backend as given", s.Backend())
	}
	if _, err := s.b.Get(context.Background(), "spec/current"); err != nil || f.reads != 2 {
		t.Fatalf("Store read: err %v after %d reads, want an answer on the second", err, f.reads)
	}
}

func TestWithReadRetryLeavesTheOriginal(t *testing.T) {
	ctx := context.Background()
	f := &flakyBackend{failures: 2, err: ErrUnavailable}
	s := New(f)
	s.SetReadRetry(0)
	if _, err := s.b.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) || f.reads != 1 {
		t.Fatalf("budget 0: err %v after %d reads, want ErrUnavailable after one", err, f.reads)
	}
	patient := s.WithReadRetry(5 * time.Second)
	if _, err := patient.b.Get(ctx, "k"); err != nil || f.reads != 3 {
		t.Fatalf("budget 5 s: err %v after %d reads in all, want an answer on the third", err, f.reads)
	}
	if patient.Backend() != Backend(f) {
		t.Fatalf("the copy's Backend() is %T, want the one given", patient.Backend())
	}
	f.reads, f.failures = 0, 1
	if _, err := s.b.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) || f.reads != 1 {
		t.Fatalf("the original after WithReadRetry: err %v after %d reads, want its budget 0 kept", err, f.reads)
	}
}

// TestLedgerStopsWhenAReadGaveUp: the ledger's loops retry unavailable
// stores per attempt; a read that already waited out its budget must end
// the loop, or a dead store would cost maxAllocAttempts budgets.
func TestLedgerStopsWhenAReadGaveUp(t *testing.T) {
	f := &flakyBackend{failures: 1 << 30, err: fmt.Errorf("etcd x: %w", ErrUnavailable)}
	s := New(f)
	s.SetReadRetry(150 * time.Millisecond)
	start := time.Now()
	_, err := s.ReleaseNIC(context.Background(), "u1", "net0")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "attempts over") {
		t.Fatalf("ReleaseNIC on a dead store: %v, want the read's give-up", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ReleaseNIC took %s on a dead store with a 150ms read budget: it retried the whole budget per attempt", d)
	}
	if !retryable(fmt.Errorf("x: %w", ErrUnavailable)) || !retryable(ErrConflict) || retryable(ErrNotFound) {
		t.Error("retryable: want unavailable and conflict retried, not-found not")
	}
}
