package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/specfile"
)

// Exit codes of gallium-net (README "Exit codes"). A script must be able to
// tell "you called me wrong" from "the spec is invalid" or "the operation
// failed": before, a typo in the command line exited 1 like an invalid spec.
const (
	exitOK      = 0
	exitFailure = 1 // an invalid spec, a failed check or operation
	exitUsage   = 2 // unknown command, flag or argument, or a bad flag value
)

// usageErrorf is a mistake in the command line: exit 2.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// guardUsage walks the command tree once, at start-up, and gives every
// command the same handling of command-line mistakes:
//   - a group (a command with subcommands, or the app itself) given a word
//     that is none of its subcommands says so and suggests the closest one
//     (urfave/cli's default printed "No help topic" and exited 3);
//   - a command given more positional arguments than its ArgsUsage names
//     refuses them (they were silently ignored: `validate broken.yaml`
//     validated the default spec and said "valid");
//   - a flag parse error is a usage error.
func guardUsage(app *cli.App) {
	app.Action = groupAction
	app.OnUsageError = onUsageError("")
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			full := strings.TrimSpace(path + " " + cmd.Name)
			cmd.OnUsageError = onUsageError(full)
			if len(cmd.Subcommands) > 0 {
				if cmd.Action == nil {
					cmd.Action = groupAction
				}
				walk(full, cmd.Subcommands)
				continue
			}
			if cmd.Action != nil {
				cmd.Action = refuseExtraArgs(full, cmd, cmd.Action)
			}
		}
	}
	walk("", app.Commands)
}

// groupAction runs for a command group named without a subcommand: help
// when nothing follows, else the word is not a command.
func groupAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	word := c.Args().First()
	cmds, where := c.App.Commands, "gallium-net"
	if c.Command != nil && len(c.Command.Subcommands) > 0 && c.Command.Name != c.App.Name {
		cmds, where = c.Command.Subcommands, "gallium-net "+c.Command.FullName()
	}
	msg := fmt.Sprintf("%q is not a command of '%s'", word, where)
	if s := closestCommand(cmds, word); s != "" {
		msg += fmt.Sprintf("; did you mean '%s %s'?", where, s)
	} else {
		msg += fmt.Sprintf("; see '%s --help'", where)
	}
	return usageErrorf("%s", msg)
}

// closestCommand is the visible command name nearest to word, or "" when
// none is near enough to be a typo of it.
func closestCommand(cmds []*cli.Command, word string) string {
	best, bestDist := "", 0
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			d := specfile.EditDistance(strings.ToLower(word), n)
			if best == "" || d < bestDist {
				best, bestDist = n, d
			}
		}
	}
	// A typo is a few edits away ("plna" is 2 from "plan"); "foo" is not a
	// misspelt "vm", which it is as far from as from any 2-letter word.
	if best != "" && bestDist <= max(2, len(best)/3) && bestDist < len(best) {
		return best
	}
	if best != "" && word != "" && strings.HasPrefix(best, strings.ToLower(word)) {
		return best
	}
	return ""
}

// maxArgs is how many positional arguments an ArgsUsage line names:
// "DOMAIN [PROFILE]" 2, "[NAME | --all]" 1, "bash|zsh" 1, "" 0. Flags in it
// (--all) are alternatives, not arguments.
func maxArgs(usage string) int {
	n := 0
	for _, tok := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(usage)) {
		if tok == "|" || strings.HasPrefix(tok, "-") || tok == "..." {
			continue
		}
		n++
	}
	return n
}

// refuseExtraArgs wraps a command's action so that arguments beyond its
// ArgsUsage are an error instead of being ignored.
func refuseExtraArgs(full string, cmd *cli.Command, action cli.ActionFunc) cli.ActionFunc {
	limit := maxArgs(cmd.ArgsUsage)
	return func(c *cli.Context) error {
		if c.NArg() <= limit {
			return action(c)
		}
		extra := c.Args().Slice()[limit:]
		what := fmt.Sprintf("unexpected argument %q", extra[0])
		if len(extra) > 1 {
			what = fmt.Sprintf("unexpected arguments %q", extra)
		}
		hint := fmt.Sprintf("see 'gallium-net %s --help'", full)
		if limit == 0 && takesSpec(cmd) {
			// The common case: a spec path where -f was meant.
			hint = fmt.Sprintf("to read the spec %s, write 'gallium-net %s -f %s'", extra[0], full, extra[0])
		}
		usage := "takes no arguments"
		if limit > 0 {
			usage = "takes " + cmd.ArgsUsage
		}
		return usageErrorf("%s: %s (it %s); %s", full, what, usage, hint)
	}
}

// takesSpec reports whether cmd has the -f/--spec flag.
func takesSpec(cmd *cli.Command) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == "spec" {
				return true
			}
		}
	}
	return false
}

// onUsageError makes a flag parse error of command full ("" for the app)
// a usage error, with the closest flag when the flag is unknown. full is
// known here, not from the context: urfave/cli has not set a command's
// path yet when its flags fail to parse.
func onUsageError(full string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok && cli.SuggestFlag != nil {
			flags := c.App.Flags
			if c.Command != nil {
				flags = c.Command.Flags
			}
			if s := cli.SuggestFlag(flags, strings.TrimLeft(name, "-"), true); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
		}
		return usageErrorf("%s; see '%s --help'", msg, strings.TrimSpace("gallium-net "+full))
	}
}

// isMissingRequiredFlag reports urfave/cli's error for a required flag not
// given (its type is unexported, so only its text tells it apart).
func isMissingRequiredFlag(err error) bool {
	var ee *exitError
	if errors.As(err, &ee) {
		return false
	}
	m := err.Error()
	return strings.HasPrefix(m, "Required flag ") || strings.HasPrefix(m, "Required flags ")
}
