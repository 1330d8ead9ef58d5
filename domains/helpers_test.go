package domains

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gallium/gallium-net/plugin"
)

// testSpec loads testdata/cluster.yaml (with defaults applied).
func testSpec(t testing.TB) *plugin.Spec {
	t.Helper()
	s, err := plugin.Load(filepath.Join("testdata", "cluster.yaml"))
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
