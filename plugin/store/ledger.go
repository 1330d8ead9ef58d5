package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Keys of the NIC ledger. A NIC lives at nics/<domain uuid>/<nic key>; its
// MAC is claimed at macs/<mac>, so "is this MAC free" and "does this NIC
// exist" are both single-key compare-and-swap conditions.
const (
	prefixNICs = "nics/"
	prefixMACs = "macs/"
	// maxAllocAttempts bounds retries when candidate MACs are taken or a
	// concurrent writer wins; with a 24-bit space this is never reached
	// before the space is nearly full.
	maxAllocAttempts = 64
)

// NIC is one VM network interface in the cluster ledger.
type NIC struct {
	DomainUUID string `json:"domainUUID" yaml:"domainUUID"`
	// Key names the NIC inside its domain for its whole life (for example
	// the interface alias "ua-gallium-net0"); with DomainUUID it is what
	// makes allocation stable: the same pair always gets the same MAC.
	Key        string    `json:"key" yaml:"key"`
	Domain     string    `json:"domain,omitempty" yaml:"domain,omitempty"`
	MAC        string    `json:"mac" yaml:"mac"`
	Network    string    `json:"network" yaml:"network"`
	Model      string    `json:"model,omitempty" yaml:"model,omitempty"`
	Hypervisor string    `json:"hypervisor,omitempty" yaml:"hypervisor,omitempty"`
	Created    time.Time `json:"created" yaml:"created"`
	// Imported marks a NIC adopted from an existing domain (nic import)
	// rather than allocated.
	Imported bool `json:"imported,omitempty" yaml:"imported,omitempty"`
	// ModRevision is the store revision of the record (not stored in it).
	ModRevision int64 `json:"-" yaml:"-"`
}

// ID is "<domain uuid>/<nic key>", the ledger's name for the NIC.
func (n NIC) ID() string { return n.DomainUUID + "/" + n.Key }

func nicKey(uuid, key string) string { return prefixNICs + uuid + "/" + key }
func macKey(mac string) string       { return prefixMACs + mac }

func checkNICName(uuid, key string) error {
	if uuid == "" || key == "" {
		return fmt.Errorf("NIC needs a domain UUID and a NIC key (got %q, %q)", uuid, key)
	}
	if strings.Contains(uuid, "/") || strings.Contains(key, "/") {
		return fmt.Errorf("NIC %s/%s: domain UUID and NIC key must not contain '/'", uuid, key)
	}
	return nil
}

// NIC returns the ledger record of one NIC, or an error wrapping ErrNotFound.
func (s *Store) NIC(ctx context.Context, uuid, key string) (NIC, error) {
	kv, err := s.b.Get(ctx, nicKey(uuid, key))
	if err != nil {
		return NIC{}, fmt.Errorf("NIC %s/%s in %s: %w", uuid, key, s.b, err)
	}
	return decodeNIC(kv)
}

func decodeNIC(kv KeyValue) (NIC, error) {
	var n NIC
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return NIC{}, fmt.Errorf("ledger record %s is corrupt: %w", kv.Key, err)
	}
	n.ModRevision = kv.ModRevision
	return n, nil
}

// NICs returns the ledger's NICs, sorted by domain UUID and key; with hv set,
// only those of hypervisor hv.
func (s *Store) NICs(ctx context.Context, hv string) ([]NIC, error) {
	kvs, _, err := s.b.List(ctx, prefixNICs)
	if err != nil {
		return nil, fmt.Errorf("read NIC ledger from %s: %w", s.b, err)
	}
	var out []NIC
	for _, kv := range kvs {
		n, err := decodeNIC(kv)
		if err != nil {
			return nil, err
		}
		if hv == "" || n.Hypervisor == hv {
			out = append(out, n)
		}
	}
	return out, nil
}

// MACOwner returns the "<uuid>/<key>" that holds mac, or ErrNotFound.
func (s *Store) MACOwner(ctx context.Context, mac string) (string, error) {
	m, err := parseMAC(mac)
	if err != nil {
		return "", err
	}
	kv, err := s.b.Get(ctx, macKey(m))
	if err != nil {
		return "", fmt.Errorf("MAC %s in %s: %w", m, s.b, err)
	}
	return string(kv.Value), nil
}

// AllocateMAC returns the NIC record of req.DomainUUID/req.Key, creating it
// with a fresh cluster-unique MAC from the spec's prefix when it does not
// exist. It is idempotent: the same NIC always gets the same MAC, so a caller
// may retry after any error. Network, Model, Domain and Hypervisor of an
// existing record are updated to req's when they differ; its MAC never
// changes. created reports whether a new MAC was allocated.
func (s *Store) AllocateMAC(ctx context.Context, req NIC) (nic NIC, created bool, err error) {
	if err := checkNICName(req.DomainUUID, req.Key); err != nil {
		return NIC{}, false, err
	}
	prefix := ""
	for attempt := 0; ; attempt++ {
		if attempt >= maxAllocAttempts {
			return NIC{}, false, fmt.Errorf("allocate MAC for NIC %s: %d attempts lost to concurrent writers or taken MACs; the prefix %q may be nearly full: %w", req.ID(), attempt, prefix, ErrConflict)
		}
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return NIC{}, false, fmt.Errorf("allocate MAC for NIC %s: %w", req.ID(), err)
			}
		}
		nic, created, err = s.allocateOnce(ctx, req, &prefix)
		if err == nil {
			return nic, created, nil
		}
		// A conflict means someone else wrote first; an unavailable store
		// may or may not have applied our write. Both are safe to retry,
		// because the next round re-reads the NIC's own key first.
		if !retryable(err) {
			return NIC{}, false, err
		}
	}
}

func (s *Store) allocateOnce(ctx context.Context, req NIC, prefix *string) (NIC, bool, error) {
	key := nicKey(req.DomainUUID, req.Key)
	kv, err := s.b.Get(ctx, key)
	switch {
	case err == nil:
		cur, err := decodeNIC(kv)
		if err != nil {
			return NIC{}, false, err
		}
		upd, changed := mergeNIC(cur, req)
		if !changed {
			return cur, false, nil
		}
		data, _ := json.Marshal(upd)
		rev, err := s.b.Txn(ctx, []Cmp{{Key: key, ModRevision: cur.ModRevision}}, []Op{{Key: key, Value: data}})
		if err != nil {
			return NIC{}, false, fmt.Errorf("update NIC %s: %w", req.ID(), err)
		}
		upd.ModRevision = rev
		return upd, false, nil
	case !errors.Is(err, ErrNotFound):
		return NIC{}, false, fmt.Errorf("allocate MAC for NIC %s: %w", req.ID(), err)
	}
	if *prefix == "" {
		rec, err := s.Spec(ctx)
		if err != nil {
			return NIC{}, false, fmt.Errorf("allocate MAC for NIC %s: %w", req.ID(), err)
		}
		spec, err := rec.Spec()
		if err != nil {
			return NIC{}, false, err
		}
		*prefix = spec.Cluster.MACPrefix // defaulted by Parse
	}
	mac, err := s.newMAC(*prefix)
	if err != nil {
		return NIC{}, false, fmt.Errorf("allocate MAC for NIC %s: %w", req.ID(), err)
	}
	nic := req
	nic.MAC = mac
	nic.Imported = false
	nic.Created = s.now().UTC()
	data, _ := json.Marshal(nic)
	rev, err := s.b.Txn(ctx,
		[]Cmp{{Key: key}, {Key: macKey(mac)}},
		[]Op{{Key: key, Value: data}, {Key: macKey(mac), Value: []byte(nic.ID())}})
	if err != nil {
		return NIC{}, false, fmt.Errorf("allocate MAC %s for NIC %s: %w", mac, req.ID(), err)
	}
	nic.ModRevision = rev
	return nic, true, nil
}

// mergeNIC applies req's descriptive fields to cur; the MAC and creation
// time stay.
func mergeNIC(cur, req NIC) (NIC, bool) {
	upd := cur
	if req.Network != "" {
		upd.Network = req.Network
	}
	if req.Model != "" {
		upd.Model = req.Model
	}
	if req.Domain != "" {
		upd.Domain = req.Domain
	}
	if req.Hypervisor != "" {
		upd.Hypervisor = req.Hypervisor
	}
	return upd, upd.Network != cur.Network || upd.Model != cur.Model || upd.Domain != cur.Domain || upd.Hypervisor != cur.Hypervisor
}

// ImportNIC adopts an existing NIC with its MAC into the ledger. It is a
// no-op when the ledger already holds the same NIC with the same MAC, and
// fails (wrapping ErrConflict) when the MAC belongs to another NIC or the
// NIC is recorded with another MAC: that is a duplicate to resolve by hand.
func (s *Store) ImportNIC(ctx context.Context, n NIC) (NIC, bool, error) {
	if err := checkNICName(n.DomainUUID, n.Key); err != nil {
		return NIC{}, false, err
	}
	mac, err := parseMAC(n.MAC)
	if err != nil {
		return NIC{}, false, fmt.Errorf("import NIC %s: %w", n.ID(), err)
	}
	n.MAC = mac
	for attempt := 0; attempt < maxAllocAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return NIC{}, false, fmt.Errorf("import NIC %s: %w", n.ID(), err)
			}
		}
		cur, err := s.NIC(ctx, n.DomainUUID, n.Key)
		if err == nil {
			if cur.MAC != mac {
				return NIC{}, false, conflictf("import NIC %s with MAC %s: the ledger records it with MAC %s; change the domain's MAC back or release the ledger entry", n.ID(), mac, cur.MAC)
			}
			return cur, false, nil
		}
		if !errors.Is(err, ErrNotFound) {
			if retryable(err) {
				continue
			}
			return NIC{}, false, err
		}
		if owner, err := s.MACOwner(ctx, mac); err == nil {
			return NIC{}, false, conflictf("import NIC %s: MAC %s already belongs to NIC %s in the ledger; give one of them a new MAC", n.ID(), mac, owner)
		}
		n.Imported = true
		if n.Created.IsZero() {
			n.Created = s.now().UTC()
		}
		data, _ := json.Marshal(n)
		rev, err := s.b.Txn(ctx,
			[]Cmp{{Key: nicKey(n.DomainUUID, n.Key)}, {Key: macKey(mac)}},
			[]Op{{Key: nicKey(n.DomainUUID, n.Key), Value: data}, {Key: macKey(mac), Value: []byte(n.ID())}})
		if err == nil {
			n.ModRevision = rev
			return n, true, nil
		}
		if !retryable(err) {
			return NIC{}, false, fmt.Errorf("import NIC %s: %w", n.ID(), err)
		}
	}
	return NIC{}, false, fmt.Errorf("import NIC %s: too many concurrent changes; try again: %w", n.ID(), ErrConflict)
}

// ReleaseNIC removes a NIC and frees its MAC. It returns an error wrapping
// ErrNotFound when the ledger has no such NIC.
func (s *Store) ReleaseNIC(ctx context.Context, uuid, key string) (NIC, error) {
	for attempt := 0; attempt < maxAllocAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return NIC{}, err
			}
		}
		cur, err := s.NIC(ctx, uuid, key)
		if err != nil {
			if retryable(err) {
				continue
			}
			return NIC{}, err
		}
		_, err = s.b.Txn(ctx,
			[]Cmp{{Key: nicKey(uuid, key), ModRevision: cur.ModRevision}},
			[]Op{{Key: nicKey(uuid, key), Delete: true}, {Key: macKey(cur.MAC), Delete: true}})
		if err == nil {
			return cur, nil
		}
		if !retryable(err) {
			return NIC{}, fmt.Errorf("release NIC %s/%s: %w", uuid, key, err)
		}
	}
	return NIC{}, fmt.Errorf("release NIC %s/%s: too many concurrent changes; try again: %w", uuid, key, ErrConflict)
}

// backoff waits a little longer after each failed attempt, so that
// competing writers spread out instead of colliding again.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(attempt) * 5 * time.Millisecond
	if d > 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	return sleep(ctx, d)
}

// sleep waits d, or less when ctx ends first (then it returns ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// MoveDomain records hypervisor hv as where every ledger NIC of domain uuid
// runs now (a live migration moved it), and returns the NICs it changed.
// NICs already on hv are left alone, so following the same domain twice
// writes nothing. Each NIC is a compare-and-swap on its own revision: a
// concurrent change of the same record is re-read and retried.
func (s *Store) MoveDomain(ctx context.Context, uuid, hv string) ([]NIC, error) {
	if uuid == "" || strings.Contains(uuid, "/") {
		return nil, fmt.Errorf("move the NICs of domain %q: a domain UUID without '/' is needed", uuid)
	}
	if hv == "" {
		return nil, fmt.Errorf("move the NICs of domain %s: no hypervisor name", uuid)
	}
	kvs, _, err := s.b.List(ctx, prefixNICs+uuid+"/")
	if err != nil {
		return nil, fmt.Errorf("read the ledger NICs of domain %s from %s: %w", uuid, s.b, err)
	}
	var moved []NIC
	for _, kv := range kvs {
		n, err := decodeNIC(kv)
		if err != nil {
			return moved, err
		}
		for attempt := 0; n.Hypervisor != hv; attempt++ {
			if attempt >= maxAllocAttempts {
				return moved, fmt.Errorf("move NIC %s to hypervisor %s: too many concurrent changes; try again: %w", n.ID(), hv, ErrConflict)
			}
			upd := n
			upd.Hypervisor = hv
			data, _ := json.Marshal(upd)
			rev, err := s.b.Txn(ctx, []Cmp{{Key: kv.Key, ModRevision: n.ModRevision}}, []Op{{Key: kv.Key, Value: data}})
			if err == nil {
				upd.ModRevision = rev
				moved = append(moved, upd)
				break
			}
			if !retryable(err) {
				return moved, fmt.Errorf("move NIC %s to hypervisor %s: %w", n.ID(), hv, err)
			}
			if err := backoff(ctx, attempt+1); err != nil {
				return moved, err
			}
			if n, err = s.NIC(ctx, n.DomainUUID, n.Key); err != nil {
				if errors.Is(err, ErrNotFound) {
					break // released meanwhile: nothing to move
				}
				return moved, err
			}
		}
	}
	return moved, nil
}
