package model_test

import (
	"fmt"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

func TestSetDefaultsIdempotent(t *testing.T) {
	s := production(t)
	before := fmt.Sprintf("%+v", *s)
	model.SetDefaults(s)
	model.SetDefaults(s)
	if after := fmt.Sprintf("%+v", *s); after != before {
		t.Errorf("SetDefaults is not idempotent:\n%s\n%s", before, after)
	}
	// Primary defaults only when every hypervisor agrees on the first adapter.
	s = &model.Spec{AdapterGroups: []model.AdapterGroup{{Name: "g", Adapters: map[string][]string{"a": {"x", "y"}, "b": {"y", "x"}}}}}
	model.SetDefaults(s)
	if g := s.Group("g"); g.Bond.Primary != "" || g.PrimaryOn("a") != "x" || g.PrimaryOn("b") != "y" || g.PrimaryOn("c") != "" {
		t.Errorf("per-hypervisor primary wrong: %+v", g.Bond)
	}
}

func TestUpdelayDefault(t *testing.T) {
	for _, tc := range []struct{ miimon, want int }{
		{100, model.DefaultUpdelayMs}, {1, model.DefaultUpdelayMs}, {300, 1200}, {30, 1020}, {10000, 10000},
	} {
		if got := model.DefaultUpdelay(tc.miimon); got != tc.want || got%tc.miimon != 0 {
			t.Errorf("DefaultUpdelay(%d) = %d, want %d", tc.miimon, got, tc.want)
		}
	}
	// Left out: the default for the group's miimon. Given, 0 included:
	// kept, since 0 (fail back at once) is a choice.
	s, err := specfile.Parse([]byte(`
adapterGroups:
  - {name: a, adapters: {hv1: [eno1]}}
  - {name: b, adapters: {hv1: [eno2]}, bond: {miimon: 300}}
  - {name: c, adapters: {hv1: [eno3]}, bond: {updelayMs: 0, downdelayMs: 200}}
  - {name: d, adapters: {hv1: [eno4]}, bond: {miimon: 50, updelayMs: 250}}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]int{"a": {model.DefaultUpdelayMs, 0}, "b": {1200, 0}, "c": {0, 200}, "d": {250, 0}} {
		b := s.Group(name).Bond
		if b.UpdelayMs == nil || *b.UpdelayMs != want[0] || b.Updelay() != want[0] || b.DowndelayMs != want[1] {
			t.Errorf("group %s: updelay %v downdelay %d, want %v", name, b.UpdelayMs, b.DowndelayMs, want)
		}
	}
	// A spec that was not defaulted gets the same through Updelay.
	if got := (model.BondTuning{}).Updelay(); got != model.DefaultUpdelay(model.DefaultMiimon) {
		t.Errorf("undefaulted Updelay() = %d", got)
	}
	if got := (model.BondTuning{Miimon: 300}).Updelay(); got != 1200 {
		t.Errorf("undefaulted Updelay() with miimon 300 = %d, want 1200", got)
	}
}
