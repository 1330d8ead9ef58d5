package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// run runs the gallium-net app in-process and returns stdout, stderr and the
// exit code main would use.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	app.ExitErrHandler = func(*cliContext, error) {}
	err := app.Run(interspersedArgs(app, append([]string{"gallium-net"}, args...)))
	if err != nil {
		errb.WriteString("gallium-net: " + err.Error() + "\n")
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

const example = "../examples/cluster.yaml"

func TestValidateExamples(t *testing.T) {
	for _, f := range []string{"../examples/cluster.yaml", "../examples/evaluation.yaml"} {
		out, errOut, code := run(t, "validate", "-f", f)
		if code != 0 {
			t.Errorf("validate %s: exit %d\n%s%s", f, code, out, errOut)
		}
		if !strings.Contains(out, "valid") {
			t.Errorf("validate %s: no verdict in output:\n%s", f, out)
		}
	}
	out, _, _ := run(t, "validate", "-f", "../examples/evaluation.yaml")
	if !strings.Contains(out, "warning") || !strings.Contains(strings.ToLower(out), "production") {
		t.Errorf("evaluation spec: want the not-for-production warning, got:\n%s", out)
	}
}

func writeSpec(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateJSONContract(t *testing.T) {
	bad := writeSpec(t, `cluster: {name: lab, subnet: 192.168.1.0/24, vip: 192.168.1.100}
hypervisors:
  - name: hv1
    managementIP: 192.168.1.101/24
    adapters: [{name: eno1, speedMbps: 10000}, {name: eno2, speedMbps: 10000}, {name: eno3, speedMbps: 1000}, {name: eno4, speedMbps: 1000}]
adapterGroups:
  - {name: infra, infrastructure: true, adapters: {hv1: [eno1, eno2]}}
  - {name: vmgroup, adapters: {hv1: [eno3, eno4]}}
networks:
  - {name: prod, adapterGroup: vmgroup, vlan: 5000}
`)
	out, _, code := run(t, "validate", "-f", bad, "-o", "json")
	if code == 0 {
		t.Fatalf("invalid spec: want non-zero exit, got 0\n%s", out)
	}
	var res struct {
		Valid    bool `json:"valid"`
		Findings []struct {
			Severity, Path, Message string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not the JSON contract: %v\n%s", err, out)
	}
	if res.Valid {
		t.Error("valid = true for an invalid spec")
	}
	found := false
	for _, f := range res.Findings {
		if f.Severity == "error" && f.Path == "networks[prod].vlan" {
			found = true
		}
	}
	if !found {
		t.Errorf("want an error at networks[prod].vlan, got %+v", res.Findings)
	}

	out, _, code = run(t, "validate", "-f", example, "-o", "json")
	if code != 0 || !strings.Contains(out, `"valid": true`) {
		t.Errorf("valid example: exit %d, output:\n%s", code, out)
	}
}

func TestValidateUnloadableSpec(t *testing.T) {
	p := writeSpec(t, "cluster:\n  name: lab\n  sbnet: 10.0.0.0/24\n")
	out, _, code := run(t, "validate", "-f", p, "-o", "json")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, `"path": "cluster.sbnet"`) || !strings.Contains(out, ":3:3") {
		t.Errorf("want the key path and line:col of the unknown key, got:\n%s", out)
	}
	out, _, code = run(t, "validate", "-f", "/nonexistent/cluster.yaml")
	if code == 0 || !strings.Contains(out, "no cluster spec at /nonexistent/cluster.yaml") || !strings.Contains(out, "(see "+specfile.ExampleSpec+")") {
		t.Errorf("missing file: exit %d, want the path and what to do:\n%s", code, out)
	}
}

func TestListFormats(t *testing.T) {
	out, _, code := run(t, "list", "networks", "-f", example)
	if code != 0 || !strings.Contains(out, "prod") || !strings.Contains(out, "gbr-vmgroup") || !strings.Contains(out, "untagged") {
		t.Errorf("table: exit %d\n%s", code, out)
	}
	out, _, _ = run(t, "list", "groups", "-f", example, "-o", "json")
	var groups []map[string]any
	if err := json.Unmarshal([]byte(out), &groups); err != nil || len(groups) != 2 || groups[0]["bond"] != "gb-infra" {
		t.Errorf("json: %v\n%s", err, out)
	} else if groups[0]["updelayMs"] != float64(model.DefaultUpdelayMs) || groups[0]["downdelayMs"] != float64(0) {
		t.Errorf("json: bond delays (defaults) missing: %v", groups[0])
	}
	out, _, _ = run(t, "list", "adapters", "-f", example, "-o", "yaml")
	var adapters []map[string]any
	if err := yaml.Unmarshal([]byte(out), &adapters); err != nil || len(adapters) != 12 {
		t.Errorf("yaml: want 12 adapters, got %d (%v)\n%s", len(adapters), err, out)
	}
	_, errOut, code := run(t, "list", "networks", "-f", example, "-o", "xml")
	if code == 0 || !strings.Contains(errOut, "table, json, yaml") {
		t.Errorf("unknown format: exit %d, %s", code, errOut)
	}
}

func TestXMLCommands(t *testing.T) {
	out, errOut, code := run(t, "xml", "network", "prod", "--hypervisor", "hv1", "-f", example)
	if code != 0 || !strings.Contains(out, "gbr-vmgroup") || !strings.Contains(out, "bridge") {
		t.Errorf("xml network: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run(t, "xml", "interface", "--network", "prod", "--profile", "legacy", "--mac", "52:54:00:01:02:03", "-f", example)
	if code != 0 || !strings.Contains(out, "e1000") || !strings.Contains(out, "52:54:00:01:02:03") {
		t.Errorf("xml interface: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = run(t, "xml", "interface", "--network", "prod", "-f", example)
	if code != 0 || !strings.Contains(out, "52:54:00:") || !strings.Contains(out, "virtio") {
		t.Errorf("xml interface with a drawn MAC and the default profile: exit %d\n%s", code, out)
	}
	_, errOut, code = run(t, "xml", "network", "nope", "--hypervisor", "hv1", "-f", example)
	if code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("unknown network: exit %d, %s", code, errOut)
	}
	_, errOut, code = run(t, "xml", "network", "prod", "--hypervisor", "hv9", "-f", example)
	if code == 0 || !strings.Contains(errOut, "hv1, hv2, hv3") {
		t.Errorf("unknown hypervisor: exit %d, %s", code, errOut)
	}
}

func TestDiagram(t *testing.T) {
	out, _, code := run(t, "diagram", "-f", example, "--hypervisor", "hv1")
	if code != 0 || !strings.HasPrefix(out, "digraph") || !strings.Contains(out, "gb-infra") {
		t.Errorf("dot: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "diagram", "-f", example, "--format", "mermaid")
	if code != 0 || !strings.HasPrefix(out, "flowchart") {
		t.Errorf("mermaid: exit %d\n%s", code, out)
	}
}

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	var walk func(prefix []string, cmds []*cliCommand)
	walk = func(prefix []string, cmds []*cliCommand) {
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			path := append(append([]string{}, prefix...), c.Name)
			if len(c.Subcommands) > 0 {
				walk(path, c.Subcommands)
				continue
			}
			if c.Usage == "" {
				t.Errorf("%s: no usage line", strings.Join(path, " "))
			}
			if !strings.Contains(c.Description, "Example") || !strings.Contains(c.Description, "gallium-net ") {
				t.Errorf("%s: --help has no example", strings.Join(path, " "))
			}
		}
	}
	walk(nil, newApp().Commands)
}

func TestMatchHypervisorError(t *testing.T) {
	_, errOut, code := run(t, "xml", "network", "prod", "-f", example)
	// This test machine is none of hv1..hv3, so the error must say how to choose.
	if code == 0 || !strings.Contains(errOut, "--hypervisor") {
		t.Errorf("want a hint to pass --hypervisor, got exit %d: %s", code, errOut)
	}
}

// The host config's spec: and hypervisor: stand in for -f and --hypervisor
// in every command, not only the store's.
func TestHostConfigSpecAndHypervisor(t *testing.T) {
	abs, err := filepath.Abs(example)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("spec: "+abs+"\nhypervisor: hv2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GALLIUM_NET_CONFIG", cfg)
	out, errOut, code := run(t, "xml", "network", "prod")
	if code != 0 || !strings.Contains(out, "gbr-vmgroup") {
		t.Fatalf("xml network with spec and hypervisor from the config: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(cfg, []byte("spec: "+abs+"\nhypervisor: hv9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run(t, "xml", "network", "prod")
	if code == 0 || !strings.Contains(errOut, `hypervisor "hv9" (set in`) {
		t.Errorf("unknown hypervisor in the config: exit %d, %s", code, errOut)
	}
}

// A group under ARP monitoring lists its monitor as such, not as miimon 0.
func TestListGroupsARPMonitor(t *testing.T) {
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "bond: {miimon: 100, primary: eno1}", "bond: {arpIntervalMs: 200, primary: eno1}", 1)
	if s == string(b) {
		t.Fatal("examples/cluster.yaml no longer has the infra group's bond line this test edits")
	}
	spec := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "list", "groups", "-f", spec)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^infra\s+yes\s+gb-infra\s+gbr-infra\s+arp 200ms all\s+0\s+0\s`).MatchString(out) || !strings.Contains(out, "mii 100ms") {
		t.Errorf("list groups:\n%s", out)
	}
}
