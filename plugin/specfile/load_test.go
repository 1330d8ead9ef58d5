package specfile

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
)

func TestLoadExamples(t *testing.T) {
	s, err := Load("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster.Name != "lab" || len(s.Hypervisors) != 3 || len(s.AdapterGroups) != 2 || len(s.Networks) != 3 {
		t.Fatalf("examples/cluster.yaml loaded wrong: %+v", s)
	}
	// Defaults are filled in.
	vm := s.Group("vmgroup")
	if vm.Bond.Miimon != model.DefaultMiimon || vm.Bond.Primary != "eno3" || vm.Bond.PrimaryReselect != model.DefaultPrimaryReselect || vm.MTU != model.DefaultMTU {
		t.Errorf("defaults not filled in: %+v", vm)
	}
	s, err = Load("../../examples/evaluation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Cluster.Evaluation || s.Cluster.MACPrefix != model.DefaultMACPrefix || s.Cluster.DefaultProfile != model.DefaultProfileName || s.Profile("legacy") == nil {
		t.Errorf("evaluation example: defaults not filled in: %+v", s.Cluster)
	}
}

// loadErr parses text and returns its *LoadError, failing when there is
// none.
func loadErr(t *testing.T, name, text string) *LoadError {
	t.Helper()
	s, err := Parse([]byte(text), name)
	if err == nil {
		t.Fatalf("want an error, got spec %+v", s)
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want a *LoadError, got %T: %v", err, err)
	}
	return le
}

func TestParseErrors(t *testing.T) {
	deep := "cluster: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n"
	for _, tc := range []struct {
		name, text string
		line, col  int
		key        string
		msg        string
	}{
		{"unknown key", "cluster:\n  name: lab\n  vipp: 1.2.3.4\n", 3, 3, "cluster.vipp", `unknown key "vipp"; did you mean "vip"?`},
		{"unknown key in list", "hypervisors:\n  - name: hv1\n    adapters:\n      - {name: eno1, sped: 10}\n", 4, 22, "hypervisors[0].adapters[0].sped", `did you mean "speedMbps"?`},
		{"unknown key lists known ones", "clusters: {}\n", 1, 1, "clusters", "known keys: adapterGroups, cluster, hardwareProfiles, hypervisors, networks"},
		{"unknown key in bond", "adapterGroups:\n  - name: g\n    bond: {mimon: 100}\n", 3, 12, "adapterGroups[0].bond.mimon", `did you mean "miimon"?`},
		{"wrong type: string for number", "networks:\n  - {name: a, vlan: ten}\n", 2, 21, "networks[0].vlan", `expected a whole number, got "ten"`},
		{"wrong type: quoted number", "networks:\n  - {name: a, vlan: \"10\"}\n", 2, 21, "networks[0].vlan", "expected a whole number"},
		{"wrong type: float", "cluster: {mtu: 1500.5}\n", 1, 16, "cluster.mtu", "expected a whole number"},
		{"wrong type: mapping for string", "cluster: {name: {a: b}}\n", 1, 17, "cluster.name", "expected a string, got a mapping"},
		{"wrong type: mapping for list", "networks: {a: b}\n", 1, 11, "networks", "expected a list, got a mapping"},
		{"wrong type: list for mapping", "cluster: [a]\n", 1, 10, "cluster", "expected a mapping (key: value), got a list"},
		{"wrong type: YAML 1.1 bool", "cluster: {evaluation: yes}\n", 1, 23, "cluster.evaluation", "expected true or false"},
		{"wrong type: group adapters", "adapterGroups:\n  - adapters: [eno1]\n", 2, 15, "adapterGroups[0].adapters", "expected a mapping"},
		{"duplicate key", "cluster:\n  name: a\n  name: b\n", 3, 3, "cluster.name", `duplicate key "name" (first given at line 2)`},
		{"duplicate top-level key", "networks: []\nnetworks: []\n", 2, 1, "networks", "duplicate key"},
		{"duplicate map key", "adapterGroups:\n  - adapters:\n      hv1: [a]\n      hv1: [b]\n", 4, 7, "adapterGroups[0].adapters.hv1", "duplicate key"},
		{"vlan 0 (issue 13 #8)", "networks:\n  - {name: a, vlan: 0}\n", 2, 21, "networks[0].vlan", "vlan 0 is not a VLAN ID: leave vlan out for an untagged network"},
		{"vlan 0x0", "networks:\n  - name: a\n    vlan: 0x0\n", 3, 11, "networks[0].vlan", "vlan 0 is not a VLAN ID"},
		{"leading zero (octal)", "networks:\n  - {name: a, vlan: 0100}\n", 2, 21, "networks[0].vlan", "leading zero"},
		{"number too large", "cluster: {mtu: 99999999999999999999}\n", 1, 16, "cluster.mtu", "expected a whole number"},
		{"root is a list", "- a\n", 1, 1, "", "expected a mapping"},
		{"root is a string", "hello\n", 1, 1, "", "expected a mapping"},
		{"alias cycle", "networks: &a [*a]\n", 1, 11, "networks[0]", "expected a mapping"},
		{"bad merge", "cluster:\n  <<: 5\n", 2, 7, "cluster", "a merge (<<) needs a mapping"},
		{"null map key", "adapterGroups: [{adapters: {~: [a]}}]\n", 1, 29, "adapterGroups[0].adapters", "a key is empty"},
		{"deep nesting", deep, 0, 0, "", "exceeded max depth"},
		{"malformed: unclosed flow", "cluster: {name: lab\nhypervisors: []\n", 1, 0, "", "did not find expected"},
		{"malformed: bad indentation", "cluster:\n  name: lab\n vip: x\n", 2, 0, "", "did not find expected key"},
		// Issue 13 #7: tabs had a line only and no hint, non-UTF-8 no line,
		// a quoted boolean read as if false were refused.
		{"malformed: tab", "cluster:\n\tname: lab\n", 2, 1, "", "a tab character: YAML does not allow tabs for indentation; indent with spaces"},
		{"malformed: tab after spaces", "cluster:\n  name: lab\nhypervisors:\n  \t- name: hv1\n", 4, 3, "", "YAML does not allow tabs"},
		{"not UTF-8", "cluster:\n  name: l\xffab\n", 2, 10, "", "byte 0xff is not UTF-8: save the spec as UTF-8"},
		{"not UTF-8 after multibyte", "# é\nx: \xc3\n", 2, 4, "", "byte 0xc3 is not UTF-8"},
		{"wrong type: quoted boolean", "cluster: {evaluation: \"false\"}\n", 1, 23, "cluster.evaluation", `expected true or false, got the quoted string "false"; remove the quotes`},
		{"wrong type: single-quoted number", "networks:\n  - {name: a, vlan: '10'}\n", 2, 21, "networks[0].vlan", `got the quoted string "10"; remove the quotes`},
		{"malformed: undefined alias", "networks: *nope\n", 1, 11, "", `unknown anchor 'nope'`},
		{"multi-document", "cluster: {name: a}\n---\ncluster: {name: b}\n", 2, 1, "", "more than one YAML document"},
		{"multi-document, broken second", "cluster: {name: a}\n---\n[\n", 3, 0, "", "did not find expected node content"},
		{"empty", "", 0, 0, "", "spec is empty"},
		{"only whitespace", "\n\n   \n", 0, 0, "", "spec is empty"},
		{"only comments", "# a cluster\n# spec\n", 0, 0, "", "spec is empty"},
		{"only a document marker", "---\n", 0, 0, "", "spec is empty"},
		{"null document", "~\n", 0, 0, "", "spec is empty"},
		{"too large", strings.Repeat("#", MaxSpecBytes+1), 0, 0, "", "larger than 4 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			le := loadErr(t, "f.yaml", tc.text)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if le.File != "f.yaml" || le.Line != tc.line || le.Column != tc.col || le.Key != tc.key || !strings.Contains(le.Msg, tc.msg) {
				t.Errorf("got %s (line %d col %d key %q)\nwant line %d col %d key %q msg containing %q", le, le.Line, le.Column, le.Key, tc.line, tc.col, tc.key, tc.msg)
			}
			// The error text names the file and the position first.
			if want := "f.yaml"; !strings.HasPrefix(le.Error(), want) {
				t.Errorf("error %q does not start with %q", le, want)
			}
			if tc.line > 0 && !strings.HasPrefix(le.Error(), fmt.Sprintf("f.yaml:%d", tc.line)) {
				t.Errorf("error %q does not give the line", le)
			}
		})
	}
}

// TestParseAliasBombs: aliases that expand to huge documents are refused
// quickly, and small honest aliases work.
func TestParseAliasBombs(t *testing.T) {
	// Billion laughs in a place the spec's types accept: 9 levels of 10
	// aliases each below a list of strings would expand to 10^9 values.
	var b strings.Builder
	b.WriteString("adapterGroups:\n  - name: g\n    adapters:\n      l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	laughs := b.String()

	// Quadratic: one long list, aliased many times. Each alias is checked
	// once, but decoding would copy the list every time.
	b.Reset()
	b.WriteString("adapterGroups:\n  - name: g\n    adapters:\n      h0: &l [")
	for i := 0; i < 5000; i++ {
		b.WriteString("a,")
	}
	b.WriteString("a]\n")
	for i := 1; i < 400; i++ {
		fmt.Fprintf(&b, "      h%d: *l\n", i)
	}
	quadratic := b.String()

	for name, text := range map[string]string{"billion laughs": laughs, "quadratic": quadratic} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			le := loadErr(t, "bomb.yaml", text)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to refuse", d)
			}
			// The billion laughs' nesting does not fit the types, which is
			// reported first; the quadratic one fits and is refused by size.
			if !strings.Contains(le.Msg, "expands to more than") && !strings.Contains(le.Msg, "expected a string") {
				t.Errorf("unexpected error: %v", le)
			}
		})
	}
	t.Run("quadratic is refused by size", func(t *testing.T) {
		if le := loadErr(t, "bomb.yaml", quadratic); !strings.Contains(le.Msg, "expands to more than") {
			t.Errorf("want the expansion limit, got %v", le)
		}
	})

	t.Run("honest anchors and merge keys", func(t *testing.T) {
		text := `
cluster: {name: lab, subnet: 192.168.1.0/24, vip: 192.168.1.100}
hypervisors:
  - &hv
    name: hv1
    managementIP: 192.168.1.101/24
    adapters: &ads
      - {name: eno1, speedMbps: 10000}
      - {name: eno2, speedMbps: 10000}
      - {name: eno3, speedMbps: 1000}
      - {name: eno4, speedMbps: 1000}
  - <<: *hv
    name: hv2
    managementIP: 192.168.1.102/24
  - {name: hv3, managementIP: 192.168.1.103/24, adapters: *ads}
adapterGroups:
  - name: infra
    infrastructure: true
    adapters: {hv1: &infra [eno1, eno2], hv2: *infra, hv3: *infra}
  - name: vm
    adapters: {hv1: &vm [eno3, eno4], hv2: *vm, hv3: *vm}
networks:
  - {name: prod, adapterGroup: vm, vlan: 100}
`
		s, err := Parse([]byte(text), "anchors.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if h := s.Hypervisor("hv2"); h == nil || len(h.Adapters) != 4 || h.ManagementIP != "192.168.1.102/24" {
			t.Fatalf("merge key not applied: %+v", s.Hypervisors)
		}
		if fs := model.Validate(s); len(fs) != 0 {
			t.Errorf("want a clean spec, got:\n%s", dump(fs))
		}
	})
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if err == nil || !strings.Contains(err.Error(), "read cluster spec") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("too large file", func(t *testing.T) {
		p := filepath.Join(dir, "big.yaml")
		if err := os.WriteFile(p, []byte("cluster: {name: a}\n"+strings.Repeat("# padding\n", MaxSpecBytes/10+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		var le *LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "larger than 4 MiB") || le.File != p {
			t.Errorf("got %v", err)
		}
	})
	t.Run("exactly at the cap", func(t *testing.T) {
		head := "cluster: {name: a}\n"
		p := filepath.Join(dir, "cap.yaml")
		if err := os.WriteFile(p, []byte(head+"#"+strings.Repeat("x", MaxSpecBytes-len(head)-2)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err != nil {
			t.Errorf("a spec of exactly MaxSpecBytes must load: %v", err)
		}
	})
	t.Run("error names the file", func(t *testing.T) {
		p := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(p, []byte("cluster:\n  nme: x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+":2:3: cluster.nme: unknown key") {
			t.Errorf("got %v", err)
		}
	})
}

// TestExampleSpecIsWhatThePackagesInstall: hints named examples/cluster.yaml,
// which exists only in the source tree (issue 13 #12); they name the
// installed copy, which must be where the packages put it.
func TestExampleSpecIsWhatThePackagesInstall(t *testing.T) {
	nfpm, err := os.ReadFile("../../packaging/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(nfpm), "dst: "+ExampleSpec+"\n") {
		t.Errorf("packaging/nfpm.yaml installs no %s: update ExampleSpec", ExampleSpec)
	}
	le := loadErr(t, "f.yaml", "")
	if want := "see " + ExampleSpec + " for the format"; !strings.Contains(le.Msg, want) {
		t.Errorf("empty spec: %q, want %q", le.Msg, want)
	}
}

// dump lists findings one a line, for test failures.
func dump(fs model.Findings) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	return cmp.Or(b.String(), "  (no findings)\n")
}
