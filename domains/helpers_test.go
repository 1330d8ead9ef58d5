package domains

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// testSpec loads testdata/cluster.yaml (with defaults applied).
func testSpec(t testing.TB) *model.Spec {
	t.Helper()
	s, err := specfile.Load(filepath.Join("testdata", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
