package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/confirm"
	"github.com/gallium/gallium-net/netsetup/osnet"
)

func hostApplyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "converge this host's bonds, bridges, VLANs and management IP, with undo on failure and commit-confirm",
		Description: `apply prints the plan, asks (unless --yes), runs it step by step and reads
the host back. When a step fails, every earlier step is undone. When the plan
changes the link that carries the management IP, apply first saves the
current state and arms an automatic rollback that runs after
--confirm-timeout unless 'gallium-net host confirm' runs first; the rollback
runs in its own session, so it happens even when this command or its SSH
session dies.

Example:
   gallium-net host apply -f /etc/gallium-net/cluster.yaml --confirm-timeout 2m
   gallium-net host confirm        # from a new SSH session, within 2 minutes`,
		Flags: []cli.Flag{
			specFlag(), hypervisorFlag(), hostStateDirFlag(),
			&cli.BoolFlag{Name: "allow-disruptive", Usage: "allow steps that re-create or delete a bond or bridge (traffic stops on it)"},
			&cli.DurationFlag{Name: "confirm-timeout", Value: confirm.DefaultTimeout, Usage: "roll back a change of the management link unless confirmed within `DURATION` (0 disables: not recommended over SSH)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask"},
			&cli.BoolFlag{Name: "skip-checks", Usage: "apply even when adapter checks report errors (slow or missing adapters)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing (as 'host plan')"},
		},
		Action: hostApply,
	}
}

func hostApply(c *cli.Context) error {
	hs, err := loadHostSetup(c)
	if err != nil {
		return err
	}
	return applyHost(c, hs, nil)
}

// applyHost is host apply, and the second half of host takeover (release:
// the OS network manager files it writes before the plan runs, under
// --root, guarded by the same commit-confirm).
func applyHost(c *cli.Context, hs *hostSetup, release *osnet.Release) error {
	w := c.App.Writer
	takeover := release != nil && !release.Empty()
	findings, _ := netsetup.CheckAdaptersIn(hs.spec, hs.hv, netsetup.SysfsReader(netsetup.DefaultSysfs), netsetup.ListAdapters(netsetup.DefaultSysfs))
	for _, f := range findings.Sorted() {
		fmt.Fprintf(c.App.ErrWriter, "%s: %s: %s\n", f.Severity, f.Path, f.Message)
	}
	if findings.HasErrors() && !c.Bool("skip-checks") {
		return fmt.Errorf("adapter checks failed on hypervisor %s (above); fix them or pass --skip-checks", hs.hv)
	}
	k := netsetup.NewNetlink()
	obs, err := k.Observe()
	if err != nil {
		return err
	}
	// Preview, not MakePlan: the plan is printed before a refusal, so that
	// --dry-run shows it also on a kernel that cannot run it.
	p, err := netsetup.Preview(hs.desired, obs)
	if err != nil {
		return err
	}
	if p.Empty() && p.Refused == "" && !takeover {
		fmt.Fprintf(w, "hypervisor %s is converged: nothing to do\n", hs.hv)
		return nil
	}
	fmt.Fprintf(w, "# hypervisor %s: %d step(s)\n%s", hs.hv, len(p.Steps), p)
	if err := refusedErr(p); err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return nil
	}
	if p.Disruptive() && !c.Bool("allow-disruptive") {
		return netsetup.ErrDisruptive
	}
	if !c.Bool("yes") {
		q := fmt.Sprintf("apply these %d steps to %s?", len(p.Steps), hs.hv)
		if takeover {
			q = fmt.Sprintf("write these %d files and apply these %d steps to %s?", len(release.Edits), len(p.Steps), hs.hv)
		}
		ok, err := askYes(c, q)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("not applied")
		}
	}
	timeout := c.Duration("confirm-timeout")
	id, err := confirm.Apply(k, confirm.Request{
		Store:      confirm.Store{Dir: c.String("state-dir")},
		Hypervisor: hs.hv,
		Desired:    hs.desired,
		Observed:   obs,
		Plan:       p,
		Options:    netsetup.ApplyOptions{AllowDisruptive: c.Bool("allow-disruptive"), Progress: progressPrinter(w)},
		Timeout:    timeout,
		RollbackArgv: func(dir, id string, wait time.Duration) ([]string, error) {
			exe, err := os.Executable()
			return []string{exe, "host", "rollback", "--state-dir", dir, "--if-unconfirmed", id, "--after", wait.String()}, err
		},
		Notify: func(n confirm.Notice) {
			if n.Unguarded {
				fmt.Fprintln(c.App.ErrWriter, "warning: the plan changes the management link and --confirm-timeout 0 disables the automatic rollback")
				return
			}
			what := "the plan changes"
			if takeover {
				what = "the takeover moves"
			}
			fmt.Fprintf(w, "# %s the management link: automatic rollback %s armed for %s\n", what, n.ID, n.Timeout)
		},
		Takeover: release,
		Root:     c.String("root"),
	})
	if err != nil {
		return err
	}
	if takeover {
		fmt.Fprintf(w, "the OS's network managers let go of %s (%d files written)\n", strings.Join(osnet.Interfaces(hs.spec, hs.hv), ", "), len(release.Edits))
	}
	fmt.Fprintf(w, "hypervisor %s converged (%d steps, verified)\n", hs.hv, len(p.Steps))
	if id != "" {
		fmt.Fprintf(w, "KEEP THIS CHANGE: run 'gallium-net host confirm' within %s (from a new session, to prove the host is still reachable); otherwise it is rolled back.\n", timeout)
	}
	return nil
}

func progressPrinter(w io.Writer) func(i, n int, s netsetup.Step, done bool, err error) {
	return func(i, n int, s netsetup.Step, done bool, err error) {
		if !done {
			fmt.Fprintf(w, "[%d/%d] %s ... ", i+1, n, s.Cmd)
			return
		}
		if err != nil {
			fmt.Fprintln(w, "FAILED")
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

func askYes(c *cli.Context, q string) (bool, error) {
	f, ok := c.App.Reader.(*os.File)
	if ok {
		if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
			ok = false
		}
	}
	if !ok {
		return false, errors.New("not a terminal: pass --yes to apply without asking")
	}
	fmt.Fprintf(c.App.Writer, "%s [y/N] ", q)
	line, _ := bufio.NewReader(f).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

func hostConfirmCommand() *cli.Command {
	return &cli.Command{
		Name:  "confirm",
		Usage: "keep the last commit-confirm apply (cancels its automatic rollback)",
		Description: `Run it from a new session once the host is still reachable after
'gallium-net host apply' changed its management link.

Example:
   gallium-net host confirm`,
		ArgsUsage: "[ID]",
		Flags:     []cli.Flag{hostStateDirFlag()},
		Action: func(c *cli.Context) error {
			store := confirm.Store{Dir: c.String("state-dir")}
			ids := store.Armed()
			if id := c.Args().First(); id != "" {
				ids = []string{id}
			}
			if len(ids) == 0 {
				return errors.New("nothing to confirm: no apply is waiting for confirmation")
			}
			for _, id := range ids {
				if err := store.Confirm(id); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "confirmed %s: the change stays\n", id)
			}
			return nil
		},
	}
}

func hostRollbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "restore the host networking saved before the last commit-confirm apply",
		Description: `Puts back the bonds, bridges, VLANs and addresses saved before the last apply
(the automatic rollback of an unconfirmed apply runs this too).

Example:
   gallium-net host rollback`,
		ArgsUsage: "[ID]",
		Flags: []cli.Flag{
			hostStateDirFlag(),
			&cli.StringFlag{Name: "if-unconfirmed", Usage: "(used by apply) roll back `ID` only if it is still unconfirmed after --after"},
			&cli.DurationFlag{Name: "after", Usage: "with --if-unconfirmed: wait `DURATION` first"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask"},
		},
		Action: func(c *cli.Context) error {
			store := confirm.Store{Dir: c.String("state-dir")}
			k := netsetup.NewNetlink()
			if id := c.String("if-unconfirmed"); id != "" {
				err := store.RollbackIfUnconfirmed(k, id, c.Duration("after"), func(msg string) { slog.Info(msg, "id", id) })
				if errors.Is(err, confirm.ErrNotArmed) {
					slog.Info("confirmed in time; nothing to roll back", "id", id)
					return nil
				}
				return err
			}
			id := c.Args().First()
			if id == "" {
				ids := store.IDs()
				if len(ids) == 0 {
					return errors.New("nothing to roll back: no pre-apply snapshot saved")
				}
				id = ids[len(ids)-1]
			}
			p, err := store.Load(id)
			if err != nil {
				return err
			}
			obs, err := k.Observe()
			if err != nil {
				return err
			}
			plan, err := netsetup.RestorePlan(p.Snapshot, obs)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "# restore the state saved at %s (%s): %d step(s)\n", p.Created.Format(time.RFC3339), id, len(plan.Steps))
			if p.Takeover != nil {
				for _, e := range p.Takeover.Edits {
					verb := "write back"
					if !e.Existed {
						verb = "remove"
					}
					fmt.Fprintf(c.App.Writer, "# %s %s (%s)\n", verb, e.Path, e.Manager)
				}
				for _, r := range p.Takeover.Reload {
					fmt.Fprintf(c.App.Writer, "# then: %s\n", r)
				}
			}
			fmt.Fprint(c.App.Writer, plan)
			if plan.Empty() && p.Takeover == nil {
				return nil
			}
			if !c.Bool("yes") {
				ok, err := askYes(c, "restore it?")
				if err != nil || !ok {
					return errors.Join(err, errors.New("not rolled back"))
				}
			}
			_, err = store.RollbackNow(k, id, progressPrinter(c.App.Writer))
			return err
		},
	}
}
