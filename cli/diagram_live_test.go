package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin/diagram"
)

func TestLiveOf(t *testing.T) {
	st := &netsetup.HostStatus{Groups: []netsetup.GroupStatus{
		{Group: "infra", ActiveAdapter: "eno2", Adapters: []netsetup.AdapterStatus{
			{Name: "eno1", Exists: true, Carrier: false},
			{Name: "eno2", Exists: true, Carrier: true, Active: true},
		}},
		{Group: "vmgroup", ActiveAdapter: "", Adapters: []netsetup.AdapterStatus{
			{Name: "eno3", Exists: false}, // missing: not "no carrier"
			{Name: "eno4", Exists: true, Carrier: true},
		}},
	}}
	cases := []struct {
		name  string
		addrs []string
		want  diagram.HostLive
	}{
		{"VIP held as /24", []string{"192.168.1.101/24", "192.168.1.100/24"},
			diagram.HostLive{ActiveAdapters: []string{"eno2"}, NoCarrier: []string{"eno1"}, HoldsVIP: true}},
		{"VIP held as /32", []string{"192.168.1.101/24", "192.168.1.100/32"},
			diagram.HostLive{ActiveAdapters: []string{"eno2"}, NoCarrier: []string{"eno1"}, HoldsVIP: true}},
		{"VIP elsewhere", []string{"192.168.1.101/24", "192.168.1.10/24"},
			diagram.HostLive{ActiveAdapters: []string{"eno2"}, NoCarrier: []string{"eno1"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obs := &netsetup.Snapshot{Links: []netsetup.Link{{Name: "gbr-infra", Kind: "bridge", Addrs: c.addrs}}}
			if diff := cmp.Diff(c.want, liveOf(st, obs, "192.168.1.100")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
