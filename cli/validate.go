package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// validateResult is the JSON contract of `validate -o json` (DESIGN.md §2).
type validateResult struct {
	Valid    bool            `json:"valid"`
	Findings []model.Finding `json:"findings"`
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:  "validate",
		Usage: "check a cluster spec against the product's rules",
		Description: `Reads the spec, checks every rule (adapters per group, 10 Gbps infrastructure
adapters, management IPs and VIP on one subnet, VLANs, names, NIC models...)
and prints each finding with the object it concerns and what to change.
Exit status: 0 valid (warnings allowed), 1 invalid, 2 a usage error.

Examples:
   gallium-net validate -f examples/cluster.yaml
   gallium-net validate -f cluster.yaml -o json | jq '.findings[]'`,
		Flags: []cli.Flag{specFlag(), outputFlag("text", "json")},
		Action: func(c *cli.Context) error {
			res := validateResult{Findings: []model.Finding{}}
			s, err := readSpec(c)
			if err != nil {
				// A spec that does not even load is invalid; report it in
				// the same shape so scripts need one code path.
				// The path names the key, or the place when there is
				// none; the message does not repeat either ("empty.yaml:
				// empty.yaml: spec is empty").
				f := model.Finding{Severity: model.SeverityError, Path: specPath(c), Message: err.Error()}
				var le *specfile.LoadError
				if errors.As(err, &le) {
					if le.Key != "" {
						f.Path, f.Message = le.Key, le.Where()+": "+le.Msg
					} else {
						f.Path, f.Message = le.Where(), le.Msg
					}
				}
				res.Findings = append(res.Findings, f)
			} else {
				res.Findings = append(res.Findings, model.Validate(s).Sorted()...)
			}
			res.Valid = !model.Findings(res.Findings).HasErrors()
			if c.String("output") == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				w := c.App.Writer
				for _, f := range res.Findings {
					fmt.Fprintf(w, "%-7s %s: %s\n", f.Severity, f.Path, f.Message)
				}
				nerr, nwarn := len(model.Findings(res.Findings).Errors()), len(model.Findings(res.Findings).Warnings())
				if res.Valid {
					fmt.Fprintf(w, "%s: valid (%d warning(s))\n", specPath(c), nwarn)
				} else {
					fmt.Fprintf(w, "%s: INVALID: %d error(s), %d warning(s)\n", specPath(c), nerr, nwarn)
				}
			}
			if !res.Valid {
				return &exitError{code: 1, err: fmt.Errorf("%s is not a valid cluster spec", specPath(c))}
			}
			return nil
		},
	}
}
