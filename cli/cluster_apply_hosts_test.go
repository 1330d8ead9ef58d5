package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/boltstore"
)

// unavailableLists fails its first failures List calls as an etcd store
// that does not answer does.
type unavailableLists struct {
	store.Backend
	failures, lists int
}

func (u *unavailableLists) List(ctx context.Context, prefix string) ([]store.KeyValue, int64, error) {
	u.lists++
	if u.lists <= u.failures {
		return nil, 0, fmt.Errorf("etcd x: context deadline exceeded: %w", store.ErrUnavailable)
	}
	return u.Backend.List(ctx, prefix)
}

func TestHostsWithinOutlastsABusyStore(t *testing.T) {
	b, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct {
		name      string
		failures  int
		budget    time.Duration
		wantErr   bool
		wantLists int
	}{
		{"answers at the third read", 2, 5 * time.Second, false, 3},
		{"never answers: gives up after the budget", 1 << 30, 800 * time.Millisecond, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unavailableLists{Backend: b, failures: tc.failures}
			st := store.New(u)
			st.SetReadRetry(0) // as during a roll-out
			t0 := time.Now()
			_, err := hostsWithin(t.Context(), st, tc.budget)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
			if tc.wantLists > 0 && u.lists != tc.wantLists {
				t.Errorf("%d reads, want %d", u.lists, tc.wantLists)
			}
			if took := time.Since(t0); tc.wantErr && (took < tc.budget || took > tc.budget+2*time.Second) {
				t.Errorf("gave up after %v, want about %v", took, tc.budget)
			}
		})
	}
}
