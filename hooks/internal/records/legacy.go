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

// movedFile replaces nics.json once its records are converted. Its format
// version (2) makes a hook of the previous version that still runs (one that
// started before the upgrade and waited for the lock) refuse the file ("newer
// than this hook; upgrade gallium-net") instead of starting a second set of
// records beside the new ones: a start it refuses is retried by the new hook,
// while a record it wrote would be lost.
type movedFile struct {
	Version int               `json:"version"`
	Domains map[string]string `json:"domains"`
	MovedTo string            `json:"movedTo"`
}

func converted(data []byte) bool {
	var v struct {
		Version int `json:"version"`
	}
	return json.Unmarshal(data, &v) == nil && v.Version >= Version
}

// convertLegacy converts nics.json when there is one that is not converted
// yet. It costs one failed open on a host that never had the previous
// layout since its last boot, and a read of a small file on one that had.
func (s Store) convertLegacy() error {
	data, err := os.ReadFile(s.legacyPath())
	if errors.Is(err, os.ErrNotExist) || err == nil && converted(data) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hook records of the previous layout: %w", err)
	}
	// The previous hook's lock: no hook of that version is halfway through a
	// change of nics.json, and two hooks of this one do not convert at once.
	// It is never removed, since the previous hook does not expect that.
	l, err := lockPath(s.legacyLockPath(), s.LockTimeout)
	if err != nil {
		return fmt.Errorf("convert the hook records of the previous layout: %w", err)
	}
	defer l.unlock()
	data, err = os.ReadFile(s.legacyPath())
	if errors.Is(err, os.ErrNotExist) || err == nil && converted(data) {
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
		return s.writeMoved()
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
				// converts again (records already converted win).
				return fmt.Errorf("convert the hook records of the previous layout: %w", err)
			}
			log.Warn("hook record of the previous layout dropped", "uuid", id, "domain", d.Name, "error", err.Error())
			continue
		}
		n++
	}
	// Keep the original for the operator (it vanishes with the next reboot
	// as all records do), then put the moved file in its place by rename.
	_ = os.Remove(s.legacyPath() + ".v1")
	if err := os.Link(s.legacyPath(), s.legacyPath()+".v1"); err != nil {
		log.Warn("cannot keep a copy of the previous layout's records", "path", s.legacyPath()+".v1", "error", err.Error())
	}
	if err := s.writeMoved(); err != nil {
		return err
	}
	log.Info("hook records converted from the previous layout", "domains", n, "from", s.legacyPath(), "to", s.domainsDir())
	return nil
}

// convertDomain writes one domain of nics.json in the new layout with its
// MAC claims, unless the domain has a record there already: one written by
// this hook is newer than the previous layout's.
func (s Store) convertDomain(d *Domain) error {
	tx, err := s.open(d.UUID)
	if err != nil {
		return err
	}
	defer tx.Close()
	if tx.Exists() {
		return nil
	}
	conflicts, err := tx.Put(d, false)
	for _, c := range conflicts {
		s.logger().Warn("converted hook record: MAC already claimed by another running domain", "uuid", d.UUID, "domain", d.Name, "mac", c.MAC, "owner", c.OwnerName)
	}
	return err
}

func (s Store) writeMoved() error {
	data, err := json.Marshal(movedFile{Version: Version, Domains: map[string]string{}, MovedTo: s.domainsDir()})
	if err != nil {
		return fmt.Errorf("hook records: %w", err)
	}
	return replaceFile(s.legacyPath(), append(data, '\n'))
}

func (s Store) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}
