package main

import (
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

// openNICLedger opens the store the flags and config name and picks the
// MAC policy for it (vmnet.MACsFor). A store that holds no spec yet is not
// an error: the NIC gets a locally unique MAC and the operator is told how
// to get cluster-wide uniqueness.
func openNICLedger(c *cli.Context) (*nicLedger, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, fmt.Errorf("open the cluster ledger: %w; fix the store settings in %s (or --store)", err, c.String("config"))
	}
	macs, local, err := vmnet.MACsFor(c.Context, st, randReader)
	if err != nil {
		st.Close()
		return nil, err
	}
	if local {
		st.Close()
		fmt.Fprintf(c.App.ErrWriter, "note: the cluster store has no spec yet, so MACs are checked on this host only; run 'gallium-net spec push -f SPEC' for cluster-unique MACs\n")
		return &nicLedger{MACs: macs, c: c}, nil
	}
	return &nicLedger{MACs: macs, c: c, st: st}, nil
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
