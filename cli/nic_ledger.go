package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/vmnet"
)

// randReader is the random source of new MACs and NIC keys (nil:
// crypto/rand); tests swap in a deterministic one.
var randReader io.Reader

// nicLedger is the MAC policy of `nic add` and `nic remove`: the cluster
// ledger when the store holds a spec, else this host alone. A host without a
// cluster spec in its store (nothing pushed yet) still works, with a note
// that uniqueness is then local.
type nicLedger struct {
	vmnet.MACs
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
			return &nicLedger{MACs: vmnet.LocalMACs{Rand: randReader}, c: c}, nil
		}
		return nil, fmt.Errorf("read the cluster ledger: %w", err)
	}
	return &nicLedger{MACs: vmnet.Ledger{Store: st, Rand: randReader}, c: c, st: st}, nil
}

func (l *nicLedger) Close() {
	if l.st != nil {
		l.st.Close()
	}
}

// synced rewrites this host's snapshot after a ledger change (what names
// it), so the hook's MAC checks see it; a failure is a warning.
func (l *nicLedger) synced(what string) {
	if l.st != nil {
		refreshSnapshotAfter(l.c, l.st, what)
	}
}
