package model_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// genSpec writes a production spec of 3 hypervisors with 4 adapters each
// (2 x 10 Gbps infrastructure, 2 x 1 Gbps VM) and n networks on the VM
// group, VLANs 2..n+1 (n <= 4093; beyond, VLANs wrap and collide; VLAN 1 is
// the native VLAN).
func genSpec(n int) []byte {
	var b strings.Builder
	b.WriteString("cluster:\n  name: bench\n  subnet: 10.20.0.0/16\n  vip: 10.20.0.100\n  gateway: 10.20.0.1\n  macPrefix: \"52:54:00\"\n")
	b.WriteString("hypervisors:\n")
	for h := 1; h <= 3; h++ {
		fmt.Fprintf(&b, "  - name: hv%d\n    managementIP: 10.20.0.%d/16\n    adapters:\n", h, 100+h)
		b.WriteString("      - {name: eno1, speedMbps: 10000}\n      - {name: eno2, speedMbps: 10000}\n")
		b.WriteString("      - {name: eno3, speedMbps: 1000}\n      - {name: eno4, speedMbps: 1000}\n")
	}
	b.WriteString("adapterGroups:\n")
	b.WriteString("  - name: infra\n    infrastructure: true\n    adapters: {hv1: [eno1, eno2], hv2: [eno1, eno2], hv3: [eno1, eno2]}\n    bond: {miimon: 100, primary: eno1}\n")
	b.WriteString("  - name: vmgroup\n    adapters: {hv1: [eno3, eno4], hv2: [eno3, eno4], hv3: [eno3, eno4]}\n")
	b.WriteString("networks:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: net%d, adapterGroup: vmgroup, vlan: %d}\n", i, (i-1)%4093+2)
	}
	b.WriteString("hardwareProfiles:\n  - {name: modern, nicModel: virtio}\n  - {name: legacy, nicModel: e1000}\n")
	return []byte(b.String())
}

func TestGenSpecValid(t *testing.T) {
	s, err := specfile.Parse(genSpec(1000), "gen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Networks) != 1000 {
		t.Fatalf("want 1000 networks, got %d", len(s.Networks))
	}
	if fs := model.Validate(s); len(fs) != 0 {
		t.Fatalf("generated spec is not clean:\n%s", dump(fs))
	}
}

// BenchmarkLoadValidate1000Networks: Parse and Validate a spec of 3
// hypervisors x 4 adapters and 1000 networks. Target: under 20 ms/op.
func BenchmarkLoadValidate1000Networks(b *testing.B) {
	data := genSpec(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := specfile.Parse(data, "gen.yaml")
		if err != nil {
			b.Fatal(err)
		}
		if fs := model.Validate(s); fs.HasErrors() {
			b.Fatal(fs.Err())
		}
	}
}

// BenchmarkValidate1000Networks: Validate alone, on the same spec.
func BenchmarkValidate1000Networks(b *testing.B) { benchValidate(b, 1000) }

// BenchmarkValidate4000Networks is 4x the networks of the one above (0.17
// ms here): linear is ~0.7 ms, quadratic ~2.7 ms; its budget in
// test/bench.sh (1.5 ms) lies between.
func BenchmarkValidate4000Networks(b *testing.B) { benchValidate(b, 4000) }

func benchValidate(b *testing.B, networks int) {
	s, err := specfile.Parse(genSpec(networks), "gen.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		model.Validate(s)
	}
}
