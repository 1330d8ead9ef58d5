package netsetup

import (
	"fmt"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
)

// spec200 is the benchmark cluster: two groups (infra with the management
// IP; vm with 200 tagged networks, VLANs 100-299) on adapters.
func spec200(adapters []string) *model.Spec {
	s := &model.Spec{
		Cluster:     model.Cluster{Name: "bench", Subnet: "10.77.0.0/24", VIP: "10.77.0.100", Gateway: "10.77.0.1"},
		Hypervisors: []model.Hypervisor{{Name: "lab1", ManagementIP: "10.77.0.11/24"}},
		AdapterGroups: []model.AdapterGroup{
			{Name: "infra", Infrastructure: true, Adapters: map[string][]string{"lab1": adapters[:2]}},
			{Name: "vm", Adapters: map[string][]string{"lab1": adapters[2:4]}},
		},
	}
	for _, a := range adapters {
		s.Hypervisors[0].Adapters = append(s.Hypervisors[0].Adapters, model.Adapter{Name: a})
	}
	for v := 100; v < 300; v++ {
		s.Networks = append(s.Networks, model.Network{Name: fmt.Sprintf("n%d", v), AdapterGroup: "vm", VLAN: v})
	}
	model.SetDefaults(s)
	return s
}

// BenchmarkFakeApplyFromScratch200VLANs plans and applies 2 groups and 200
// VLAN networks on a fresh (simulated) host, and verifies by reading back.
func BenchmarkFakeApplyFromScratch200VLANs(b *testing.B) {
	hs, err := Desired(spec200(labAdapters), "lab1")
	if err != nil {
		b.Fatal(err)
	}
	writes := 0
	for i := 0; i < b.N; i++ {
		f := NewSimKernel(labAdapters...)
		if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		writes = f.Writes
	}
	b.ReportMetric(float64(writes), "writes/op")
}

// BenchmarkFakeReapplyConverged200VLANs is the converged re-apply: observe,
// plan (empty), no writes.
func BenchmarkFakeReapplyConverged200VLANs(b *testing.B) {
	hs, err := Desired(spec200(labAdapters), "lab1")
	if err != nil {
		b.Fatal(err)
	}
	f := NewSimKernel(labAdapters...)
	if _, err := Converge(f, hs, ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	c := &Counter{Kernel: f}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p, err := Converge(c, hs, ApplyOptions{}); err != nil || !p.Empty() {
			b.Fatalf("%v %v", err, p)
		}
	}
	b.ReportMetric(float64(c.Writes)/float64(b.N), "writes/op")
}

// TestLabApplyFigures200VLANs gives the real-kernel figures of the
// benchmarks above (the lab runs tests, not benchmarks; a benchmark's
// sub-goroutines would also leave the test's network namespace): apply from
// scratch and the converged re-apply, timed, with their write counts.
func TestLabApplyFigures200VLANs(t *testing.T) {
	newLab(t)
	k := &Counter{Kernel: NewNetlink()}
	hs, err := Desired(spec200(labAdapters), "lab1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := Converge(k, hs, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scratch, scratchWrites := time.Since(start), k.Writes
	k.Writes = 0
	const n = 5
	start = time.Now()
	for i := 0; i < n; i++ {
		if p, err := Converge(k, hs, ApplyOptions{}); err != nil || !p.Empty() {
			t.Fatalf("re-apply: %v %v", err, p)
		}
	}
	again := time.Since(start) / n
	t.Logf("BENCH real kernel (lab, TCG): 2 groups + 200 VLAN networks: from scratch %s, %d steps, %d writes; converged re-apply %s, %d writes",
		scratch.Round(time.Millisecond), len(p.Steps), scratchWrites, again.Round(time.Millisecond), k.Writes)
	if k.Writes != 0 {
		t.Errorf("converged re-apply wrote %d times", k.Writes)
	}
}
