package store

import (
	"time"
)

// Store is the cluster state on top of one Backend. It is safe for
// concurrent use when the Backend is.
type Store struct {
	b   Backend
	now func() time.Time
	// newMAC draws a candidate MAC from the spec's prefix; the ledger's
	// compare-and-swap decides whether it is free.
	newMAC func(prefix string) (string, error)
}

// New returns the store kept in b. The Store does not own b beyond Close.
func New(b Backend) *Store {
	return &Store{b: b, now: time.Now, newMAC: candidateMAC}
}

// Backend returns the backend the store uses.
func (s *Store) Backend() Backend { return s.b }

// String names the backend, for messages.
func (s *Store) String() string { return s.b.String() }

// Close closes the backend.
func (s *Store) Close() error { return s.b.Close() }
