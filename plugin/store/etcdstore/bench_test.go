package etcdstore

import (
	"fmt"
	"testing"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

func benchAllocate(b *testing.B, members, clients int) {
	c := etcdtest.Start(b, members)
	backends := factory(c)(b, clients)
	if _, err := store.New(backends[0]).PushSpec(b.Context(), store.PushRequest{YAML: []byte(storetest.SpecYAML("lab", "52:54:00"))}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	done := make(chan error, clients)
	per := (b.N + clients - 1) / clients
	for k := 0; k < clients; k++ {
		go func(k int, s *store.Store) {
			for i := 0; i < per; i++ {
				if _, _, err := s.AllocateMAC(b.Context(), store.NIC{DomainUUID: fmt.Sprintf("c%d-vm%d", k, i), Key: "net0", Network: "prod"}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}(k, store.New(backends[k]))
	}
	for k := 0; k < clients; k++ {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(per*clients)/b.Elapsed().Seconds(), "allocs/s")
}

// BenchmarkAllocateMAC1Member: one client, one embedded etcd member.
func BenchmarkAllocateMAC1Member(b *testing.B) { benchAllocate(b, 1, 1) }

// BenchmarkAllocateMAC3Members3Clients: three clients (one per member) on a
// 3-member cluster, as three hypervisors would allocate.
func BenchmarkAllocateMAC3Members3Clients(b *testing.B) { benchAllocate(b, 3, 3) }
