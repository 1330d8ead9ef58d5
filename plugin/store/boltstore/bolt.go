// Package boltstore is the embedded cluster-state backend: one bbolt file on
// this host (default /var/lib/gallium-net/state.db, mode 0600). Every
// transaction is fsynced before it returns, so a crash leaves the file with
// the old or the new state; no server is needed, which is what a single
// hypervisor or an evaluation cluster uses.
//
// bbolt locks the file for one process at a time; watches therefore only see
// changes made through the same Backend value (one process).
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/gallium/gallium-net/plugin/store"
)

// DefaultPath is where the embedded state lives unless configured otherwise.
const DefaultPath = "/var/lib/gallium-net/state.db"

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("revision")
)

// Backend is a store.Backend in one bbolt file.
type Backend struct {
	db   *bolt.DB
	path string

	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	prefix string
	ch     chan store.Event
	// lost is set when the watcher fell behind and must re-read.
	lost bool
}

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for another process that holds the
	// file (default 5 s).
	LockTimeout time.Duration
}

// Open opens (creating when missing) the state file at path with mode 0600.
func Open(path string, opts Options) (*Backend, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("state file %s is locked by another gallium-net process (a running 'gallium-net state sync'?); stop it or try again: %w", path, err)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	// The state holds the cluster layout; keep it private even when the
	// file was created by hand with a looser mode.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return &Backend{db: db, path: path, watchers: map[*watcher]struct{}{}}, nil
}

func (b *Backend) String() string { return "state file " + b.path }

// Close closes the file and ends every watch.
func (b *Backend) Close() error {
	b.mu.Lock()
	for w := range b.watchers {
		close(w.ch)
		delete(b.watchers, w)
	}
	b.mu.Unlock()
	return b.db.Close()
}

// A stored value is its 8-byte big-endian ModRevision followed by the data.
func encode(rev int64, v []byte) []byte {
	out := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(out, uint64(rev))
	copy(out[8:], v)
	return out
}

func decode(k, raw []byte) (store.KeyValue, error) {
	if len(raw) < 8 {
		return store.KeyValue{}, fmt.Errorf("key %s: stored value is truncated", k)
	}
	return store.KeyValue{
		Key:         string(k),
		ModRevision: int64(binary.BigEndian.Uint64(raw)),
		Value:       append([]byte(nil), raw[8:]...),
	}, nil
}

func revision(tx *bolt.Tx) int64 {
	v := tx.Bucket(bucketMeta).Get(keyRev)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// Get implements store.Backend.
func (b *Backend) Get(ctx context.Context, key string) (store.KeyValue, error) {
	var kv store.KeyValue
	err := b.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			return fmt.Errorf("key %s: %w", key, store.ErrNotFound)
		}
		var err error
		kv, err = decode([]byte(key), raw)
		return err
	})
	return kv, err
}

// List implements store.Backend.
func (b *Backend) List(ctx context.Context, prefix string) ([]store.KeyValue, int64, error) {
	var out []store.KeyValue
	var rev int64
	err := b.db.View(func(tx *bolt.Tx) error {
		rev = revision(tx)
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, kv)
		}
		return nil
	})
	return out, rev, err
}

// Txn implements store.Backend: one bbolt read-write transaction, fsynced
// on commit.
func (b *Backend) Txn(ctx context.Context, cmps []store.Cmp, ops []store.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	var events []store.Event
	err := b.db.Update(func(tx *bolt.Tx) error {
		kvb := tx.Bucket(bucketKV)
		for _, c := range cmps {
			var mod int64
			if raw := kvb.Get([]byte(c.Key)); raw != nil {
				kv, err := decode([]byte(c.Key), raw)
				if err != nil {
					return err
				}
				mod = kv.ModRevision
			}
			if mod != c.ModRevision {
				return fmt.Errorf("key %s changed (revision %d, expected %d): %w", c.Key, mod, c.ModRevision, store.ErrConflict)
			}
		}
		rev = revision(tx) + 1
		for _, op := range ops {
			if op.Delete {
				if err := kvb.Delete([]byte(op.Key)); err != nil {
					return err
				}
			} else if err := kvb.Put([]byte(op.Key), encode(rev, op.Value)); err != nil {
				return err
			}
			events = append(events, store.Event{Revision: rev, Key: op.Key, Value: op.Value, Delete: op.Delete})
		}
		var r [8]byte
		binary.BigEndian.PutUint64(r[:], uint64(rev))
		return tx.Bucket(bucketMeta).Put(keyRev, r[:])
	})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return 0, err
		}
		return 0, fmt.Errorf("%s: %w", b, err)
	}
	b.notify(events)
	return rev, nil
}

// notify hands events to watchers without blocking the writer: a watcher
// whose buffer is full gets one "re-read everything" event instead.
func (b *Backend) notify(events []store.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.watchers {
		for _, ev := range events {
			if !bytes.HasPrefix([]byte(ev.Key), []byte(w.prefix)) {
				continue
			}
			if w.lost {
				break
			}
			select {
			case w.ch <- ev:
			default:
				w.lost = true
			}
		}
		if w.lost {
			select {
			case w.ch <- store.Event{Revision: events[len(events)-1].Revision}:
				w.lost = false
			default:
			}
		}
	}
}

// Watch implements store.Backend. bbolt keeps no change log: when changes
// after afterRev happened before the watch started, the first event is a
// "re-read everything" event (empty Key).
func (b *Backend) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	w := &watcher{prefix: prefix, ch: make(chan store.Event, 256)}
	b.mu.Lock()
	b.watchers[w] = struct{}{}
	b.mu.Unlock()
	var cur int64
	if err := b.db.View(func(tx *bolt.Tx) error { cur = revision(tx); return nil }); err != nil {
		return nil, err
	}
	if cur > afterRev {
		w.ch <- store.Event{Revision: cur}
	}
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.watchers[w]; ok {
			delete(b.watchers, w)
			close(w.ch)
		}
	}()
	return w.ch, nil
}

// Check verifies the file's internal consistency (bbolt's page checks) and
// that every stored value decodes; it returns the first problems found.
func (b *Backend) Check() error {
	return b.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // drain: the checker goroutine blocks otherwise
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			_, err := decode(k, v)
			return err
		}); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s is damaged: %w", b, errors.Join(errs...))
		}
		return nil
	})
}
