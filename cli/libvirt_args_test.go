package main

import (
	"slices"
	"testing"
)

func TestInterspersedArgs(t *testing.T) {
	app := newApp()
	tests := []struct{ in, want []string }{
		{[]string{"gn", "nic", "add", "vm1", "--network", "prod", "--profile", "modern"},
			[]string{"gn", "nic", "add", "--network", "prod", "--profile", "modern", "vm1"}},
		{[]string{"gn", "--debug", "nic", "add", "vm1", "-n", "prod"},
			[]string{"gn", "--debug", "nic", "add", "-n", "prod", "vm1"}},
		{[]string{"gn", "network", "define", "prod", "--all", "-f", "x.yaml"},
			[]string{"gn", "network", "define", "--all", "-f", "x.yaml", "prod"}},
		{[]string{"gn", "nic", "remove", "vm1", "52:54:00:00:00:01", "-c", "qemu:///session"},
			[]string{"gn", "nic", "remove", "-c", "qemu:///session", "vm1", "52:54:00:00:00:01"}},
		{[]string{"gn", "vm", "profile", "vm1", "--update-nics", "legacy"},
			[]string{"gn", "vm", "profile", "--update-nics", "vm1", "legacy"}},
		{[]string{"gn", "nic", "add", "--", "-odd-name"}, []string{"gn", "nic", "add", "--", "-odd-name"}},
		{[]string{"gn"}, []string{"gn"}},
	}
	for _, tt := range tests {
		if got := interspersedArgs(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("interspersedArgs(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
