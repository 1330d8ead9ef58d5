package netsetup

import (
	"errors"
	"fmt"
	"strings"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// AllowDisruptive lets disruptive steps (re-creating or deleting a bond
	// or bridge) run; without it Apply refuses a plan that has any.
	AllowDisruptive bool
	// Progress, when set, is called before each step (i from 0) and after
	// it with its error (done true).
	Progress func(i, n int, s Step, done bool, err error)
}

// ErrDisruptive is returned when a plan has disruptive steps and they were
// not allowed.
var ErrDisruptive = errors.New("the plan has disruptive steps (marked DISRUPTIVE); review them and re-run with --allow-disruptive")

// ApplyError is a failed apply: the step that failed and what the undo did.
type ApplyError struct {
	Step    int // 0-based index of the failed step
	Cmd     string
	Err     error
	UndoErr error // nil when the host was put back
}

func (e *ApplyError) Error() string {
	msg := fmt.Sprintf("step %d (%s) failed: %v", e.Step+1, e.Cmd, e.Err)
	if e.UndoErr != nil {
		return msg + "; ROLLBACK INCOMPLETE: " + e.UndoErr.Error() + "; compare with 'gallium-net host status' and restore by hand or with 'gallium-net host rollback'"
	}
	return msg + "; every earlier step was undone, the host is as it was"
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Apply runs the plan's steps in order on k. When a step fails it runs the
// undo writes of every step done so far, newest first, so that the host is
// back where it was, and returns an *ApplyError.
func Apply(k Kernel, p *Plan, opts ApplyOptions) error {
	if p.Disruptive() && !opts.AllowDisruptive {
		return ErrDisruptive
	}
	var undo [][]Op // incus revert style: one entry per step done
	for i, s := range p.Steps {
		if opts.Progress != nil {
			opts.Progress(i, len(p.Steps), s, false, nil)
		}
		err := k.Do(s.Op)
		if opts.Progress != nil {
			opts.Progress(i, len(p.Steps), s, true, err)
		}
		if err != nil {
			return &ApplyError{Step: i, Cmd: s.Cmd, Err: err, UndoErr: revert(k, undo)}
		}
		undo = append(undo, s.Undo)
	}
	return nil
}

// revert runs the undo lists newest first. It carries on past a failed write
// (to put back as much as it can) and reports every failure.
func revert(k Kernel, undo [][]Op) error {
	var errs []string
	for i := len(undo) - 1; i >= 0; i-- {
		for _, op := range undo[i] {
			if err := k.Do(op); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", op, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Converge observes the host, plans towards desired, applies the plan and
// verifies the result by observing again: the plan must then be empty. It
// returns the plan it applied.
func Converge(k Kernel, desired *HostState, opts ApplyOptions) (*Plan, error) {
	obs, err := k.Observe()
	if err != nil {
		return nil, fmt.Errorf("read host networking: %w", err)
	}
	p, err := MakePlan(desired, obs)
	if err != nil {
		return nil, err
	}
	if p.Empty() {
		return p, nil
	}
	if err := Apply(k, p, opts); err != nil {
		return p, err
	}
	return p, Verify(k, desired)
}

// Verify reads the host back and fails when it is not converged.
func Verify(k Kernel, desired *HostState) error {
	obs, err := k.Observe()
	if err != nil {
		return fmt.Errorf("verify: read host networking: %w", err)
	}
	p, err := MakePlan(desired, obs)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !p.Empty() {
		return fmt.Errorf("verify: the host is not converged after apply; still to do:\n  %s", strings.Join(p.Lines(), "\n  "))
	}
	return nil
}

// Restore takes the host back to snap (see RestorePlan), allowing the
// disruptive steps that this may need, and verifies the result.
func Restore(k Kernel, snap *Snapshot, progress func(i, n int, s Step, done bool, err error)) (*Plan, error) {
	obs, err := k.Observe()
	if err != nil {
		return nil, fmt.Errorf("read host networking: %w", err)
	}
	p, err := RestorePlan(snap, obs)
	if err != nil {
		return nil, err
	}
	if err := Apply(k, p, ApplyOptions{AllowDisruptive: true, Progress: progress}); err != nil {
		return p, err
	}
	obs, err = k.Observe()
	if err != nil {
		return p, fmt.Errorf("verify restore: %w", err)
	}
	if again, err := RestorePlan(snap, obs); err != nil {
		return p, err
	} else if !again.Empty() {
		return p, fmt.Errorf("verify restore: still differs from the snapshot:\n  %s", strings.Join(again.Lines(), "\n  "))
	}
	return p, nil
}
