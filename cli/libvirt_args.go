package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersedArgs moves the flags of the (sub)command that argv names in
// front of its positional arguments, so that `nic add vm1 --network prod`
// works like virsh's `attach-interface vm1 --source prod`: urfave/cli v2
// stops parsing flags at the first positional argument. Everything after
// "--" stays as it is.
func interspersedArgs(app *cli.App, argv []string) []string {
	if len(argv) < 2 {
		return argv
	}
	out := []string{argv[0]}
	cmds, flags := app.Commands, app.Flags
	i := 1
	// Walk the command path (global flags may come before it).
	for i < len(argv) {
		a := argv[i]
		if strings.HasPrefix(a, "-") {
			n := flagArity(flags, a)
			out = append(out, argv[i:min(i+n, len(argv))]...)
			i += n
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			if len(cmds) > 0 {
				// Not a command of this group: keep the rest as written,
				// so that the group reports the word itself (flags moved
				// before it would fail as unknown flags of the group).
				return append(out, argv[i:]...)
			}
			break
		}
		out = append(out, a)
		cmds, flags = next.Subcommands, next.Flags
		i++
	}
	var fl, pos []string
	for i < len(argv) {
		a := argv[i]
		if a == "--" {
			pos = append(pos, argv[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			n := flagArity(flags, a)
			fl = append(fl, argv[i:min(i+n, len(argv))]...)
			i += n
			continue
		}
		pos = append(pos, a)
		i++
	}
	return append(append(out, fl...), pos...)
}

// flagArity is how many argv entries flag a takes: 1 for a boolean flag,
// --name=value or an unknown flag, 2 for a flag with a separate value.
func flagArity(flags []cli.Flag, a string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return 1
			}
			return 2
		}
	}
	return 1
}
