package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// SyncSnapshot rewrites hypervisor hv's host snapshot at path from the
// current spec and hv's NICs in the ledger, so the hook sees every change
// without reaching the store. It leaves the file alone (changed=false) when
// its content would not change, so a sync loop does not churn the disk.
func (s *Store) SyncSnapshot(ctx context.Context, hv, path string) (changed bool, err error) {
	rec, err := s.Spec(ctx)
	if err != nil {
		return false, fmt.Errorf("host snapshot for %s: %w", hv, err)
	}
	spec, err := rec.Spec()
	if err != nil {
		return false, err
	}
	nics, err := s.NICs(ctx, hv)
	if err != nil {
		return false, fmt.Errorf("host snapshot for %s: %w", hv, err)
	}
	snics := make([]snapshot.NIC, 0, len(nics))
	for _, n := range nics {
		snics = append(snics, snapshot.NIC{DomainUUID: n.DomainUUID, Domain: n.Domain, MAC: n.MAC, Network: n.Network, Model: n.Model})
	}
	snap, err := snapshot.Build(spec, hv, snics, rec.Version, s.now())
	if err != nil {
		return false, err
	}
	if old, err := snapshot.Read(path); err == nil && sameSnapshot(old, snap) {
		return false, nil
	}
	removeStaleTemps(path)
	if err := snapshot.Write(path, snap); err != nil {
		return false, err
	}
	return true, nil
}

// staleTempAge is how old a leftover temporary snapshot file must be before
// a sync removes it; a live writer's temporary file lives milliseconds.
const staleTempAge = 10 * time.Second

// removeStaleTemps deletes temporary files that writers killed between
// create and rename left next to the snapshot, so they cannot pile up.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(atomicfile.TempPattern(path))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && time.Since(st.ModTime()) > staleTempAge {
			_ = os.Remove(m)
		}
	}
}

// sameSnapshot compares two snapshots ignoring when they were generated.
func sameSnapshot(a, b *snapshot.Host) bool {
	x, y := *a, *b
	x.Generated, y.Generated = time.Time{}, time.Time{}
	if len(x.NICs) == 0 {
		x.NICs = nil
	}
	if len(y.NICs) == 0 {
		y.NICs = nil
	}
	return reflect.DeepEqual(x, y)
}

// FollowSnapshot keeps hv's host snapshot in sync until ctx ends: it syncs
// once, then again after every change of the spec or the ledger. A store
// that cannot be reached is retried; the hook keeps using the last snapshot
// meanwhile. onSync, when set, is called after each sync attempt.
func (s *Store) FollowSnapshot(ctx context.Context, hv, path string, onSync func(changed bool, err error)) error {
	retry := time.Second
	for ctx.Err() == nil {
		// List first, so the watch starts exactly after the state the sync
		// reads: nothing falls between the two.
		_, rev, err := s.b.List(ctx, "spec/current")
		if err == nil {
			var changed bool
			changed, err = s.SyncSnapshot(ctx, hv, path)
			if errors.Is(err, ErrNotFound) {
				err = nil // no spec pushed yet: wait for one
			}
			if onSync != nil {
				onSync(changed, err)
			}
			if changed {
				slog.Info("host snapshot updated", "path", path, "hypervisor", hv)
			}
		}
		if err == nil {
			err = s.waitChange(ctx, rev)
		}
		if err != nil && ctx.Err() == nil {
			slog.Warn("host snapshot sync: will retry", "store", s.b.String(), "in", retry, "err", err)
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			if retry < 30*time.Second {
				retry *= 2
			}
			continue
		}
		retry = time.Second
	}
	return ctx.Err()
}

// waitChange returns after the first change of the spec or the ledger after
// revision rev.
func (s *Store) waitChange(ctx context.Context, rev int64) error {
	return s.WatchChanges(ctx, rev)
}
