package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/store"
)

func clusterApplyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "validate a spec, store it, and roll it out one hypervisor at a time with a connectivity check",
		Description: `The way to change a running cluster's network. It validates the spec (-f),
stores it as the next revision, then asks each hypervisor's agent in turn
(the spec's order) to apply it. Each applies with commit-confirm and keeps
the change only when the other hypervisors' management IPs, the VIP and the
store still answer over the infrastructure network; otherwise it rolls
itself back. The roll-out stops at the first hypervisor that does not
confirm: the ones after it are not touched, and the command says what
happened and what to do. Progress is shown live, per hypervisor and step.

Libvirt networks and the hook's snapshot follow the stored spec on every
hypervisor at once (the agents); host networking changes only through the
roll-out.

--dry-run prints each hypervisor's plan (against the state its agent last
published) and changes nothing.

Examples:
   gallium-net cluster apply -f /etc/gallium-net/cluster.yaml --dry-run
   gallium-net cluster apply -f /etc/gallium-net/cluster.yaml`,
		Flags: append(storeFlags(), specFlag(), clusterDirFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print each hypervisor's plan and change nothing"},
			&cli.DurationFlag{Name: "confirm-timeout", Value: time.Minute, Usage: "a hypervisor that has not confirmed its change within `DURATION` rolls back by itself"},
			&cli.Int64Flag{Name: "base", Usage: "the stored `REVISION` the file is based on (default: the file's revision header, else the stored revision)"},
		),
		Action: clusterApply,
	}
}

func clusterApply(c *cli.Context) error {
	in, err := readSpecToStore(c, "apply")
	if err != nil {
		return err
	}
	data, headerRev, spec := in.data, in.headerRev, in.spec
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	// Until the roll-out starts, reads wait out a slow store as every
	// command's do (ReadRetryBudget): right after a member's reboot the
	// first read can outlast one try, and failing then would be a false
	// "store unavailable" with nothing changed.
	w := c.App.Writer
	hosts, err := st.Hosts(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return applyDryRun(c, spec, hosts)
	}
	base := c.Int64("base")
	if base == 0 {
		base = headerRev
	}
	if base == 0 {
		if cur, err := st.Spec(c.Context); err == nil {
			base = cur.Version
		}
	}
	id := newRolloutID()
	res, err := st.PushSpec(c.Context, store.PushRequest{YAML: data, Base: base, By: clusterApplyBy + id + " by " + whoAmI()})
	if err != nil {
		return err
	}
	rev := res.Record.Version
	if res.Unchanged {
		fmt.Fprintf(w, "the store holds this spec already as revision %d; rolling it out where it is not applied\n", rev)
	} else {
		fmt.Fprintf(w, "stored spec revision %d (roll-out %s)\n", rev, id)
	}
	started := time.Now()
	order := spec.HypervisorNames()
	for i, hv := range order {
		if err := rollOne(c, st, id, rev, hv, i, len(order)); err != nil {
			var after []string
			if i+1 < len(order) {
				after = order[i+1:]
			}
			msg := fmt.Sprintf("roll-out of revision %d stopped at %s after %v: %v", rev, hv, time.Since(started).Round(100*time.Millisecond), err)
			if len(after) > 0 {
				msg += fmt.Sprintf("\n%s not touched (they keep their networking; 'gallium-net cluster status' shows them out of sync)", strings.Join(after, ", "))
			}
			msg += fmt.Sprintf("\nfix the spec (or %s) and run 'gallium-net cluster apply -f %s' again", hv, specPath(c))
			return &exitError{code: exitFailure, err: errors.New(msg)}
		}
	}
	fmt.Fprintf(w, "revision %d applied on %d hypervisors in %v\n", rev, len(order), time.Since(started).Round(100*time.Millisecond))
	return nil
}

func newRolloutID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// rollOne asks hv's agent to apply rev and follows it to the end.
func rollOne(c *cli.Context, st *store.Store, id string, rev int64, hv string, i, n int) error {
	w := c.App.Writer
	ctx := c.Context
	prefix := fmt.Sprintf("[%d/%d] %s:", i+1, n, hv)
	// The host rolled out just before may have left its member busy for a
	// few seconds: that must not stop the roll-out with "store unavailable".
	hosts, err := st.WithReadRetry(15 * time.Second).Hosts(ctx)
	if err != nil {
		return err
	}
	// From here the roll-out polls the store itself; a member cut off by
	// the change under way must not fill the output with retries.
	st = st.WithReadRetry(0)
	me := hosts[hv]
	if me == nil || me.Stale(time.Now()) {
		return fmt.Errorf("no heartbeat from %s's agent: start it there ('systemctl enable --now gallium-net-agent'), check 'gallium-net cluster status'", hv)
	}
	timeout := c.Duration("confirm-timeout")
	t0 := time.Now()
	if err := st.RequestRollout(ctx, hv, store.RolloutRequest{ID: id, Revision: rev, ConfirmTimeout: timeout, By: whoAmI(), At: t0.UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s asked to apply revision %d\n", prefix, rev)
	last := ""
	// The agent answers within its check window after the apply; give it
	// the confirm timeout and a margin for a store re-election.
	deadline := t0.Add(timeout + 45*time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		hosts, err := st.Hosts(pctx)
		cancel()
		if err == nil && hosts[hv] != nil && hosts[hv].Rollout != nil && hosts[hv].Rollout.ID == id {
			r := hosts[hv].Rollout
			if r.Phase != last {
				line := fmt.Sprintf("%s %s", prefix, r.Phase)
				if r.Phase == store.PhaseApplying {
					line += fmt.Sprintf(" (%d steps)", r.Steps)
				}
				if r.Done() && r.Detail != "" {
					line += ": " + r.Detail
				}
				fmt.Fprintf(w, "%s [%v]\n", line, time.Since(t0).Round(100*time.Millisecond))
				last = r.Phase
			}
			if r.Done() {
				if r.Phase != store.PhaseConfirmed {
					return fmt.Errorf("%s %s: %s", hv, r.Phase, r.Detail)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s's agent after %v (last phase %q): see 'journalctl -u gallium-net-agent' there", hv, time.Since(t0).Round(time.Second), last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// applyDryRun prints each hypervisor's plan against the state its agent
// published last.
func applyDryRun(c *cli.Context, spec *model.Spec, hosts map[string]*store.HostState) error {
	w := c.App.Writer
	for _, hv := range spec.HypervisorNames() {
		desired, err := netsetup.Desired(spec, hv)
		if err != nil {
			return err
		}
		h := hosts[hv]
		if h == nil || len(h.Observed) == 0 {
			fmt.Fprintf(w, "# hypervisor %s: no state published (is gallium-net-agent running there?)\n", hv)
			continue
		}
		var obs netsetup.Snapshot
		if err := json.Unmarshal(h.Observed, &obs); err != nil {
			return fmt.Errorf("hypervisor %s: its published state: %w", hv, err)
		}
		p, err := netsetup.Preview(desired, &obs)
		if err != nil {
			fmt.Fprintf(w, "# hypervisor %s: cannot plan: %v\n", hv, err)
			continue
		}
		age := time.Since(h.Heartbeat).Round(time.Second)
		if p.Empty() {
			fmt.Fprintf(w, "# hypervisor %s: converged, nothing to do (state of %v ago)\n", hv, age)
			continue
		}
		fmt.Fprintf(w, "# hypervisor %s: %d step(s) (state of %v ago)\n%s", hv, len(p.Steps), age, p)
		if p.Refused != "" {
			fmt.Fprintf(w, "#   refused there: %s\n", p.Refused)
		}
	}
	return nil
}
