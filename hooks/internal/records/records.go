// Package records is the libvirt hook's local state: which gallium-net NICs
// run on this host, in which domain, on which tap. Several hook processes run
// at once when libvirt starts several domains, so every change happens under
// an exclusive flock with a bounded wait, and the file is replaced atomically
// (a reader sees the old or the new state, never a mix).
//
// The records live under /run: they describe what runs now and vanish with a
// reboot, as the domains do.
package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Version is the format version of the state file.
const Version = 1

// maxStateBytes caps the state file the hook reads: it holds a few hundred
// bytes per NIC.
const maxStateBytes = 8 << 20

// DefaultLockTimeout bounds the wait for the lock. libvirt runs hooks with no
// timeout, so a hook that waited forever would hang libvirtd's domain start.
const DefaultLockTimeout = 10 * time.Second

// ErrLockTimeout is returned when the lock was not free within the timeout.
var ErrLockTimeout = errors.New("timed out waiting for the hook state lock")

// State is every record of this host.
type State struct {
	Version int `json:"version"`
	// Domains by UUID (a name can be reused by another domain).
	Domains map[string]*Domain `json:"domains"`
}

// Domain is one domain with gallium-net NICs (or ports on gallium-net
// networks) on this host.
type Domain struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
	// Running is set by the qemu start/reconnect hooks, cleared by stopped.
	Running bool  `json:"running"`
	NICs    []NIC `json:"nics"`
}

// NIC is one VM NIC as last programmed.
type NIC struct {
	MAC     string `json:"mac"`
	Network string `json:"network"`
	Bridge  string `json:"bridge,omitempty"`
	Tap     string `json:"tap,omitempty"`
	VLAN    int    `json:"vlan,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	PortID  string `json:"portID,omitempty"`
}

// NIC returns the domain's NIC with MAC mac, or nil.
func (d *Domain) NIC(mac string) *NIC {
	for i := range d.NICs {
		if strings.EqualFold(d.NICs[i].MAC, mac) {
			return &d.NICs[i]
		}
	}
	return nil
}

// SetNIC replaces or adds the NIC with n's MAC.
func (d *Domain) SetNIC(n NIC) {
	if old := d.NIC(n.MAC); old != nil {
		*old = n
		return
	}
	d.NICs = append(d.NICs, n)
}

// RemoveNIC drops the NIC with MAC mac and reports whether there was one.
func (d *Domain) RemoveNIC(mac string) bool {
	n := len(d.NICs)
	d.NICs = slices.DeleteFunc(d.NICs, func(x NIC) bool { return strings.EqualFold(x.MAC, mac) })
	return len(d.NICs) != n
}

// MACOwner returns the running domain other than uuid that has a NIC with
// MAC mac, or nil.
func (s *State) MACOwner(mac, uuid string) *Domain {
	for id, d := range s.Domains {
		if id == uuid || !d.Running {
			continue
		}
		if d.NIC(mac) != nil {
			return d
		}
	}
	return nil
}

// Domain returns the record of domain uuid, creating it when create is set.
func (s *State) Domain(uuid, name string, create bool) *Domain {
	if d, ok := s.Domains[uuid]; ok {
		if name != "" {
			d.Name = name
		}
		return d
	}
	if !create {
		return nil
	}
	d := &Domain{UUID: uuid, Name: name}
	s.Domains[uuid] = d
	return d
}

// Store is the state directory.
type Store struct {
	Dir string
	// LockTimeout bounds the wait for the lock; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

func (s Store) path() string     { return filepath.Join(s.Dir, "nics.json") }
func (s Store) lockPath() string { return filepath.Join(s.Dir, ".lock") }

// Exists reports whether any state was ever written, so that a hook for a
// domain gallium-net does not manage can skip the lock entirely.
func (s Store) Exists() bool {
	_, err := os.Stat(s.path())
	return err == nil
}

// Read returns the current state without locking: the file is replaced
// atomically, so an unlocked read is consistent (if possibly stale).
func (s Store) Read() (*State, error) {
	st, err := s.read()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Update runs fn on the state under the exclusive lock and writes the state
// back when fn returns nil and changed it. A corrupt state file is set aside
// (as nics.json.corrupt) and replaced by an empty state: the records are a
// cache of what runs, which the next start or reconnect rebuilds, and a hook
// must not block every domain start on it.
func (s Store) Update(fn func(*State) error) (err error) {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.read()
	if err != nil {
		var ce *CorruptError
		if !errors.As(err, &ce) {
			return err
		}
		_ = os.Rename(s.path(), s.path()+".corrupt")
		st = &State{Version: Version, Domains: map[string]*Domain{}}
	}
	before, _ := json.Marshal(st)
	if err := fn(st); err != nil {
		return err
	}
	// Domains without NICs that are not running are forgotten.
	for id, d := range st.Domains {
		if !d.Running && len(d.NICs) == 0 {
			delete(st.Domains, id)
		}
	}
	after, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("hook state: %w", err)
	}
	if string(before) == string(after) {
		return nil
	}
	return s.write(append(after, '\n'))
}

// write replaces the state file by rename, so readers never see a partial
// file. It does not fsync: the records describe running domains and live
// under /run (tmpfs), which a crash empties anyway, and an fsync per hook
// would cost milliseconds on every VM start.
func (s Store) write(data []byte) error {
	tmp, err := os.CreateTemp(s.Dir, ".nics.json.tmp-*")
	if err != nil {
		return fmt.Errorf("hook state: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("hook state %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hook state %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hook state: %w", err)
	}
	return nil
}

// CorruptError reports a state file that is not valid JSON.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("hook state %s is corrupt: %v", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

func (s Store) read() (*State, error) {
	st := &State{Version: Version, Domains: map[string]*Domain{}}
	f, err := os.Open(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hook state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hook state %s: %w", s.path(), err)
	}
	if len(data) > maxStateBytes {
		return nil, &CorruptError{s.path(), fmt.Errorf("larger than %d bytes", maxStateBytes)}
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, &CorruptError{s.path(), err}
	}
	if st.Version > Version {
		return nil, fmt.Errorf("hook state %s has format version %d, newer than this hook (%d); upgrade gallium-net", s.path(), st.Version, Version)
	}
	if st.Domains == nil {
		st.Domains = map[string]*Domain{}
	}
	for id, d := range st.Domains {
		if d == nil {
			delete(st.Domains, id)
		}
	}
	return st, nil
}

// lock takes the exclusive flock on the state directory's lock file, waiting
// at most LockTimeout. The wait is a blocking flock (the kernel queues the
// waiters) rather than polling, which starved some of 50 hooks started at
// once. flock (not a lock held by a daemon) is released by the kernel when a
// hook dies, so a crashed hook never leaves the lock taken.
func (s Store) lock() (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hook state: %w", err)
	}
	f, err := os.OpenFile(s.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hook state lock: %w", err)
	}
	unlock := func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	// Uncontended: no goroutine, no timer.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return unlock, nil
	}
	timeout := s.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	done := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				done <- err
				return
			}
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("hook state lock %s: %w", s.lockPath(), err)
		}
		return unlock, nil
	case <-timer.C:
		// The blocked flock cannot be cancelled; whoever gets the lock late
		// gives it straight back.
		go func() {
			if err := <-done; err == nil {
				unlock()
			} else {
				f.Close()
			}
		}()
		return nil, fmt.Errorf("%w %s after %s; another gallium-net hook holds it (see 'fuser %s')", ErrLockTimeout, s.lockPath(), timeout, s.lockPath())
	}
}
