package main

import "github.com/urfave/cli/v2"

type (
	cliContext = cli.Context
	cliCommand = cli.Command
)
