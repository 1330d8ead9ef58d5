package vmnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
)

// MACs decides the MAC of a new NIC and gives it back when the NIC goes.
// Ledger is the cluster's policy; LocalMACs is a host whose store holds no
// spec yet.
type MACs interface {
	// NewMAC returns the MAC of a new NIC described by rec: want (the
	// operator's, checked) or a fresh one, never one in used (MACs already
	// on this host, lower case). undo gives it back when attaching the NIC
	// fails afterwards.
	NewMAC(ctx context.Context, s *model.Spec, want string, used map[string]bool, rec store.NIC) (mac string, undo func() error, err error)
	// Release gives mac back once no definition holds it.
	Release(ctx context.Context, mac string) error
}

// UsedMACs collects the MACs of every NIC of every domain (persistent and
// live, and those gallium-net's metadata lists but the domain lacks) and of
// the host snapshot's NIC records: the MACs a new NIC here must not take.
func UsedMACs(doms []*Domain, snap *snapshot.Host) map[string]bool {
	used := map[string]bool{}
	for _, d := range doms {
		for _, x := range []*domains.Domain{d.Config, d.Live} {
			if x == nil {
				continue
			}
			for _, n := range x.NICs {
				used[strings.ToLower(n.MAC)] = true
			}
			for _, n := range x.MissingNICs() {
				used[strings.ToLower(n.MAC)] = true
			}
		}
	}
	if snap != nil {
		for _, n := range snap.NICs {
			used[strings.ToLower(n.MAC)] = true
		}
	}
	return used
}

// CheckMAC validates an operator-given MAC for a new NIC and returns its
// canonical form.
func CheckMAC(mac string, used map[string]bool) (string, error) {
	norm, err := domains.NormalizeMAC(mac)
	if err != nil {
		return "", fmt.Errorf("--mac: %w", err)
	}
	if used[norm] {
		return "", fmt.Errorf("--mac %s is already used by a NIC on this host; leave --mac out to allocate one", mac)
	}
	return norm, nil
}

// AllocateMAC picks a MAC under prefix (the defaulted spec's
// cluster.macPrefix) that is not in used, with random bytes from rnd (nil:
// crypto/rand).
func AllocateMAC(prefix string, used map[string]bool, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	mac, err := model.AllocateMAC(prefix, func(m net.HardwareAddr) bool { return used[m.String()] }, rnd)
	if err != nil {
		return "", fmt.Errorf("cluster.macPrefix: %w", err)
	}
	return mac.String(), nil
}

// LocalMACs is the MAC policy of a host without a cluster ledger: unique on
// this host only.
type LocalMACs struct {
	// Rand is the random source (nil: crypto/rand).
	Rand io.Reader
}

func (l LocalMACs) NewMAC(_ context.Context, s *model.Spec, want string, used map[string]bool, _ store.NIC) (string, func() error, error) {
	undo := func() error { return nil }
	if want != "" {
		mac, err := CheckMAC(want, used)
		return mac, undo, err
	}
	mac, err := AllocateMAC(s.Cluster.MACPrefix, used, l.Rand)
	return mac, undo, err
}

func (LocalMACs) Release(context.Context, string) error { return nil }

// Ledger is the MAC policy of a cluster: a MAC is claimed in the cluster
// ledger, which is what makes it unique across every hypervisor rather than
// on this host only.
type Ledger struct {
	Store *store.Store
	// Rand is the random source of NIC keys (nil: crypto/rand).
	Rand io.Reader
}

// MACsFor is the MAC policy of a host whose store is st: the cluster
// ledger once a spec has been pushed there, else this host alone (local
// reports that, so the caller can say how to get cluster-wide uniqueness).
// A store that cannot be read is an error, not a fallback: falling back
// silently could hand out a MAC another hypervisor already uses.
func MACsFor(ctx context.Context, st *store.Store, rnd io.Reader) (macs MACs, local bool, err error) {
	if _, err := st.Spec(ctx); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return LocalMACs{Rand: rnd}, true, nil
		}
		return nil, false, fmt.Errorf("read the cluster ledger: %w", err)
	}
	return Ledger{Store: st, Rand: rnd}, false, nil
}

// ledgerDraws bounds how often NewMAC draws again when the ledger hands out
// a MAC that a domain of this host already uses.
const ledgerDraws = 8

func (l Ledger) NewMAC(ctx context.Context, _ *model.Spec, want string, used map[string]bool, rec store.NIC) (string, func() error, error) {
	if want != "" {
		mac, err := CheckMAC(want, used)
		if err != nil {
			return "", nil, err
		}
		rec.Key, rec.MAC = mac, mac
		if _, _, err := l.Store.ImportNIC(ctx, rec); err != nil {
			return "", nil, fmt.Errorf("--mac %s: %w; leave --mac out to allocate a free one", want, err)
		}
		return mac, l.releaser(ctx, rec.DomainUUID, rec.Key), nil
	}
	// A MAC the ledger hands out may still be on a domain of this host the
	// ledger never saw (not imported yet); give it back and draw again.
	for range ledgerDraws {
		key, err := l.nicKey()
		if err != nil {
			return "", nil, err
		}
		rec.Key = key
		nic, _, err := l.Store.AllocateMAC(ctx, rec)
		if err != nil {
			return "", nil, err
		}
		if !used[strings.ToLower(nic.MAC)] {
			return nic.MAC, l.releaser(ctx, rec.DomainUUID, rec.Key), nil
		}
		if _, err := l.Store.ReleaseNIC(ctx, rec.DomainUUID, rec.Key); err != nil {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("the cluster ledger keeps handing out MACs already used on this host; run 'gallium-net state import' to adopt this host's NICs")
}

// nicKey is the ledger key of a NIC added by hand: random, because such a
// NIC has no stable name of its own inside the domain.
func (l Ledger) nicKey() (string, error) {
	rnd := l.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", fmt.Errorf("NIC key: read random bytes: %w", err)
	}
	return "nic-" + hex.EncodeToString(b), nil
}

func (l Ledger) releaser(ctx context.Context, uuid, key string) func() error {
	return func() error {
		if _, err := l.Store.ReleaseNIC(ctx, uuid, key); err != nil {
			return fmt.Errorf("could not release NIC %s/%s from the cluster ledger: %w", uuid, key, err)
		}
		return nil
	}
}

// Release forgets the ledger record that holds mac, if any.
func (l Ledger) Release(ctx context.Context, mac string) error {
	owner, err := l.Store.MACOwner(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("MAC %s: %w", mac, err)
	}
	uuid, key, _ := strings.Cut(owner, "/")
	if _, err := l.Store.ReleaseNIC(ctx, uuid, key); err != nil {
		return fmt.Errorf("MAC %s: %w", mac, err)
	}
	return nil
}
