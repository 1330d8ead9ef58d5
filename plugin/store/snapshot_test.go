package store_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

// BenchmarkReadSnapshot is what the hook pays on every VM start: reading
// and decoding this host's snapshot, here with 3 networks and 500 NICs.
func BenchmarkReadSnapshot(b *testing.B) {
	spec, err := specfile.Parse([]byte(storetest.SpecYAML("lab", "52:54:00")), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var nics []snapshot.NIC
	for i := 0; i < 500; i++ {
		nics = append(nics, snapshot.NIC{DomainUUID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Domain: fmt.Sprintf("vm%d", i),
			MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff), Network: "prod", Model: "virtio"})
	}
	snap, err := snapshot.Build(spec, "hv1", nics, 7, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "host-snapshot.json")
	if err := snapshot.Write(path, snap); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := snapshot.Read(path)
		if err != nil || len(got.NICs) != 500 {
			b.Fatal(err)
		}
	}
}
