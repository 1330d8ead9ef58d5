package main

import (
	"encoding/json"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// outputFlag is the -o flag of list-like commands.
func outputFlag(formats ...string) *cli.StringFlag {
	if len(formats) == 0 {
		formats = []string{"table", "json", "yaml"}
	}
	f := &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Value:   formats[0],
		Usage:   "output format: " + strings.Join(formats, ", "),
		Action: func(c *cli.Context, v string) error {
			for _, f := range formats {
				if v == f {
					return nil
				}
			}
			return usageErrorf("-o %s: unknown output format; use one of %s", v, strings.Join(formats, ", "))
		},
	}
	flagChoices.Store(f, formats)
	return f
}

// printOut writes v as JSON or YAML, or calls table for the table/text form.
func printOut(c *cli.Context, v any, table func(w *tabwriter.Writer)) error {
	w := c.App.Writer
	switch c.String("output") {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return err
		}
		return enc.Close()
	default:
		tw := newTable(w)
		table(tw)
		return tw.Flush()
	}
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}
