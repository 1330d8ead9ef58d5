// Package specfile reads a cluster spec file: strict YAML loading (unknown
// keys, wrong types and malformed YAML are errors with file, line, column and
// key path), with the model's defaults filled in. It is the only package of
// the model that imports a YAML parser, so that the libvirt hook, which links
// plugin/model but reads only JSON, links none.
package specfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
)

// ExampleSpec is where the packages install the example spec; hints name
// it, since examples/cluster.yaml exists only in the source tree.
const ExampleSpec = "/usr/share/doc/gallium-net/examples/cluster.yaml"

// MaxSpecBytes caps the size of a spec file. A real cluster spec is tens of
// kilobytes; anything this large is a mistake or an attack.
const MaxSpecBytes = 4 << 20

// maxSpecDepth caps YAML nesting; the spec is at most five levels deep.
const maxSpecDepth = 32

// maxSpecValues caps the number of YAML values a spec expands to, counting
// an alias each time it is used. Decoding cost grows with it: a few small
// aliases of one large list would otherwise decode for minutes. A spec with
// a thousand networks has about 5,000 values.
const maxSpecValues = 1 << 20

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
	b.WriteString(e.Where())
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Where is the place of the error: file[:line[:column]].
func (e *LoadError) Where() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	return b.String()
}

// Load reads, strictly parses and defaults the spec at path ("-" is stdin).
// It does not validate: call Validate on the result.
func Load(path string) (*model.Spec, error) {
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
func Parse(data []byte, name string) (spec *model.Spec, err error) {
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
	if err := checkUTF8(name, data); err != nil {
		return nil, err
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{File: name, Msg: "spec is empty; see " + ExampleSpec + " for the format"}
		}
		return nil, yamlLoadError(name, err).locateAnchor(data).locateTab(data)
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
	if root.Kind == yaml.DocumentNode || root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		// Only comments, "---" or "~": nothing to describe a cluster.
		return nil, &LoadError{File: name, Msg: "spec is empty; see " + ExampleSpec + " for the format"}
	}
	if n := expandedSize(root, map[*yaml.Node]int{}, 0); n > maxSpecValues {
		return nil, &LoadError{File: name, Msg: fmt.Sprintf("spec expands to more than %d YAML values (an alias counts each time it is used); a cluster spec is far smaller: remove the aliases that repeat large parts", maxSpecValues)}
	}
	c := checker{file: name, done: map[checked]bool{}}
	if err := c.check(root, reflect.TypeOf(model.Spec{}), "", 0); err != nil {
		return nil, err
	}
	var s model.Spec
	if err := root.Decode(&s); err != nil {
		return nil, yamlError(name, err)
	}
	model.SetDefaults(&s)
	return &s, nil
}

// yamlError turns a yaml.v3 error into a LoadError, keeping its line.
func yamlError(name string, err error) error {
	return yamlLoadError(name, err)
}

func yamlLoadError(name string, err error) *LoadError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	// Type errors come as "unmarshal errors:\n  line N: ..."; keep the first.
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		msg, _, _ = strings.Cut(strings.TrimSpace(rest), "\n")
	}
	line := 0
	// yaml.v3 formats positions as "line N: ...".
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
	}
	return &LoadError{File: name, Line: line, Msg: msg}
}

// checkUTF8 refuses a spec that is not UTF-8 with the place of the first
// bad byte: yaml.v3 says only "invalid leading UTF-8 octet", without a
// line.
func checkUTF8(name string, data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	i := 0
	for i < len(data) {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		i += size
	}
	line := 1 + bytes.Count(data[:i], []byte("\n"))
	lineStart := bytes.LastIndexByte(data[:i], '\n') + 1
	col := 1 + utf8.RuneCount(data[lineStart:i])
	return &LoadError{File: name, Line: line, Column: col,
		Msg: fmt.Sprintf("byte 0x%02x is not UTF-8: save the spec as UTF-8 (for example iconv -f LATIN1 -t UTF-8)", data[i])}
}

// locateTab turns yaml.v3's error for a tab in the indentation ("found
// character that cannot start any token", line only) into one with the
// tab's column that says tabs are not allowed.
func (e *LoadError) locateTab(data []byte) *LoadError {
	if e.Line < 1 || !strings.Contains(e.Msg, "cannot start any token") && !strings.Contains(e.Msg, "tab character") {
		return e
	}
	lines := bytes.Split(data, []byte("\n"))
	if e.Line > len(lines) {
		return e
	}
	i := bytes.IndexByte(lines[e.Line-1], '\t')
	if i < 0 {
		return e
	}
	e.Column = 1 + utf8.RuneCount(lines[e.Line-1][:i])
	e.Msg = "a tab character: YAML does not allow tabs for indentation; indent with spaces"
	return e
}

// locateAnchor fills in the position of an "unknown anchor" error, which
// yaml.v3 reports without one, from the first use of the alias in data.
func (e *LoadError) locateAnchor(data []byte) *LoadError {
	name, ok := strings.CutPrefix(e.Msg, "unknown anchor '")
	if !ok || e.Line != 0 {
		return e
	}
	name, _, _ = strings.Cut(name, "'")
	i := bytes.Index(data, []byte("*"+name))
	if name == "" || i < 0 {
		return e
	}
	e.Line = 1 + bytes.Count(data[:i], []byte("\n"))
	e.Column = 1 + i - (bytes.LastIndexByte(data[:i], '\n') + 1)
	e.Msg += "; define the anchor (&" + name + ") before its first use"
	return e
}

// checker walks the YAML tree against the Go type it will decode into and
// reports the first unknown key, duplicate key, wrong kind or wrong scalar
// type, with its position. Checking before decoding gives errors that name
// the key path, which yaml.v3's own errors do not.
type checker struct {
	file string
	// done remembers the (node, type) pairs already checked through an
	// alias, so that a node referenced many times is checked once: without
	// it a small file with many aliases of a large list costs quadratic or
	// exponential time (an "alias bomb").
	done map[checked]bool
}

type checked struct {
	n *yaml.Node
	t reflect.Type
}

// fieldCache holds yamlFields per struct type: the spec has few types and
// a large spec has thousands of nodes of each.
var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

func (c *checker) fail(n *yaml.Node, path, format string, args ...any) error {
	return &LoadError{File: c.file, Line: n.Line, Column: n.Column, Key: strings.TrimPrefix(path, "."), Msg: fmt.Sprintf(format, args...)}
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string, depth int) error {
	if depth > maxSpecDepth {
		return c.fail(n, path, "nested too deeply (more than %d levels)", maxSpecDepth)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return c.fail(n, path, "broken YAML alias")
		}
		key := checked{n.Alias, t}
		if c.done[key] {
			return nil
		}
		c.done[key] = true
		return c.check(n.Alias, t, path, depth+1)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // an explicit null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode {
			return c.fail(n, path, "expected a mapping (key: value), got %s", kindName(n))
		}
		var fields map[string]reflect.Type // a struct's keys; a map takes any
		if t.Kind() == reflect.Struct {
			fields = yamlFields(t)
		}
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return c.fail(k, path, "mapping key must be a plain string")
			}
			if isMergeKey(k) {
				if err := c.checkMerge(v, t, path, depth+1); err != nil {
					return err
				}
				continue
			}
			kpath := path + "." + k.Value
			var vt reflect.Type
			if fields != nil {
				ft, ok := fields[k.Value]
				if !ok {
					return c.fail(k, kpath, "unknown key %q%s (known keys: %s)", k.Value, suggest(k.Value, fields), strings.Join(sortedKeys(fields), ", "))
				}
				vt = ft
			} else {
				if k.ShortTag() == "!!null" {
					return c.fail(k, path, "a key is empty (null); write a name")
				}
				vt = t.Elem()
			}
			if first := seen[k.Value]; first != nil {
				return c.fail(k, kpath, "duplicate key %q (first given at line %d); give each key once", k.Value, first.Line)
			}
			seen[k.Value] = k
			if err := c.check(v, vt, kpath, depth+1); err != nil {
				return err
			}
			if t == networkType && k.Value == "vlan" && isZero(v) {
				// 0 is how the model says "untagged", but written out it
				// reads as a VLAN ID, which 0 is not (802.1Q reserves it).
				return c.fail(v, kpath, "vlan 0 is not a VLAN ID: leave vlan out for an untagged network (the group's native VLAN), or give a VLAN ID from %d to %d", model.NativeVLAN+1, model.MaxVLAN)
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return c.fail(n, path, "expected a list, got %s", kindName(n))
		}
		for i, e := range n.Content {
			if err := c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return c.fail(n, path, "expected a string, got %s", kindName(n))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return c.fail(n, path, "expected a whole number, got %s%s", kindName(n), unquoteHint(n))
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err != nil {
			return c.fail(n, path, "%s is not a whole number in range; give a plain decimal number", kindName(n))
		}
		if v := strings.TrimLeft(n.Value, "+-"); len(v) > 1 && v[0] == '0' && v[1] >= '0' && v[1] <= '9' {
			// YAML reads 0100 as octal 64: never what a VLAN or MTU means.
			return c.fail(n, path, "%s has a leading zero, which YAML reads as an octal number; write it without leading zeros", kindName(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return c.fail(n, path, "expected true or false, got %s%s", kindName(n), unquoteHint(n))
		}
	}
	return nil
}

// expandedSize returns the number of values n expands to, aliases expanded,
// saturating just above maxSpecValues. It stops descending below
// maxSpecDepth (the checker reports that depth with a path), which also
// ends alias cycles.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int, depth int) int {
	if n == nil || depth > maxSpecDepth+1 {
		return 1
	}
	if n.Kind == yaml.AliasNode {
		if v, ok := memo[n.Alias]; ok {
			return v
		}
		v := expandedSize(n.Alias, memo, depth+1)
		memo[n.Alias] = v
		return v
	}
	total := 1
	for _, c := range n.Content {
		total += expandedSize(c, memo, depth+1)
		if total > maxSpecValues {
			return maxSpecValues + 1
		}
	}
	return total
}

// isMergeKey reports whether k is YAML's merge key ("<<: *anchor").
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

// checkMerge checks the value of a merge key: a mapping (usually an alias of
// one) or a list of them, each merged into a mapping of type t.
func (c *checker) checkMerge(v *yaml.Node, t reflect.Type, path string, depth int) error {
	target := v
	if target.Kind == yaml.AliasNode && target.Alias != nil {
		target = target.Alias
	}
	switch target.Kind {
	case yaml.MappingNode:
		return c.check(v, t, path, depth)
	case yaml.SequenceNode:
		for _, e := range target.Content {
			m := e
			if m.Kind == yaml.AliasNode && m.Alias != nil {
				m = m.Alias
			}
			if m.Kind != yaml.MappingNode {
				return c.fail(e, path, "a merge (<<) list must hold only mappings")
			}
			if err := c.check(e, t, path, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return c.fail(v, path, "a merge (<<) needs a mapping or a list of mappings")
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
		if quoted(n) {
			// `got "false"` read as if false were refused.
			return fmt.Sprintf("the quoted string %q", v)
		}
		return fmt.Sprintf("%q", v)
	}
	return "something else"
}

// networkType is the type of a networks[] entry.
var networkType = reflect.TypeOf(model.Network{})

// isZero reports whether a checked integer scalar is 0 (0, +0, 0x0...).
func isZero(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" && err == nil && v == 0
}

// quoted reports whether a scalar was written in quotes (a string, whatever
// it looks like).
func quoted(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
}

// unquoteHint is what to do about a quoted scalar where a number or a
// boolean belongs.
func unquoteHint(n *yaml.Node) string {
	if quoted(n) {
		return "; remove the quotes"
	}
	return ""
}

// yamlFields maps each YAML key of struct type t to its field type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
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
	fieldCache.Store(t, out)
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
	lkey := strings.ToLower(key)
	for _, k := range sortedKeys(fields) {
		if strings.EqualFold(k, key) || EditDistance(strings.ToLower(k), lkey) <= 2 {
			return fmt.Sprintf("; did you mean %q?", k)
		}
	}
	// A shortened or truncated key ("sped", "speed" for speedMbps).
	if len(lkey) >= 3 {
		for _, k := range sortedKeys(fields) {
			lk := strings.ToLower(k)
			if len(lk) > 4 && EditDistance(lk[:min(len(lk), len(lkey))], lkey) <= 1 {
				return fmt.Sprintf("; did you mean %q?", k)
			}
		}
	}
	return ""
}

// EditDistance is the Levenshtein distance between a and b (bytes: keys and
// command names are ASCII), for "did you mean" hints; strings longer than
// 64 bytes are never close (99).
func EditDistance(a, b string) int {
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
