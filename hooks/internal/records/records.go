// Package records is the libvirt hook's local state: which gallium-net NICs
// run on this host, in which domain, on which tap.
//
// libvirt runs the hook several times for every domain start, stop and
// hot-plug, synchronously, and many hooks at once when it starts many
// domains. So a call touches only what its domain owns, and no call waits
// for another domain's:
//
//	domains/UUID.json  one domain's record, replaced by rename (a reader
//	                   sees the old or the new record, never a mix)
//	locks/UUID         the domain's lock: calls for one domain stay ordered
//	macs/MAC           a running domain's claim on a MAC (its UUID), which
//	                   is also the MAC's lock: "does another running domain
//	                   here use this MAC?" is one file, not every record
//	nics.json          the previous layout, every domain in one file under
//	                   one host-wide lock: converted once (legacy.go)
//
// The records live under /run: they describe what runs now and vanish with a
// reboot, as the domains do.
package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gallium/gallium-net/plugin/atomicfile"
)

// Version is the format version of a domain record. Version 1 was the single
// nics.json file.
const Version = 2

// maxRecordBytes caps a domain record the hook reads: a few hundred bytes per
// NIC.
const maxRecordBytes = 1 << 20

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

func (d *Domain) clone() *Domain {
	if d == nil {
		return nil
	}
	c := *d
	c.NICs = slices.Clone(d.NICs)
	return &c
}

// kept reports whether the record is worth a file: domains without NICs
// that are not running are forgotten.
func (d *Domain) kept() bool { return d != nil && (d.Running || len(d.NICs) > 0) }

// claims is the MACs the record holds claims on: those of a running domain.
func (d *Domain) claims() []string {
	if d == nil || !d.Running {
		return nil
	}
	macs := make([]string, 0, len(d.NICs))
	for _, n := range d.NICs {
		macs = append(macs, n.MAC)
	}
	return macs
}

// State is every record of this host.
type State struct {
	// Domains by UUID (a name can be reused by another domain).
	Domains map[string]*Domain
	// Corrupt lists the record files that could not be read; each is set
	// aside by the next call for its domain.
	Corrupt []string
}

// Store is the records directory.
type Store struct {
	Dir string
	// LockTimeout bounds the wait for a domain's or a MAC's lock; 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// Log receives what the conversion of the previous layout has to say;
	// nil discards it.
	Log *slog.Logger
}

func (s Store) domainsDir() string { return filepath.Join(s.Dir, "domains") }
func (s Store) locksDir() string   { return filepath.Join(s.Dir, "locks") }
func (s Store) macsDir() string    { return filepath.Join(s.Dir, "macs") }

func (s Store) recordPath(uuid string) string {
	return filepath.Join(s.domainsDir(), uuid+".json")
}

// Exists reports whether any record was ever written since boot.
func (s Store) Exists() bool {
	if _, err := os.Stat(s.domainsDir()); err == nil {
		return true
	}
	_, err := os.Stat(s.legacyPath())
	return err == nil
}

// init creates the directories; a hook for a domain gallium-net does not
// manage never gets here, so it never creates them. Their parents too:
// /run/gallium-net is gone after every reboot.
func (s Store) init() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("hook records: %w", err)
	}
	for _, d := range []string{s.domainsDir(), s.locksDir(), s.macsDir()} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("hook records: %w", err)
		}
	}
	return nil
}

// checkID refuses a UUID that cannot be a file name here: it comes from
// libvirt's XML, and a record must never be written outside the directory.
func checkID(uuid string) error {
	if uuid == "" || len(uuid) > 128 {
		return fmt.Errorf("domain UUID %q is empty or too long", uuid)
	}
	for _, r := range uuid {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return fmt.Errorf("domain UUID %q has a character other than letters, digits, '-' and '_'", uuid)
		}
	}
	return nil
}

// macName is the claim file name of mac: its canonical lower-case form.
func macName(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC address %q of a NIC record is not six bytes", mac)
	}
	return hw.String(), nil
}

// Get returns the record of domain uuid, or nil when there is none, without
// locking: records are replaced atomically, so it is consistent (if possibly
// stale).
func (s Store) Get(uuid string) (*Domain, error) {
	if err := checkID(uuid); err != nil {
		return nil, err
	}
	if err := s.convertLegacy(); err != nil {
		return nil, err
	}
	return s.readRecord(uuid)
}

// Read returns every record, without locking. It reads a file per domain, so
// only the rare calls that concern every domain use it (a network's
// definition updated, a domain stopped that is known by name only).
func (s Store) Read() (*State, error) {
	if err := s.convertLegacy(); err != nil {
		return nil, err
	}
	st := &State{Domains: map[string]*Domain{}}
	entries, err := os.ReadDir(s.domainsDir())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hook records: %w", err)
	}
	for _, e := range entries {
		uuid, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") || checkID(uuid) != nil {
			continue // temporary files, set-aside corrupt records
		}
		d, err := s.readRecord(uuid)
		if err != nil {
			st.Corrupt = append(st.Corrupt, s.recordPath(uuid))
			continue
		}
		if d != nil {
			st.Domains[uuid] = d
		}
	}
	return st, nil
}

// CorruptError reports a record that is not valid JSON.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("hook record %s is corrupt: %v", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// recordFile is a domain record on disk.
type recordFile struct {
	Version int `json:"version"`
	*Domain
}

func (s Store) readRecord(uuid string) (*Domain, error) {
	path := s.recordPath(uuid)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hook record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hook record %s: %w", path, err)
	}
	if len(data) > maxRecordBytes {
		return nil, &CorruptError{path, fmt.Errorf("larger than %d bytes", maxRecordBytes)}
	}
	rf := recordFile{Domain: &Domain{}}
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, &CorruptError{path, err}
	}
	if rf.Version > Version {
		return nil, fmt.Errorf("hook record %s has format version %d, newer than this hook (%d); upgrade gallium-net", path, rf.Version, Version)
	}
	if rf.UUID != uuid {
		return nil, &CorruptError{path, fmt.Errorf("it holds domain %q", rf.UUID)}
	}
	return rf.Domain, nil
}

// writeRecord replaces the domain's record.
func (s Store) writeRecord(d *Domain) error {
	data, err := json.Marshal(recordFile{Version: Version, Domain: d})
	if err != nil {
		return fmt.Errorf("hook record of domain %s: %w", d.UUID, err)
	}
	return replaceFile(s.recordPath(d.UUID), append(data, '\n'))
}

// replaceFile replaces path by rename, so readers never see a partial file.
// It does not fsync (atomicfile.Replace): the records describe running
// domains and live under /run (tmpfs), which a crash empties anyway, and an
// fsync per hook would cost milliseconds on every VM start.
func replaceFile(path string, data []byte) error {
	if err := atomicfile.Replace(path, data, 0o600); err != nil {
		return fmt.Errorf("hook records: %w", err)
	}
	return nil
}

// Tx is one domain's records under its lock: calls for the same domain wait
// for one another, calls for other domains do not.
type Tx struct {
	s    Store
	uuid string
	lock *lockedFile
	cur  *Domain // as stored; nil when there is no record
}

// Open takes domain uuid's lock (waiting at most LockTimeout) and reads its
// record. A corrupt record is set aside (as UUID.json.corrupt) and the
// domain starts with none: the records are a cache of what runs, which the
// next start or reconnect rebuilds, and a hook must not block the domain's
// start on it. Close releases the lock.
func (s Store) Open(uuid string) (*Tx, error) {
	if err := checkID(uuid); err != nil {
		return nil, err
	}
	if err := s.convertLegacy(); err != nil {
		return nil, err
	}
	return s.open(uuid)
}

// open is Open without the conversion of the previous layout, which calls it.
func (s Store) open(uuid string) (*Tx, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	l, err := lockPath(filepath.Join(s.locksDir(), uuid), s.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", uuid, err)
	}
	tx := &Tx{s: s, uuid: uuid, lock: l}
	tx.cur, err = s.readRecord(uuid)
	if err != nil {
		var ce *CorruptError
		if !errors.As(err, &ce) {
			l.unlock()
			return nil, err
		}
		_ = os.Rename(ce.Path, ce.Path+".corrupt")
		tx.cur = nil
	}
	return tx, nil
}

// Exists reports whether the domain has a record.
func (tx *Tx) Exists() bool { return tx.cur != nil }

// Domain returns a copy of the domain's record to change and Put, or a new
// empty one.
func (tx *Tx) Domain() *Domain {
	if tx.cur == nil {
		return &Domain{UUID: tx.uuid}
	}
	return tx.cur.clone()
}

// Current returns a copy of the record as stored, or nil: what Put needs to
// undo a change.
func (tx *Tx) Current() *Domain { return tx.cur.clone() }

// Close releases the domain's lock; a domain left without a record also
// loses its lock file.
func (tx *Tx) Close() {
	if tx.lock == nil {
		return
	}
	if tx.cur == nil {
		tx.lock.removeAndUnlock()
	} else {
		tx.lock.unlock()
	}
	tx.lock = nil
}

// Conflict is a MAC of the domain that another running domain here holds.
type Conflict struct {
	MAC       string
	OwnerUUID string
	OwnerName string
}

// Put stores d as the domain's record (nil, or not running and without NICs:
// no record) and brings the domain's MAC claims in line: a running domain
// claims each of its NICs' MACs, and gives up those it no longer has. A MAC
// that another running domain holds is a Conflict: with strict nothing is
// written and the conflicts are returned; without, d is written all the
// same and the conflicting MACs stay the other domain's.
//
// The claims are taken before the record is written and given up after, so
// a hook that dies in between leaves a claim its record does not back, which
// the next domain that wants the MAC takes over (claimHeld), never a running
// NIC without its claim.
func (tx *Tx) Put(d *Domain, strict bool) ([]Conflict, error) {
	if tx.lock == nil {
		return nil, fmt.Errorf("domain %s: records used after Close", tx.uuid)
	}
	if d != nil {
		d.UUID = tx.uuid
	}
	if !d.kept() {
		d = nil
	}
	want := map[string]bool{}
	for _, m := range d.claims() {
		name, err := macName(m)
		if err != nil {
			return nil, fmt.Errorf("domain %s: %w", tx.uuid, err)
		}
		want[name] = true
	}
	names := map[string]bool{}
	for _, m := range tx.cur.claims() {
		if name, err := macName(m); err == nil {
			names[name] = true
		}
	}
	for m := range want {
		names[m] = true
	}
	// Sorted, so that two domains that want the same MACs never wait for
	// each other crosswise.
	order := make([]string, 0, len(names))
	for m := range names {
		order = append(order, m)
	}
	slices.Sort(order)
	claims := make(map[string]*claim, len(order))
	defer func() {
		for _, c := range claims {
			c.close()
		}
	}()
	for _, m := range order {
		c, err := tx.s.lockClaim(m)
		if err != nil {
			return nil, fmt.Errorf("domain %s: %w", tx.uuid, err)
		}
		claims[m] = c
	}
	var conflicts []Conflict
	taken := map[string]bool{}
	for _, m := range order {
		c := claims[m]
		if !want[m] {
			continue
		}
		if c.owner != "" && c.owner != tx.uuid {
			if other := tx.s.claimHeld(c.owner, m); other != nil {
				conflicts = append(conflicts, Conflict{MAC: m, OwnerUUID: other.UUID, OwnerName: other.Name})
				continue
			}
		}
		taken[m] = true
	}
	if strict && len(conflicts) > 0 {
		return conflicts, nil
	}
	for m := range taken {
		if err := claims[m].set(tx.uuid); err != nil {
			return conflicts, fmt.Errorf("domain %s: %w", tx.uuid, err)
		}
	}
	if d == nil {
		if err := os.Remove(tx.s.recordPath(tx.uuid)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return conflicts, fmt.Errorf("hook record of domain %s: %w", tx.uuid, err)
		}
	} else if err := tx.s.writeRecord(d); err != nil {
		return conflicts, err
	}
	tx.cur = d.clone()
	for _, m := range order {
		if c := claims[m]; !want[m] && c.owner == tx.uuid {
			c.owner = "" // close removes it
		}
	}
	return conflicts, nil
}

// claimHeld returns the record of domain owner when it backs its claim on
// mac (it runs and has a NIC with that MAC), else nil: the claim is stale (a
// hook died between taking it and writing the record, or the record was
// corrupt) and whoever wants the MAC may take it over. It reads without the
// owner's lock, which is sound because a domain writes a running record with
// a MAC only while it holds that MAC's lock, as the caller does now.
func (s Store) claimHeld(owner, mac string) *Domain {
	if checkID(owner) != nil {
		return nil
	}
	d, err := s.readRecord(owner)
	if err != nil || d == nil || !d.Running || d.NIC(mac) == nil {
		return nil
	}
	return d
}

// claim is the claim file of one MAC under its lock.
type claim struct {
	lock  *lockedFile
	owner string // the claiming domain's UUID; "" for none
}

// lockClaim takes the lock of MAC name's claim and reads its owner. The
// owner is read and written only under the lock, so it is never seen half
// written; anything that is not a UUID (a hook died while creating the
// file) is no claim.
func (s Store) lockClaim(name string) (*claim, error) {
	l, err := lockPath(filepath.Join(s.macsDir(), name), s.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("MAC %s: %w", name, err)
	}
	buf := make([]byte, 160)
	n, _ := l.f.ReadAt(buf, 0)
	owner := strings.TrimSpace(string(buf[:n]))
	if checkID(owner) != nil {
		owner = ""
	}
	return &claim{lock: l, owner: owner}, nil
}

func (c *claim) set(uuid string) error {
	if c.owner == uuid {
		return nil
	}
	if err := c.lock.f.Truncate(0); err != nil {
		return fmt.Errorf("claim %s: %w", c.lock.path, err)
	}
	if _, err := c.lock.f.WriteAt([]byte(uuid+"\n"), 0); err != nil {
		return fmt.Errorf("claim %s: %w", c.lock.path, err)
	}
	c.owner = uuid
	return nil
}

// close releases the MAC's lock; a MAC nobody claims loses its file.
func (c *claim) close() {
	if c.owner == "" {
		c.lock.removeAndUnlock()
	} else {
		c.lock.unlock()
	}
}
