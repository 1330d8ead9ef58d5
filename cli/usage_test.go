package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
)

// TestUnexpectedArguments: a spec path given as an argument was ignored and
// the default spec validated ("valid", exit 0); now it is a usage error that
// names the -f form (issue 13 #2).
func TestUnexpectedArguments(t *testing.T) {
	broken := writeSpec(t, "cluster: {name: lab\n")
	for _, args := range [][]string{
		{"validate", broken},
		{"list", "networks", broken},
		{"host", "plan", broken},
		{"diagram", broken},
	} {
		t.Run(strings.Join(args[:len(args)-1], " "), func(t *testing.T) {
			out, errOut, code := run(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (usage)\nstdout: %s\nstderr: %s", code, exitUsage, out, errOut)
			}
			want := "-f " + broken
			if !strings.Contains(errOut, "unexpected argument") || !strings.Contains(errOut, want) {
				t.Errorf("want the argument refused and %q suggested, got:\n%s", want, errOut)
			}
			if strings.Contains(out, "valid") {
				t.Errorf("validated something anyway:\n%s", out)
			}
		})
	}
	// Commands that take arguments still take them, and refuse one more.
	_, errOut, code := run(t, "completion", "bash", "zsh")
	if code != exitUsage || !strings.Contains(errOut, `unexpected argument "zsh"`) {
		t.Errorf("completion bash zsh: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := run(t, "completion", "bash"); code != 0 {
		t.Errorf("completion bash: exit %d\n%s", code, errOut)
	}
}

// TestExitCodes: usage errors exit 2, an invalid spec 1, success 0, and an
// unknown command gets the closest one (issue 13 #9: "valdate" exited 3
// with "No help topic").
func TestExitCodes(t *testing.T) {
	invalid := writeSpec(t, "cluster: {name: lab}\n")
	type result struct {
		Code   int
		Phrase bool
	}
	for _, tc := range []struct {
		args   []string
		code   int
		phrase string
	}{
		{[]string{"validate", "-f", example}, exitOK, ""},
		{[]string{"validate", "-f", invalid}, exitFailure, "INVALID"},
		{[]string{"valdate", "-f", example}, exitUsage, "did you mean 'gallium-net validate'?"},
		{[]string{"host", "plna"}, exitUsage, "did you mean 'gallium-net host plan'?"},
		{[]string{"list", "netwroks"}, exitUsage, "did you mean 'gallium-net list networks'?"},
		{[]string{"zzzzzz"}, exitUsage, "see 'gallium-net --help'"},
		{[]string{"validate", "--sepc", example}, exitUsage, "did you mean --spec?"},
		{[]string{"host", "plan", "--hypervsor", "hv1"}, exitUsage, "(did you mean --hypervisor?); see 'gallium-net host plan --help'"},
		{[]string{"validate", "-f", example, "-o", "xml"}, exitUsage, "use one of text, json"},
		{[]string{"xml", "interface", "-f", example}, exitUsage, `Required flag "network"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := run(t, tc.args...)
			got := result{code, strings.Contains(out+errOut, tc.phrase)}
			if diff := cmp.Diff(result{tc.code, true}, got); diff != "" {
				t.Errorf("(-want +got):\n%s\nwanted phrase %q in:\n%s%s", diff, tc.phrase, out, errOut)
			}
		})
	}
}

func TestMaxArgs(t *testing.T) {
	got := map[string]int{}
	for _, u := range []string{"", "NAME", "[ID]", "DOMAIN MAC", "DOMAIN [PROFILE]", "[NAME | --all]", "bash|zsh", "[DOMAIN | --all]"} {
		got[u] = maxArgs(u)
	}
	want := map[string]int{"": 0, "NAME": 1, "[ID]": 1, "DOMAIN MAC": 2, "DOMAIN [PROFILE]": 2, "[NAME | --all]": 1, "bash|zsh": 1, "[DOMAIN | --all]": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("maxArgs (-want +got):\n%s", diff)
	}
}

// TestHypervisorNamed: this host finds its entry by its full name, then its
// short one, without regard to case (issue 13 #3: only the short name was
// tried, case-sensitively, although validate accepts hv1.example.com).
func TestHypervisorNamed(t *testing.T) {
	s := &model.Spec{Hypervisors: []model.Hypervisor{{Name: "hv1.example.com"}, {Name: "hv2"}, {Name: "hv1"}}}
	got := map[string]string{}
	for _, host := range []string{"hv1.example.com", "HV1.Example.COM", "hv2.example.com", "HV2", "hv1", "hv1.other.org", "hv3.example.com", ""} {
		got[host] = hypervisorNamed(s, host)
	}
	want := map[string]string{
		"hv1.example.com": "hv1.example.com", // the full name before the short one
		"HV1.Example.COM": "hv1.example.com",
		"hv2.example.com": "hv2",
		"HV2":             "hv2",
		"hv1":             "hv1",
		"hv1.other.org":   "hv1",
		"hv3.example.com": "",
		"":                "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hypervisorNamed (-want +got):\n%s", diff)
	}
}

// TestWarningsSummarisedOutsideValidate: every read-only command repeated
// each warning in full (issue 13 #6); they now give one line, validate the
// findings.
func TestWarningsSummarisedOutsideValidate(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// Every adapter without speedMbps: one warning each (12).
	noSpeeds := writeSpec(t, regexp.MustCompile(`, speedMbps: \d+`).ReplaceAllString(string(data), ""))
	_, errOut, code := run(t, "list", "profiles", "-f", noSpeeds)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 0 || len(lines) != 1 || !strings.Contains(lines[0], "warning: "+noSpeeds+": 12 warning(s) (hypervisors[hv1].adapters[eno1].speedMbps, ") ||
		!strings.Contains(lines[0], "and 9 more); 'gallium-net validate -f "+noSpeeds+"' shows them") {
		t.Errorf("list profiles: exit %d, want one summary line on stderr, got %d:\n%s", code, len(lines), errOut)
	}
	out, _, _ := run(t, "validate", "-f", noSpeeds)
	if n := strings.Count(out, "warning "); n != 12 {
		t.Errorf("validate: want the 12 warnings in full, got %d:\n%s", n, out)
	}
}

// TestValidateLoadErrorNamesTheFileOnce: "empty.yaml: empty.yaml: spec is
// empty" (issue 13 #7).
func TestValidateLoadErrorNamesTheFileOnce(t *testing.T) {
	empty := writeSpec(t, "")
	out, _, code := run(t, "validate", "-f", empty)
	want := "error   " + empty + ": spec is empty"
	if code != exitFailure || !strings.Contains(out, want) || strings.Count(out, empty) != 2 {
		t.Errorf("exit %d, want %q and the file named once per line:\n%s", code, want, out)
	}
	tab := writeSpec(t, "cluster:\n\tname: lab\n")
	out, _, _ = run(t, "validate", "-f", tab)
	if want := "error   " + tab + ":2:1: a tab character"; !strings.Contains(out, want) {
		t.Errorf("want %q:\n%s", want, out)
	}
}

// TestListNetworksUntagged: `list networks -o yaml` printed "vlan: 0" for
// an untagged network, which the spec now refuses (issue 13 #8).
func TestListNetworksUntagged(t *testing.T) {
	out, errOut, code := run(t, "list", "networks", "-f", example, "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rows []map[string]any
	if err := yaml.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, r := range rows {
		got[r["name"].(string)] = map[string]any{"vlan": r["vlan"], "untagged": r["untagged"]}
	}
	want := map[string]map[string]any{
		"prod": {"vlan": 100, "untagged": nil},
		"dev":  {"vlan": 200, "untagged": nil},
		"flat": {"vlan": nil, "untagged": true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list networks -o yaml (-want +got):\n%s\n%s", diff, out)
	}
}

// TestComplete: "--<TAB>" completed nothing and "-o <TAB>" offered
// --output (issue 13 #9); flags, output formats and names from the spec
// complete.
func TestComplete(t *testing.T) {
	app := newApp()
	got := map[string][]string{}
	cases := map[string][]string{
		"":                                  nil, // checked by prefix below
		"val":                               {"validate"},
		"validate --":                       {"--spec", "--output", "--help"},
		"validate -o ":                      {"text", "json"},
		"list networks -o ":                 {"table", "json", "yaml"},
		"list networks --output y":          {"yaml"},
		"host plan -f SPEC --hypervisor ":   {"hv1", "hv2", "hv3"},
		"host plan --hypervisor=":           nil, // "--flag=" is one word: files
		"xml network -f SPEC ":              {"prod", "dev", "flat"},
		"xml interface -f SPEC --profile l": {"legacy"},
		"nic add vm1 -f SPEC --network ":    {"prod", "dev", "flat"},
		"completion ":                       {"bash", "zsh"},
		"host ":                             {"plan", "apply", "takeover", "confirm", "rollback", "status", "check", "verify-topology", "watch"},
		"validate -f ":                      nil, // a file: the shell's own completion
		"xml network -f /nonexistent/spec ": nil,
	}
	for line := range cases {
		words := strings.Split(strings.ReplaceAll(line, "SPEC", example), " ")
		got[line] = complete(app, words)
	}
	if !slices.Contains(got[""], "validate") || slices.Contains(got[""], "man") {
		t.Errorf("top level: %v, want the visible commands", got[""])
	}
	cases[""], got[""] = nil, nil
	if diff := cmp.Diff(cases, got); diff != "" {
		t.Errorf("complete (-want +got):\n%s", diff)
	}
}

// TestManPage: the page dropped "<interface>" ("domain  XML") and said
// section 8 while it ships as section 1 (issue 13 #10).
func TestManPage(t *testing.T) {
	out, errOut, code := run(t, "man")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	type page struct {
		Section1, Interface, NoDoubleSpace, NoBackslashLT bool
	}
	got := page{
		Section1:      strings.Contains(out, ".TH gallium-net 1\n"),
		Interface:     strings.Contains(out, "print libvirt network or domain <interface> XML generated from the spec") && strings.Contains(out, "VM <interface> devices"),
		NoDoubleSpace: !strings.Contains(out, "domain  XML"),
		NoBackslashLT: !strings.Contains(out, `\<`),
	}
	if diff := cmp.Diff(page{true, true, true, true}, got); diff != "" {
		t.Errorf("man page (-want +got):\n%s", diff)
	}
	// --help keeps the text as written.
	out, _, _ = run(t, "xml", "--help")
	if !strings.Contains(out, "domain <interface> XML") || strings.Contains(out, `\<`) {
		t.Errorf("xml --help:\n%s", out)
	}
}
