package specfile

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
)

// TestREADMEDocumentsEveryKey: the README's spec example (and its bond
// tuning table) shows every key the spec accepts; the per-group and
// per-network mtu worked but were not there (issue 13 #12). The example is
// also a valid spec.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	_, rest, ok := strings.Cut(readme, "## The cluster spec")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no yaml block under \"## The cluster spec\"")
	}
	s, err := Parse([]byte(block), "README.md")
	if err != nil {
		t.Fatalf("the README's example does not load: %v", err)
	}
	if fs := model.Validate(s); fs.HasErrors() {
		t.Errorf("the README's example is invalid:\n%s", dump(fs.Errors()))
	}
	var doc any
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	collectKeys(doc, "", shown)

	var missing []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for key, ft := range yamlFields(t) {
			p := path + "." + key
			switch {
			case strings.HasPrefix(p, ".adapterGroups.bond."):
				// Documented in the "Bond tuning" table.
				if !strings.Contains(readme, "| `"+key+"` |") {
					missing = append(missing, p)
				}
			case !shown[p]:
				missing = append(missing, p)
			}
			walk(ft, p)
		}
	}
	walk(reflect.TypeOf(model.Spec{}), "")
	sort.Strings(missing)
	if diff := cmp.Diff([]string(nil), missing); diff != "" {
		t.Errorf("spec keys the README does not show (-want +got):\n%s", diff)
	}
}

// collectKeys records every mapping key path of a decoded YAML document,
// lists flattened (".networks.mtu" for any network's mtu).
func collectKeys(v any, path string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := path + "." + k
			out[p] = true
			if path == ".adapterGroups" && k == "adapters" {
				continue // keys are hypervisor names
			}
			collectKeys(e, p, out)
		}
	case []any:
		for _, e := range v {
			collectKeys(e, path, out)
		}
	}
}
