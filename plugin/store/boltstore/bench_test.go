package boltstore

import (
	"fmt"
	"testing"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

// BenchmarkAllocateMAC measures new-NIC MAC allocations per second on the
// bbolt file (each one a compare-and-swap transaction, fsynced).
func BenchmarkAllocateMAC(b *testing.B) {
	s := store.New(open(b, 1)[0])
	if _, err := s.PushSpec(b.Context(), store.PushRequest{YAML: []byte(storetest.SpecYAML("lab", "52:54:00"))}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.AllocateMAC(b.Context(), store.NIC{DomainUUID: fmt.Sprintf("vm%d", i), Key: "net0", Network: "prod"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}

// BenchmarkAllocateMACExisting is the common case of a VM restart: the NIC
// is in the ledger, allocation is one read.
func BenchmarkAllocateMACExisting(b *testing.B) {
	s := store.New(open(b, 1)[0])
	if _, err := s.PushSpec(b.Context(), store.PushRequest{YAML: []byte(storetest.SpecYAML("lab", "52:54:00"))}); err != nil {
		b.Fatal(err)
	}
	nic := store.NIC{DomainUUID: "vm", Key: "net0", Network: "prod"}
	if _, _, err := s.AllocateMAC(b.Context(), nic); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, created, err := s.AllocateMAC(b.Context(), nic); err != nil || created {
			b.Fatal(err, created)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}
