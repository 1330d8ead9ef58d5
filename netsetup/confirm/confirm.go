// Package confirm is commit-confirm for `gallium-net host apply`: it saves
// the part of the host an apply may change, arms an automatic rollback
// when the apply changes the management link, and restores the saved state
// when no `gallium-net host confirm` comes in time (or on a manual
// `gallium-net host rollback`).
//
// It owns the policy (Apply): when a rollback is armed (the plan changes
// the management link and the timeout is not 0), how the rollback timer is
// detached (a transient systemd unit when systemd runs the host and the
// caller is in PID 1's network namespace, else a process in its own
// session), when it is disarmed again (a failed apply was already undone),
// and how many saved states are kept. The CLI only parses its flags, asks,
// and prints.
//
// confirm builds on netsetup (it restores snapshots with netsetup.Restore),
// so netsetup imports nothing of it; the other side jobs of netsetup (tap,
// probe, announce) do not import it either.
package confirm

import (
	"errors"
	"fmt"
	"time"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/plugin/atomicfile"
)

// keepSaved is how many saved pre-apply states a successful apply keeps
// (armed ones and rollbacks under way are always kept).
const keepSaved = 20

// Request is one apply that commit-confirm guards.
type Request struct {
	Store      Store
	Hypervisor string
	// Desired, Observed and Plan are the apply's: what the spec asks of
	// this host, the host as read before the plan, and the plan.
	Desired  *netsetup.HostState
	Observed *netsetup.Snapshot
	Plan     *netsetup.Plan
	// Options are handed to netsetup.Apply.
	Options netsetup.ApplyOptions
	// Timeout is how long a change of the management link waits for a
	// confirm before it is rolled back; 0 (or less) arms no rollback.
	Timeout time.Duration
	// RollbackArgv is the command line that, run detached, waits wait and
	// then rolls back id (saved under stateDir) unless it was confirmed:
	// `gallium-net host rollback --state-dir DIR --if-unconfirmed ID
	// --after WAIT`.
	RollbackArgv func(stateDir, id string, wait time.Duration) ([]string, error)
	// Notify, when set, hears what the policy decided, before the plan
	// runs.
	Notify func(Notice)
	// Takeover, when not empty (`gallium-net host takeover`), is written
	// under Root after the pre-apply state is saved and before the plan
	// runs, with its reloads; it always arms the automatic rollback (the
	// reloads touch the management link too), and when the plan fails its
	// files are put back and the managers reloaded.
	Takeover *osnet.Release
	Root     string
	// AlwaysArm arms the automatic rollback even when the plan leaves the
	// management link alone: a rolling apply checks connectivity after
	// every change and rolls back whatever failed the check.
	AlwaysArm bool
}

// Notice is what Apply decided about an automatic rollback.
type Notice struct {
	// Unguarded: the plan changes the management link, but Timeout 0
	// disables the automatic rollback.
	Unguarded bool
	// ID is the armed rollback ("" when none is armed) and Timeout when it
	// runs unless confirmed.
	ID      string
	Timeout time.Duration
}

// Apply saves the pre-apply state of what req.Plan may change, arms an
// automatic rollback when the plan changes the management link (see
// Notice), runs the plan (netsetup.Apply) and reads the host back
// (netsetup.Verify). It returns the armed rollback's ID, "" when none was
// armed: then the saved state is kept for a manual rollback only. When
// the plan fails, its undo has already put the host back and the rollback
// is disarmed; when only the read-back fails, the rollback stays armed and
// the error says so.
func Apply(k netsetup.Kernel, req Request) (string, error) {
	snap := req.Observed.Subset(req.Desired.Adapters())
	// The VIP may move to or away from this host before a rollback.
	snap.KeepAddrs = req.Desired.KeepAddrsByLink()
	id := ""
	takeover := req.Takeover != nil && !req.Takeover.Empty()
	if req.Plan.ChangesManagement(req.Desired, req.Observed) || takeover || req.AlwaysArm {
		if req.Timeout <= 0 {
			req.notify(Notice{Unguarded: true})
		} else {
			var err error
			if id, err = req.arm(snap); err != nil {
				return "", fmt.Errorf("arm the automatic rollback (nothing was changed): %w", err)
			}
			req.notify(Notice{ID: id, Timeout: req.Timeout})
		}
	}
	if id == "" {
		// Kept for a manual 'gallium-net host rollback'.
		now := time.Now()
		if err := req.Store.Save(req.pending(NewPendingID(now), now, time.Time{}, snap)); err != nil {
			return "", fmt.Errorf("save the pre-apply state (nothing was changed): %w", err)
		}
	}
	if takeover {
		if err := osnet.WriteEdits(req.root(), req.Takeover.Edits, atomicfile.Write); err != nil {
			req.disarm(id)
			return "", fmt.Errorf("release the OS network manager's files (each one written was put back): %w", err)
		}
		for _, r := range req.Takeover.Reload {
			if _, err := reload(r); err != nil {
				return "", errors.Join(err, req.unrelease(id))
			}
		}
	}
	if err := netsetup.Apply(k, req.Plan, req.Options); err != nil {
		if takeover {
			return "", errors.Join(err, req.unrelease(id))
		}
		// The undo already put the host back: the timer has nothing to do.
		req.disarm(id)
		return "", err
	}
	if err := netsetup.Verify(k, req.Desired); err != nil {
		if id != "" {
			return id, fmt.Errorf("%w\nthe automatic rollback %s stays armed: it restores the previous state in %s unless you run 'gallium-net host confirm'", err, id, req.Timeout)
		}
		return "", err
	}
	req.Store.Prune(keepSaved)
	return id, nil
}

func (req Request) notify(n Notice) {
	if req.Notify != nil {
		req.Notify(n)
	}
}

// arm saves snap with a deadline and starts the detached process that
// restores it after req.Timeout unless confirmed.
func (req Request) arm(snap *netsetup.Snapshot) (string, error) {
	store := req.Store
	now := time.Now()
	id := NewPendingID(now)
	if err := store.Save(req.pending(id, now, now.Add(req.Timeout), snap)); err != nil {
		return "", err
	}
	// With systemd a transient timer unit waits (it survives logind killing
	// the SSH session's processes); otherwise a process in its own session
	// sleeps itself.
	wait, after := req.Timeout, time.Duration(0)
	if HasSystemd() {
		wait, after = 0, req.Timeout
	}
	argv, err := req.RollbackArgv(store.StateDir(), id, wait)
	if err != nil {
		store.Confirm(id)
		return "", err
	}
	if _, err := Detach(argv, store.LogPath(id), after, "gallium-net-rollback-"+id); err != nil {
		store.Confirm(id)
		return "", err
	}
	return id, nil
}

func (req Request) pending(id string, now, deadline time.Time, snap *netsetup.Snapshot) *Pending {
	p := &Pending{ID: id, Hypervisor: req.Hypervisor, Created: now, Deadline: deadline, Snapshot: snap}
	if req.Takeover != nil && !req.Takeover.Empty() {
		p.Takeover, p.Root = req.Takeover, req.root()
	}
	return p
}

func (req Request) root() string {
	if req.Root == "" {
		return "/"
	}
	return req.Root
}

// disarm cancels the armed rollback id ("" for none): the host is back as
// it was, so the timer has nothing to do.
func (req Request) disarm(id string) {
	if id != "" {
		req.Store.Confirm(id)
	}
}

// unrelease puts the takeover's files back and reloads the managers after
// the plan (already undone by netsetup.Apply) or a reload failed.
func (req Request) unrelease(id string) error {
	defer req.disarm(id)
	err := osnet.RestoreFiles(req.root(), req.Takeover.Edits, atomicfile.Write)
	for _, r := range req.Takeover.Reload {
		_, rerr := reload(r)
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("put the OS network manager's files back: %w", err)
	}
	return nil
}
