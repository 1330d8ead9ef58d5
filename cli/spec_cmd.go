package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/sergi/go-diff/diffmatchpatch"
	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/plugin/store"
)

// specCommand is `spec push|show|diff|history`: the cluster spec in the
// cluster state, with its revisions.
func specCommand() *cli.Command {
	withStore := func(fs ...cli.Flag) []cli.Flag { return append(fs, storeFlags()...) }
	return &cli.Command{
		Name:  "spec",
		Usage: "store the cluster spec in the cluster state, show it, diff it, list its revisions",
		Subcommands: []*cli.Command{
			{
				Name:  "push",
				Usage: "validate the spec file and store it as the next revision",
				Description: `The file must be valid (as 'gallium-net validate' says). A push refuses to
replace a stored revision newer than the one the file was based on: pass
--base N (the revision you edited), or keep the first line that
'gallium-net spec show' prints ("` + store.RevisionHeader + ` N"). --force
overrides. After the push this hypervisor's host snapshot is rewritten.

Example:
   gallium-net spec push -f /etc/gallium-net/cluster.yaml --base 3`,
				Flags: withStore(specFlag(), hypervisorFlag(), snapshotFlag(),
					&cli.Int64Flag{Name: "base", Usage: "stored `REVISION` the file is based on"},
					&cli.BoolFlag{Name: "force", Usage: "replace the stored spec even when it is newer than the file's base"},
				),
				Action: specPush,
			},
			{
				Name:  "show",
				Usage: "print the stored spec (current, or --revision N)",
				Description: `The first line records the revision, so an edited copy pushes safely.

Example:
   gallium-net spec show > cluster.yaml && vi cluster.yaml && gallium-net spec push -f cluster.yaml`,
				Flags:  withStore(&cli.Int64Flag{Name: "revision", Aliases: []string{"r"}, Usage: "show `REVISION` instead of the current one"}),
				Action: specShow,
			},
			{
				Name:  "diff",
				Usage: "compare a spec file with the stored spec (exit 1 when they differ)",
				Description: `Prints a unified diff from the stored revision to the file.

Example:
   gallium-net spec diff -f cluster.yaml --revision 2`,
				Flags:  withStore(specFlag(), &cli.Int64Flag{Name: "revision", Aliases: []string{"r"}, Usage: "compare with `REVISION` instead of the current one"}),
				Action: specDiff,
			},
			{
				Name:  "history",
				Usage: "list the stored revisions of the spec",
				Description: `Every push is kept: revision, time, who pushed, whether it was forced.

Example:
   gallium-net spec history -o json`,
				Flags:  withStore(outputFlag()),
				Action: specHistory,
			},
		},
	}
}

// readSpecFile returns the bytes of the file -f names ("-": stdin).
func readSpecFile(c *cli.Context) ([]byte, error) {
	path := specPath(c)
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(c.App.Reader)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the cluster spec: %w (pass -f FILE)", err)
	}
	return data, nil
}

func whoAmI() string {
	host, _ := os.Hostname()
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + host
}

// specToStore is a spec file on its way into the store: read, its
// revision header split off, parsed and validated.
type specToStore struct {
	data      []byte // the file as read, header included
	headerRev int64
	spec      *model.Spec
}

// readSpecToStore reads -f for push or apply; what names the refusal of
// an invalid spec ("push", "apply").
func readSpecToStore(c *cli.Context, what string) (*specToStore, error) {
	data, err := readSpecFile(c)
	if err != nil {
		return nil, err
	}
	body, headerRev, err := store.SplitRevisionHeader(data)
	if err != nil {
		return nil, err
	}
	s, err := specfile.Parse(body, specPath(c))
	if err != nil {
		return nil, err
	}
	findings := model.Validate(s)
	warnSummary(c, findings)
	if err := findings.Err(); err != nil {
		return nil, fmt.Errorf("refusing to %s an invalid spec: %s: %w\nrun 'gallium-net validate -f %s' for details", what, specPath(c), err, specPath(c))
	}
	return &specToStore{data: data, headerRev: headerRev, spec: s}, nil
}

func specPush(c *cli.Context) error {
	in, err := readSpecToStore(c, "push")
	if err != nil {
		return err
	}
	data := in.data
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := st.PushSpec(c.Context, store.PushRequest{YAML: data, Base: c.Int64("base"), Force: c.Bool("force"), By: whoAmI()})
	if err != nil {
		return err
	}
	if res.Unchanged {
		fmt.Fprintf(c.App.Writer, "unchanged: %s already holds this spec as revision %d\n", st, res.Record.Version)
	} else {
		fmt.Fprintf(c.App.Writer, "pushed spec revision %d to %s\n", res.Record.Version, st)
	}
	refreshSnapshotAfter(c, st, fmt.Sprintf("spec revision %d", res.Record.Version))
	return nil
}

// storedRevision returns the current record, or --revision's.
func storedRevision(c *cli.Context, st *store.Store) (*store.SpecRecord, error) {
	want := c.Int64("revision")
	if want == 0 {
		return st.Spec(c.Context)
	}
	hist, err := st.SpecHistory(c.Context)
	if err != nil {
		return nil, err
	}
	for i := range hist {
		if hist[i].Version == want {
			return &hist[i], nil
		}
	}
	return nil, fmt.Errorf("spec revision %d is not in %s (it holds %d revisions; see 'gallium-net spec history')", want, st, len(hist))
}

func specShow(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := storedRevision(c, st)
	if err != nil {
		return err
	}
	// The header line lets an edited copy be pushed back safely.
	fmt.Fprintf(c.App.Writer, "%s %d\n%s", store.RevisionHeader, rec.Version, rec.YAML)
	return nil
}

func specDiff(c *cli.Context) error {
	data, err := readSpecFile(c)
	if err != nil {
		return err
	}
	body, _, err := store.SplitRevisionHeader(data)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := storedRevision(c, st)
	if err != nil {
		return err
	}
	d := unifiedDiff(fmt.Sprintf("stored revision %d", rec.Version), specPath(c), rec.YAML, string(body), 3)
	if d == "" {
		fmt.Fprintf(c.App.Writer, "%s is the same as stored revision %d\n", specPath(c), rec.Version)
		return nil
	}
	fmt.Fprint(c.App.Writer, d)
	return &exitError{code: 1, err: fmt.Errorf("%s differs from stored revision %d", specPath(c), rec.Version)}
}

func specHistory(c *cli.Context) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	hist, err := st.SpecHistory(c.Context)
	if err != nil {
		return err
	}
	if len(hist) == 0 {
		return errors.New("no spec stored yet: push one with 'gallium-net spec push -f SPEC'")
	}
	type row struct {
		Revision int64  `json:"revision" yaml:"revision"`
		Pushed   string `json:"pushed" yaml:"pushed"`
		By       string `json:"by" yaml:"by"`
		Forced   bool   `json:"forced" yaml:"forced"`
		SHA256   string `json:"sha256" yaml:"sha256"`
	}
	rows := make([]row, 0, len(hist))
	for _, h := range hist {
		rows = append(rows, row{h.Version, h.Pushed.Format("2006-01-02T15:04:05Z"), h.By, h.Forced, h.SHA256})
	}
	return printOut(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "REVISION\tPUSHED\tBY\tFORCED\tSHA256")
		for _, r := range rows {
			forced := ""
			if r.Forced {
				forced = "yes"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.Revision, r.Pushed, r.By, forced, r.SHA256[:12])
		}
	})
}

// unifiedDiff returns a unified diff of two texts ("" when equal): the
// line edits come from go-diff (Myers), the hunks with context are drawn
// here, as diff -u draws them.
func unifiedDiff(nameA, nameB, a, b string, context int) string {
	ops := lineDiff(splitLines(a), splitLines(b))
	var out strings.Builder
	for k := 0; k < len(ops); {
		if ops[k].op == ' ' {
			k++
			continue
		}
		// A hunk: from context lines before the change to context lines
		// after the last change that is within 2*context of the next.
		start := max(0, k-context)
		end := k
		for end < len(ops) {
			if ops[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].op == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		if out.Len() == 0 {
			fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
		}
		na, nb := 0, 0
		for _, o := range ops[start:end] {
			if o.op != '+' {
				na++
			}
			if o.op != '-' {
				nb++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", ops[start].ai+1, na, ops[start].bi+1, nb)
		for _, o := range ops[start:end] {
			fmt.Fprintf(&out, "%c%s\n", o.op, o.text)
		}
		k = end
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffLine is one line of a diff: op is ' ', '-' or '+'; ai and bi count
// the lines of a and b before it.
type diffLine struct {
	op     byte
	text   string
	ai, bi int
}

// lineDiff returns the edit script from la to lb, line by line, with the
// removals of each change before its additions, as diff -u orders them.
func lineDiff(la, lb []string) []diffLine {
	dmp := diffmatchpatch.New()
	ca, cb, lines := dmp.DiffLinesToChars(joinLines(la), joinLines(lb))
	diffs := dmp.DiffCharsToLines(dmp.DiffMain(ca, cb, false), lines)
	var ops []diffLine
	var del, add []string
	i, j := 0, 0
	flush := func() {
		for _, t := range del {
			ops = append(ops, diffLine{'-', t, i, j})
			i++
		}
		for _, t := range add {
			ops = append(ops, diffLine{'+', t, i, j})
			j++
		}
		del, add = nil, nil
	}
	for _, d := range diffs {
		text := splitLines(d.Text)
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			del = append(del, text...)
		case diffmatchpatch.DiffInsert:
			add = append(add, text...)
		case diffmatchpatch.DiffEqual:
			flush()
			for _, t := range text {
				ops = append(ops, diffLine{' ', t, i, j})
				i, j = i+1, j+1
			}
		}
	}
	flush()
	return ops
}

// joinLines ends every line with a newline, so that go-diff compares a
// last line without one equal to the same line with one (as splitLines
// does).
func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
