package netsetup

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestOpKindSwitches keeps every switch over Op kinds complete: each
// function that switches on an Op's kind (String, Netlink.do, SimKernel.do,
// undoOps, the planner's emit, ...) must name every OpKind constant in its
// cases, in one switch or spread over several, so that a new kind cannot be
// planned, simulated or undone by a default clause that does not know it.
// It reads the module's source (tests excluded), so a switch in another
// package (netsetup.OpDel) counts too.
func TestOpKindSwitches(t *testing.T) {
	fset := token.NewFileSet()
	kinds := opKindConsts(t, fset)
	if len(kinds) < 15 {
		t.Fatalf("found only %d OpKind constants in op.go: %v", len(kinds), kinds)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		inNetsetup := filepath.Dir(path) == filepath.Join(root, "netsetup")
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			named := map[string]bool{}
			switches := 0
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				sw, ok := n.(*ast.SwitchStmt)
				if !ok {
					return true
				}
				var found []string
				for _, c := range sw.Body.List {
					for _, e := range c.(*ast.CaseClause).List {
						if k := opKindName(e, inNetsetup); kinds[k] {
							found = append(found, k)
						}
					}
				}
				if len(found) > 0 {
					switches++
					for _, k := range found {
						named[k] = true
					}
				}
				return true
			})
			if switches == 0 {
				continue
			}
			checked++
			var missing []string
			for k := range kinds {
				if !named[k] {
					missing = append(missing, k)
				}
			}
			sort.Strings(missing)
			if len(missing) > 0 {
				t.Errorf("%s: %s switches over Op kinds without %s", fset.Position(fn.Pos()), funcName(fn), strings.Join(missing, ", "))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// String, Netlink.do, SimKernel.do, undoOps, emit at least: fewer
	// means the test no longer sees them.
	if checked < 5 {
		t.Errorf("found only %d functions that switch over Op kinds, want at least 5", checked)
	}
}

// opKindConsts returns the names of the constants of type OpKind in op.go.
func opKindConsts(t *testing.T, fset *token.FileSet) map[string]bool {
	f, err := parser.ParseFile(fset, "op.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "OpKind" {
				for _, n := range vs.Names {
					kinds[n.Name] = true
				}
			}
		}
	}
	return kinds
}

// opKindName is the constant e names: OpDel in netsetup, netsetup.OpDel
// elsewhere.
func opKindName(e ast.Expr, inNetsetup bool) string {
	switch e := e.(type) {
	case *ast.Ident:
		if inNetsetup {
			return e.Name
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "netsetup" {
			return e.Sel.Name
		}
	}
	return ""
}

func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	recv := fn.Recv.List[0].Type
	if s, ok := recv.(*ast.StarExpr); ok {
		recv = s.X
	}
	if id, ok := recv.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}
