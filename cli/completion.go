package main

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/specfile"
)

// The shell scripts ask gallium-net itself for the candidates of the word
// being completed ('gallium-net __complete WORDS... CURRENT'), so that
// flags, flag values and names from the spec complete alike. urfave/cli's
// own --generate-bash-completion gave nothing for "--<TAB>" (the "--" ended
// the flags) and offered --output after "-o " (the flag took the marker as
// its value).
const bashCompletion = `# bash completion for gallium-net
_gallium_net() {
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
  return 0
}
complete -o bashdefault -o default -F _gallium_net gallium-net
`

const zshCompletion = `#compdef gallium-net
_gallium_net() {
  local -a opts
  opts=("${(@f)$(${words[1]} __complete ${words[2,CURRENT]} 2>/dev/null)}")
  if [[ -n "${opts[1]}" ]]; then
    compadd -a opts
  else
    _files
  fi
}
compdef _gallium_net gallium-net
`

// completeCommand is the hidden name main answers before parsing anything.
const completeCommand = "__complete"

// flagChoices holds the values a flag takes, for completion (-o's
// formats): cli.Flag -> []string. A sync.Map: every newApp adds its flags.
var flagChoices sync.Map

// complete returns the candidates for the last of words (the words after
// "gallium-net", the last one being completed, possibly ""): subcommands,
// flags of the command reached, a flag's values (output formats; names of
// hypervisors, networks and profiles from the spec that -f names), or a
// command's arguments. Nothing means "complete file names" to the shell.
func complete(app *cli.App, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	cmds, flags := app.Commands, app.Flags
	var cmd *cli.Command
	var args []string
	specFile := ""
	for i := 0; i < len(before); i++ {
		w := before[i]
		if strings.HasPrefix(w, "-") && w != "-" {
			name, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			n := flagArity(flags, w)
			if n == 2 && i+1 < len(before) {
				value, hasValue = before[i+1], true
			}
			if hasValue && (name == "spec" || name == "f") {
				specFile = value
			}
			i += n - 1
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(w) {
				next = c
			}
		}
		if next == nil {
			args = append(args, w)
			continue
		}
		cmd, cmds, flags = next, next.Subcommands, next.Flags
	}
	// The value of a flag given just before.
	if len(before) > 0 {
		prev := before[len(before)-1]
		if strings.HasPrefix(prev, "-") && !strings.Contains(prev, "=") && flagArity(flags, prev) == 2 {
			return filterPrefix(flagValues(flags, strings.TrimLeft(prev, "-"), specFile), cur)
		}
	}
	if strings.HasPrefix(cur, "-") {
		var out []string
		for _, f := range flags {
			for _, n := range f.Names() {
				if len(n) == 1 {
					out = append(out, "-"+n)
				} else {
					out = append(out, "--"+n)
				}
			}
		}
		return filterPrefix(append(out, "--help"), cur)
	}
	if len(cmds) > 0 {
		var out []string
		for _, c := range cmds {
			if !c.Hidden {
				out = append(out, c.Name)
			}
		}
		return filterPrefix(out, cur)
	}
	if cmd != nil && len(args) == 0 {
		return filterPrefix(argValues(cmd, specFile), cur)
	}
	return nil
}

// flagValues are the values flag name takes.
func flagValues(flags []cli.Flag, name, specFile string) []string {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if vs, ok := flagChoices.Load(f); ok {
				return vs.([]string)
			}
			switch f.Names()[0] {
			case "hypervisor":
				return specNames(specFile, "hypervisors")
			case "network":
				return specNames(specFile, "networks")
			case "profile":
				return specNames(specFile, "profiles")
			}
		}
	}
	return nil
}

// argValues are the first arguments of cmd: network names where its
// ArgsUsage says NAME of a network command, the shells of completion.
func argValues(cmd *cli.Command, specFile string) []string {
	switch {
	case strings.Contains(cmd.ArgsUsage, "|") && !strings.Contains(cmd.ArgsUsage, "--"):
		return strings.Split(cmd.ArgsUsage, "|")
	case strings.HasPrefix(strings.TrimLeft(cmd.ArgsUsage, "["), "NAME") && strings.Contains(cmd.Usage, "network"):
		return specNames(specFile, "networks")
	}
	return nil
}

// specNames lists names of one kind from the spec (-f, else
// $GALLIUM_NET_SPEC, else the default), or nothing when it does not load:
// completion never fails loudly.
func specNames(file, kind string) []string {
	if file == "" {
		file = os.Getenv("GALLIUM_NET_SPEC")
	}
	if file == "" {
		file = DefaultSpecPath
	}
	s, err := specfile.Load(file)
	if err != nil {
		return nil
	}
	var out []string
	switch kind {
	case "hypervisors":
		out = s.HypervisorNames()
	case "networks":
		for _, n := range s.Networks {
			out = append(out, n.Name)
		}
	case "profiles":
		for _, p := range s.HardwareProfiles {
			out = append(out, p.Name)
		}
	}
	return out
}

func filterPrefix(words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

// manCommand prints the man page generated from the command tree, so the
// packages ship documentation that cannot drift from --help.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the gallium-net(1) man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			// Section 1: the command is a user command in /usr/bin (ToMan
			// says 8, and the packages shipped it as man1).
			page, err := manText(c.App).ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// manText returns app with the help texts escaped for ToMan, which reads
// them as Markdown: "<interface>" was taken for an HTML tag and dropped
// ("domain  XML"). A backslash makes "<" literal in Markdown.
func manText(app *cli.App) *cli.App {
	esc := strings.NewReplacer("<", `\<`).Replace
	app.Usage, app.Description = esc(app.Usage), esc(app.Description)
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.Usage, c.Description, c.UsageText, c.ArgsUsage = esc(c.Usage), esc(c.Description), esc(c.UsageText), esc(c.ArgsUsage)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	return app
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: `Prints the completion script for your shell. Example:

   gallium-net completion bash > /etc/bash_completion.d/gallium-net
   gallium-net completion zsh > "${fpath[1]}/_gallium-net"`,
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, zshCompletion)
				return err
			default:
				return fmt.Errorf("completion: say which shell: 'gallium-net completion bash' or 'gallium-net completion zsh'")
			}
		},
	}
}
