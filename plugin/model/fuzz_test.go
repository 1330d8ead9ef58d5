package model_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// FuzzParse feeds arbitrary bytes to Parse and validates whatever it
// accepts. Neither may panic; Parse's errors are *LoadError; validation is
// deterministic. The committed corpus (testdata/fuzz/FuzzParse: the
// examples, the invalid fixtures and every crasher found so far) is
// replayed by plain go test; make fuzz runs the long search.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../../examples/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := specfile.Parse(data, "fuzz.yaml")
		if err != nil {
			var le *specfile.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Parse error is %T, not *LoadError: %v", err, err)
			}
			if le.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if s == nil {
			t.Fatal("Parse returned neither spec nor error")
		}
		fs := model.Validate(s)
		for _, f := range fs {
			if f.Path == "" || f.Message == "" || f.Severity != model.SeverityError && f.Severity != model.SeverityWarning {
				t.Fatalf("malformed finding %#v", f)
			}
		}
		if again := model.Validate(s); !reflect.DeepEqual(fs, again) {
			t.Fatalf("Validate is not deterministic:\n%s\n%s", dump(fs), dump(again))
		}
		_ = fs.Sorted()
		_ = fs.Err()
	})
}
