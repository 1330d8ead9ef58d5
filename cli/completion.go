package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

const bashCompletion = `# bash completion for gallium-net
_gallium_net() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -F _gallium_net gallium-net
`

const zshCompletion = `#compdef gallium-net
_gallium_net() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _gallium_net gallium-net
`

// manCommand prints the man page generated from the command tree, so the
// packages ship documentation that cannot drift from --help.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the gallium-net(1) man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToMan()
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
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
