package model

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	if BondName("infra") != "gb-infra" || BridgeName("infra") != "gbr-infra" {
		t.Errorf("derived names changed: %s %s", BondName("infra"), BridgeName("infra"))
	}
	for name, ok := range map[string]bool{
		"eno1": true, "enp0s31f6": true, "a": true, strings.Repeat("a", 15): true,
		"": false, strings.Repeat("a", 16): false, ".": false, "..": false, "a/b": false, "a:b": false, "a b": false, "a\tb": false, "a\x01": false,
	} {
		if got := ValidIfName(name) == ""; got != ok {
			t.Errorf("ValidIfName(%q) ok=%v, want %v", name, got, ok)
		}
	}
	for name, owned := range map[string]bool{"gb-infra": true, "gbr-infra": true, "gb-": false, "gbr-": false, "eno1": false, "gbx": false} {
		if Owned(name) != owned {
			t.Errorf("Owned(%q) = %v, want %v", name, !owned, owned)
		}
	}
	// Names derived from the longest allowed group name fit the kernel.
	g := strings.Repeat("g", maxGroupNameLen)
	if ValidIfName(BondName(g)) != "" || ValidIfName(BridgeName(g)) != "" || ValidIfName(BridgeName(g+"g")) == "" {
		t.Errorf("maxGroupNameLen %d is wrong", maxGroupNameLen)
	}
}
