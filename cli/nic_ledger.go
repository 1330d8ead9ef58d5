package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin"
	"github.com/gallium/gallium-net/plugin/store"
)

// nicLedger ties `nic add` and `nic remove` to the cluster ledger, which is
// what makes a MAC unique across every hypervisor rather than on this host
// only. A host without a cluster spec in its store (nothing pushed yet) still
// works, with a note that uniqueness is then local.
type nicLedger struct {
	c  *cli.Context
	st *store.Store // nil: no ledger; local rule only
}

// openNICLedger opens the store the flags and config name. A store that
// holds no spec yet is not an error: the NIC gets a locally unique MAC and
// the operator is told how to get cluster-wide uniqueness. A store that is
// configured but unreachable IS an error, because falling back silently
// could hand out a MAC another hypervisor already uses.
func openNICLedger(c *cli.Context) (*nicLedger, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, fmt.Errorf("open the cluster ledger: %w; fix the store settings in %s (or --store)", err, c.String("config"))
	}
	if _, err := st.Spec(c.Context); err != nil {
		st.Close()
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(c.App.ErrWriter, "note: the cluster store has no spec yet, so MACs are checked on this host only; run 'gallium-net spec push -f SPEC' for cluster-unique MACs\n")
			return &nicLedger{c: c}, nil
		}
		return nil, fmt.Errorf("read the cluster ledger: %w", err)
	}
	return &nicLedger{c: c, st: st}, nil
}

func (l *nicLedger) Close() {
	if l.st != nil {
		l.st.Close()
	}
}

// newMAC decides the MAC of a new NIC of domain uuid: the operator's (want,
// checked and claimed in the ledger) or a fresh one. used holds the MACs
// already on this host, which the ledger may not know (domains not yet
// imported). The returned undo releases the ledger record when attaching the
// NIC fails afterwards.
func (l *nicLedger) newMAC(s *plugin.Spec, want string, used map[string]bool, rec store.NIC) (mac string, undo func(), err error) {
	if l.st == nil {
		mac, err := newNICMAC(s, want, used)
		return mac, func() {}, err
	}
	ctx := l.c.Context
	if want != "" {
		mac, err := checkMAC(want, used)
		if err != nil {
			return "", nil, err
		}
		rec.Key, rec.MAC = mac, mac
		if _, _, err := l.st.ImportNIC(ctx, rec); err != nil {
			return "", nil, fmt.Errorf("--mac %s: %w; leave --mac out to allocate a free one", want, err)
		}
		return mac, l.releaser(rec.DomainUUID, rec.Key), nil
	}
	// A MAC the ledger hands out may still be on a domain of this host the
	// ledger never saw; give it back and draw again.
	for range 8 {
		rec.Key = "nic-" + randomHex(4)
		nic, _, err := l.st.AllocateMAC(ctx, rec)
		if err != nil {
			return "", nil, err
		}
		if !used[strings.ToLower(nic.MAC)] {
			return nic.MAC, l.releaser(rec.DomainUUID, rec.Key), nil
		}
		if _, err := l.st.ReleaseNIC(ctx, rec.DomainUUID, rec.Key); err != nil {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("the cluster ledger keeps handing out MACs already used on this host; run 'gallium-net state import' to adopt this host's NICs")
}

func (l *nicLedger) releaser(uuid, key string) func() {
	return func() {
		if _, err := l.st.ReleaseNIC(l.c.Context, uuid, key); err != nil {
			fmt.Fprintf(l.c.App.ErrWriter, "warning: could not release NIC %s/%s from the cluster ledger: %v\n", uuid, key, err)
		}
	}
}

// release forgets the ledger record that holds mac, if any.
func (l *nicLedger) release(mac string) error {
	if l.st == nil {
		return nil
	}
	owner, err := l.st.MACOwner(l.c.Context, mac)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	uuid, key, _ := strings.Cut(owner, "/")
	_, err = l.st.ReleaseNIC(l.c.Context, uuid, key)
	return err
}

// synced rewrites this host's snapshot after a ledger change (what names
// it), so the hook's MAC checks see it; a failure is a warning.
func (l *nicLedger) synced(what string) {
	if l.st != nil {
		refreshSnapshotAfter(l.c, l.st, what)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(randReader, b); err != nil {
		panic(fmt.Sprintf("random source failed: %v", err)) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
