package model

import (
	"fmt"
	"sort"
)

// Severity of a validation finding.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Finding is one result of validation: what is wrong, where, and what to do.
type Finding struct {
	Severity Severity `json:"severity" yaml:"severity"`
	// Path names the offending object: hypervisors[hv1].adapters,
	// adapterGroups[infra], networks[prod].vlan.
	Path string `json:"path" yaml:"path"`
	// Message says what is wrong and what to change.
	Message string `json:"message" yaml:"message"`
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s: %s", f.Severity, f.Path, f.Message) }

// Findings is the list of findings of one validation.
type Findings []Finding

// HasErrors reports whether any finding is an error (the spec is invalid).
func (fs Findings) HasErrors() bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns only the error findings.
func (fs Findings) Errors() Findings { return fs.only(SeverityError) }

// Warnings returns only the warning findings.
func (fs Findings) Warnings() Findings { return fs.only(SeverityWarning) }

func (fs Findings) only(sev Severity) Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == sev {
			out = append(out, f)
		}
	}
	return out
}

// Sorted returns the findings errors first, then by path, stable otherwise.
func (fs Findings) Sorted() Findings {
	out := append(Findings(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity == SeverityError
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// Err returns nil when there are no errors, else an error that lists them,
// for callers that need a valid spec and have no use for the details.
func (fs Findings) Err() error {
	errs := fs.Errors()
	if len(errs) == 0 {
		return nil
	}
	return &InvalidSpecError{Findings: errs}
}

// InvalidSpecError is returned when a spec fails validation.
type InvalidSpecError struct{ Findings Findings }

func (e *InvalidSpecError) Error() string {
	msg := fmt.Sprintf("invalid cluster spec (%d error(s))", len(e.Findings))
	for _, f := range e.Findings {
		msg += "\n  " + f.Path + ": " + f.Message
	}
	return msg
}
