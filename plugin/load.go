package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxSpecBytes caps the size of a spec file. A real cluster spec is tens of
// kilobytes; anything this large is a mistake or an attack.
const MaxSpecBytes = 4 << 20

// maxSpecDepth caps YAML nesting; the spec is at most five levels deep.
const maxSpecDepth = 32

// ErrSpecTooLarge is returned for a spec over MaxSpecBytes.
var ErrSpecTooLarge = errors.New("spec is larger than 4 MiB")

// LoadError is a problem reading a spec, with its place in the file.
type LoadError struct {
	File   string // file name as given, or "<stdin>"
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Key    string // the offending key path (hypervisors[0].adapters[1].sped)
	Msg    string
}

func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, strictly parses and defaults the spec at path ("-" is stdin).
// It does not validate: call Validate on the result.
func Load(path string) (*Spec, error) {
	var r io.Reader
	name := path
	if path == "-" {
		r, name = os.Stdin, "<stdin>"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read cluster spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read cluster spec %s: %w", name, err)
	}
	return Parse(data, name)
}

// Parse strictly parses a spec and fills in defaults. Unknown keys, wrong
// types, duplicate keys and malformed YAML are errors (*LoadError) that give
// the file, line and column and name the key. It never panics.
func Parse(data []byte, name string) (spec *Spec, err error) {
	if len(data) > MaxSpecBytes {
		return nil, &LoadError{File: name, Msg: ErrSpecTooLarge.Error() + "; a cluster spec is normally a few kilobytes"}
	}
	defer func() {
		// yaml.v3 has panicked on hostile input in the past; a spec must
		// never crash the tool.
		if r := recover(); r != nil {
			spec, err = nil, &LoadError{File: name, Msg: fmt.Sprintf("cannot parse YAML: %v", r)}
		}
	}()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{File: name, Msg: "spec is empty; see examples/cluster.yaml for the format"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &LoadError{File: name, Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document; a spec is a single document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := checkNode(name, root, reflect.TypeOf(Spec{}), "", 0); err != nil {
		return nil, err
	}
	var s Spec
	if err := root.Decode(&s); err != nil {
		return nil, yamlError(name, err)
	}
	SetDefaults(&s)
	return &s, nil
}

// yamlError turns a yaml.v3 error into a LoadError, keeping its line.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	// yaml.v3 formats positions as "line N: ...".
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
	}
	return &LoadError{File: name, Line: line, Msg: msg}
}

// checkNode walks the YAML tree against the Go type it will decode into and
// reports the first unknown key, wrong kind or wrong scalar type, with its
// position. Checking before decoding gives errors that name the key path,
// which yaml.v3's own errors do not.
func checkNode(file string, n *yaml.Node, t reflect.Type, path string, depth int) error {
	fail := func(format string, args ...any) error {
		return &LoadError{File: file, Line: n.Line, Column: n.Column, Key: strings.TrimPrefix(path, "."), Msg: fmt.Sprintf(format, args...)}
	}
	if depth > maxSpecDepth {
		return fail("nested too deeply")
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return fail("broken YAML alias")
		}
		return checkNode(file, n.Alias, t, path, depth+1)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an explicit null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fail("expected a mapping (key: value), got %s", kindName(n))
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return &LoadError{File: file, Line: k.Line, Column: k.Column, Key: strings.TrimPrefix(path, "."), Msg: "mapping key must be a plain string"}
			}
			ft, ok := fields[k.Value]
			if !ok {
				return &LoadError{File: file, Line: k.Line, Column: k.Column, Key: strings.TrimPrefix(path+"."+k.Value, "."),
					Msg: fmt.Sprintf("unknown key %q%s (known keys: %s)", k.Value, suggest(k.Value, fields), strings.Join(sortedKeys(fields), ", "))}
			}
			if err := checkNode(file, v, ft, path+"."+k.Value, depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fail("expected a mapping (key: value), got %s", kindName(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return &LoadError{File: file, Line: k.Line, Column: k.Column, Key: strings.TrimPrefix(path, "."), Msg: "mapping key must be a plain string"}
			}
			if err := checkNode(file, v, t.Elem(), path+"."+k.Value, depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fail("expected a list, got %s", kindName(n))
		}
		for i, c := range n.Content {
			if err := checkNode(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fail("expected a string, got %s", kindName(n))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return fail("expected a whole number, got %s", kindName(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fail("expected true or false, got %s", kindName(n))
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("%q", v)
	}
	return "something else"
}

// yamlFields maps each YAML key of struct type t to its field type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest returns `; did you mean "x"?` for a key that differs from a known
// one only by case or by one edit.
func suggest(key string, fields map[string]reflect.Type) string {
	for _, k := range sortedKeys(fields) {
		if strings.EqualFold(k, key) || editDistance(strings.ToLower(k), strings.ToLower(key)) <= 2 {
			return fmt.Sprintf("; did you mean %q?", k)
		}
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
