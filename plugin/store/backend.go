// Package store keeps a Gallium cluster's shared state: the cluster spec with
// its history, and the NIC ledger that makes VM MACs unique across the
// cluster. The state lives in a key-value Backend that offers revisions,
// compare-and-swap transactions and watches: an embedded bbolt file on one
// host (package boltstore) or etcd across the cluster (package etcdstore).
// Everything above the Backend (spec versions, MAC allocation, the host
// snapshot) is written once here, so both backends behave the same, which
// the conformance suite in package storetest checks.
//
// This package must stay free of etcd and gRPC: the CLI links the backends,
// the libvirt hook links neither (it reads only the host snapshot).
package store

import (
	"context"
	"errors"
)

var (
	// ErrNotFound is returned when a key, spec or NIC does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a compare-and-swap transaction lost: the
	// state changed since it was read. Re-read and try again.
	ErrConflict = errors.New("conflict: the state changed since it was read")
	// ErrUnavailable marks a transient backend failure (no leader, endpoint
	// down, timeout) after which an idempotent operation may be retried.
	ErrUnavailable = errors.New("cluster store unavailable")
)

// KeyValue is one stored key with the revision of its last change.
type KeyValue struct {
	Key   string
	Value []byte
	// ModRevision is the store revision that last wrote the key.
	ModRevision int64
}

// Cmp is one condition of a transaction: the key's ModRevision must equal
// ModRevision, where 0 means "the key does not exist".
type Cmp struct {
	Key         string
	ModRevision int64
}

// Op is one write of a transaction: put Value at Key, or delete Key.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Event is one change seen by a watch. An event with an empty Key means the
// backend cannot say what changed (it missed events): re-read everything.
type Event struct {
	Revision int64
	Key      string
	Value    []byte
	Delete   bool
}

// Backend is a revisioned key-value store with compare-and-swap. Every
// successful transaction gets a new, strictly increasing store revision.
// Keys are relative ("spec/current"); a backend may add its own prefix.
type Backend interface {
	// Get returns the key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (KeyValue, error)
	// List returns every key under prefix, sorted by key, and the store
	// revision the listing reflects.
	List(ctx context.Context, prefix string) ([]KeyValue, int64, error)
	// Txn applies ops atomically when every cmp holds, and returns the new
	// store revision; when a cmp fails it changes nothing and returns an
	// error wrapping ErrConflict.
	Txn(ctx context.Context, cmps []Cmp, ops []Op) (int64, error)
	// Watch reports changes under prefix after revision afterRev until ctx
	// ends, then closes the channel.
	Watch(ctx context.Context, prefix string, afterRev int64) (<-chan Event, error)
	// String names the backend and where it keeps the state, for messages.
	String() string
	Close() error
}
