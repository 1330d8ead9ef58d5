package netsetup

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// repoFile returns the path of a file at the repository root.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", rel)
}

func loadExample(t testing.TB, name string) *model.Spec {
	t.Helper()
	s, err := specfile.Load(repoFile(t, "examples/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func desiredExample(t testing.TB, hv string) *HostState {
	t.Helper()
	hs, err := Desired(loadExample(t, "cluster.yaml"), hv)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// exampleHost is hv1 of examples/cluster.yaml before gallium-net: four
// adapters, the management IP and default route on eno1.
func exampleHost() *SimKernel {
	f := NewSimKernel("eno1", "eno2", "eno3", "eno4")
	f.SeedAddr("eno1", "192.168.1.101/24")
	f.SeedRoute(&Route{Gateway: "192.168.1.1", Dev: "eno1"})
	return f
}
