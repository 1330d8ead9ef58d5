package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// The previous layout kept every domain in one file, nics.json (format
// version 1), changed under one host-wide flock on .lock. A package upgrade
// on a host with running VMs leaves that file behind: the first call of this
// hook converts it, so that no running NIC is lost and reconnect, stopped
// and the MAC check still find every one.

func (s Store) legacyPath() string     { return filepath.Join(s.Dir, "nics.json") }
func (s Store) legacyLockPath() string { return filepath.Join(s.Dir, ".lock") }

// legacyState is nics.json as the previous hook wrote it.
type legacyState struct {
	Version int                `json:"version"`
	Domains map[string]*Domain `json:"domains"`
}

// convertLegacy converts nics.json when there is one, and moves it aside
// as nics.json.v1, so that it is converted once. It costs one failed open
// on a host without it.
//
// nics.json is moved, not replaced by a file the previous hook would refuse:
// going back to the previous version on a running host (a rollback) must
// not refuse every VM start. A hook of the previous version that runs after
// the conversion (one that waited for the lock during the upgrade, or after
// a rollback) starts a new nics.json, which the next call of this version
// converts too (convertDomain decides between the two records of a domain).
func (s Store) convertLegacy() error {
	if _, err := os.Stat(s.legacyPath()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The previous hook's lock: no hook of that version is halfway through a
	// change of nics.json, and two hooks of this one do not convert at once.
	// It is never removed, since the previous hook does not expect that.
	l, err := lockPath(s.legacyLockPath(), s.LockTimeout)
	if err != nil {
		return fmt.Errorf("convert the hook records of the previous layout: %w", err)
	}
	defer l.unlock()
	data, err := os.ReadFile(s.legacyPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil // another hook converted it while this one waited
	}
	if err != nil {
		return fmt.Errorf("hook records of the previous layout: %w", err)
	}
	log := s.logger()
	var old legacyState
	if err := json.Unmarshal(data, &old); err != nil {
		// As the previous hook did with a corrupt file: set it aside; the
		// next start or reconnect of each domain rebuilds its record.
		log.Warn("hook records of the previous layout are corrupt; set aside, the next start or reconnect of each domain rebuilds its record", "path", s.legacyPath()+".corrupt", "error", err.Error())
		if err := os.Rename(s.legacyPath(), s.legacyPath()+".corrupt"); err != nil {
			return fmt.Errorf("set aside the corrupt %s: %w", s.legacyPath(), err)
		}
		return nil
	}
	if old.Version > 1 {
		return fmt.Errorf("hook records %s have format version %d, which this hook does not know; upgrade gallium-net", s.legacyPath(), old.Version)
	}
	ids := make([]string, 0, len(old.Domains))
	for id := range old.Domains {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	n := 0
	for _, id := range ids {
		d := old.Domains[id]
		if d == nil {
			continue
		}
		if err := checkID(id); err != nil {
			log.Warn("hook record of the previous layout dropped", "uuid", id, "domain", d.Name, "error", err.Error())
			continue
		}
		d.UUID = id
		if err := s.convertDomain(d); err != nil {
			if errors.Is(err, ErrLockTimeout) {
				// Transient: leave nics.json as it is; the next call
				// converts again (convertDomain is idempotent).
				return fmt.Errorf("convert the hook records of the previous layout: %w", err)
			}
			log.Warn("hook record of the previous layout dropped", "uuid", id, "domain", d.Name, "error", err.Error())
			continue
		}
		n++
	}
	// Kept for the operator; it vanishes with the next reboot as all
	// records do.
	if err := os.Rename(s.legacyPath(), s.legacyPath()+".v1"); err != nil {
		return fmt.Errorf("hook records of the previous layout: %w", err)
	}
	log.Info("hook records converted from the previous layout", "domains", n, "from", s.legacyPath(), "kept as", s.legacyPath()+".v1", "to", s.domainsDir())
	return nil
}

// convertDomain writes one domain of nics.json in the new layout with its
// MAC claims. A domain that has a record there already keeps it (it was
// written by this version, after the upgrade), unless only nics.json has it
// running: then a hook of the previous version started it since.
func (s Store) convertDomain(d *Domain) error {
	tx, err := s.open(d.UUID)
	if err != nil {
		return err
	}
	defer tx.Close()
	if cur := tx.Current(); cur != nil && (cur.Running || !d.Running) {
		return nil
	}
	conflicts, err := tx.Put(d, false)
	for _, c := range conflicts {
		s.logger().Warn("converted hook record: MAC already claimed by another running domain", "uuid", d.UUID, "domain", d.Name, "mac", c.MAC, "owner", c.OwnerName)
	}
	return err
}

func (s Store) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}
