package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHypervisorNames(t *testing.T) {
	s := &Spec{Hypervisors: []Hypervisor{{Name: "hv2"}, {Name: "hv1"}, {Name: "hv3"}}}
	// Spec order, not sorted: the order the operator wrote.
	if diff := cmp.Diff([]string{"hv2", "hv1", "hv3"}, s.HypervisorNames()); diff != "" {
		t.Errorf("HypervisorNames (-want +got):\n%s", diff)
	}
	if got := (&Spec{}).HypervisorNames(); len(got) != 0 {
		t.Errorf("no hypervisors: %q", got)
	}
}
