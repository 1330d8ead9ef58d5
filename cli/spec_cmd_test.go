package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	cases := []struct {
		name, a, b string
		want       []string // lines the diff must contain, in order
	}{
		{"equal", "a\nb\n", "a\nb\n", nil},
		{"changed line", "a\nb\nc\n", "a\nx\nc\n", []string{"--- A", "+++ B", "@@ -1,3 +1,3 @@", " a", "-b", "+x", " c"}},
		{"added at end", "a\n", "a\nb\n", []string{"@@ -1,1 +1,2 @@", " a", "+b"}},
		{"removed first", "a\nb\n", "b\n", []string{"-a", " b"}},
		{"from empty", "", "a\n", []string{"@@ -1,0 +1,1 @@", "+a"}},
		{"two hunks", strings.Repeat("x\n", 10) + "a\n" + strings.Repeat("y\n", 10) + "b\n",
			strings.Repeat("x\n", 10) + "A\n" + strings.Repeat("y\n", 10) + "B\n",
			[]string{"@@ -8,7 +8,7 @@", "-a", "+A", "@@ -19,4 +19,4 @@", "-b", "+B"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := unifiedDiff("A", "B", c.a, c.b, 3)
			if c.want == nil {
				if got != "" {
					t.Fatalf("diff of equal texts = %q", got)
				}
				return
			}
			lines := strings.Split(got, "\n")
			k := 0
			for _, l := range lines {
				if k < len(c.want) && l == c.want[k] {
					k++
				}
			}
			if k != len(c.want) {
				t.Errorf("diff lacks %q (in order):\n%s", c.want[k], got)
			}
		})
	}
}

// TestSpecPushShowDiffHistory drives the spec commands against a state
// file in a temp dir, as an operator would.
func TestSpecPushShowDiffHistory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "none.yaml"), nil, 0o600) // no host settings
	state := []string{"--state-file", filepath.Join(dir, "state.db"), "--config", filepath.Join(dir, "none.yaml"), "--hypervisor", "hv1", "--snapshot", filepath.Join(dir, "snap.json")}
	noHV := state[:4]
	base, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(dir, "v2.yaml")
	os.WriteFile(v2, []byte(strings.Replace(string(base), "vlan: 100", "vlan: 101", 1)), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(base), "vlan: 100", "vlan: 5000", 1)), 0o644)

	steps := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string // on stderr, for the refusals
	}{
		{"push first", append([]string{"spec", "push", "-f", example}, state...), 0, "pushed spec revision 1", ""},
		{"push same", append([]string{"spec", "push", "-f", example}, state...), 0, "unchanged", ""},
		{"push invalid", append([]string{"spec", "push", "-f", bad, "--base", "1"}, state...), 1, "", "refusing to push an invalid spec"},
		{"push without base", append([]string{"spec", "push", "-f", v2}, state...), 1, "", "push with --base 1"},
		{"diff", append([]string{"spec", "diff", "-f", v2}, noHV...), 1, "+  - {name: prod, adapterGroup: vmgroup, vlan: 101}", ""},
		{"push with base", append([]string{"spec", "push", "-f", v2, "--base", "1"}, state...), 0, "pushed spec revision 2", ""},
		{"diff same", append([]string{"spec", "diff", "-f", v2}, noHV...), 0, "same as stored revision 2", ""},
		{"show old", append([]string{"spec", "show", "--revision", "1"}, noHV...), 0, "# gallium-net-spec-revision: 1\n", ""},
		{"history", append([]string{"spec", "history", "-o", "json"}, noHV...), 0, `"revision": 2`, ""},
		{"missing revision", append([]string{"spec", "show", "-r", "9"}, noHV...), 1, "", "spec revision 9 is not in"},
	}
	for _, st := range steps {
		out, errOut, code := run(t, st.args...)
		if code != st.wantCode || !strings.Contains(out, st.wantOut) || !strings.Contains(errOut, st.wantErr) {
			t.Fatalf("%s: exit %d (want %d), output lacks %q or stderr lacks %q:\n%s%s", st.name, code, st.wantCode, st.wantOut, st.wantErr, out, errOut)
		}
	}
	// The pushes rewrote hv1's snapshot: it names the newest revision.
	snap, err := os.ReadFile(filepath.Join(dir, "snap.json"))
	if err != nil || !strings.Contains(string(snap), `"specRevision": 2`) {
		t.Errorf("host snapshot after push: %v\n%s", err, snap)
	}
	// A copy printed by show carries its revision: editing and pushing it
	// works without --base.
	shown, _, _ := run(t, append([]string{"spec", "show"}, noHV...)...)
	edited := filepath.Join(dir, "edited.yaml")
	os.WriteFile(edited, []byte(strings.Replace(shown, "vlan: 200", "vlan: 201", 1)), 0o644)
	if out, errOut, code := run(t, append([]string{"spec", "push", "-f", edited}, state...)...); code != 0 || !strings.Contains(out, "revision 3") {
		t.Fatalf("push of an edited show: exit %d\n%s%s", code, out, errOut)
	}
}

// TestLineDiffReconstructs: the edit script of lineDiff gives back both
// texts (its ' ' and '-' lines are a, its ' ' and '+' lines b) and counts
// lines as the hunk headers need, on texts that share lines in many ways.
func TestLineDiffReconstructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "", "  vlan: 100"}
	for n := range 300 {
		var la, lb []string
		for range rng.IntN(12) {
			la = append(la, words[rng.IntN(len(words))])
		}
		for range rng.IntN(12) {
			lb = append(lb, words[rng.IntN(len(words))])
		}
		var ga, gb []string
		for k, o := range lineDiff(la, lb) {
			if o.ai != len(ga) || o.bi != len(gb) {
				t.Fatalf("case %d line %d %q: at a %d b %d, want a %d b %d", n, k, o.text, o.ai, o.bi, len(ga), len(gb))
			}
			if o.op != '+' {
				ga = append(ga, o.text)
			}
			if o.op != '-' {
				gb = append(gb, o.text)
			}
		}
		if !slices.Equal(ga, la) || !slices.Equal(gb, lb) {
			t.Fatalf("case %d: diff of %q and %q gives back %q and %q", n, la, lb, ga, gb)
		}
	}
}
