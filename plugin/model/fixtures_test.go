package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// TestInvalidFixtures: every spec in testdata/invalid says what it must
// give: "# want-load: TEXT" (Parse fails, its error contains TEXT) or
// "# want: SEVERITY PATH: PHRASE" lines (Validate gives such findings).
func TestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wantLoad string
			var wants []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want-load: "); ok {
					wantLoad = w
				} else if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, w)
				}
			}
			s, err := specfile.Parse(data, filepath.Base(file))
			if wantLoad != "" {
				if err == nil || !strings.Contains(err.Error(), wantLoad) {
					t.Fatalf("want a load error containing %q, got %v", wantLoad, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(wants) == 0 {
				t.Fatal("fixture says nothing it wants")
			}
			fs := model.Validate(s)
			for _, w := range wants {
				sev, rest, _ := strings.Cut(w, " ")
				path, phrase, _ := strings.Cut(rest, ": ")
				found := false
				for _, f := range find(fs, model.Severity(sev), path) {
					found = found || strings.Contains(f.Message, phrase)
				}
				if !found {
					t.Errorf("want %s at %s saying %q; got:\n%s", sev, path, phrase, dump(fs))
				}
			}
		})
	}
}
