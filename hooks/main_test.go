package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHelpAndVersion: `gallium-net-hook --help` and `--version` printed
// nothing (issue 13 #9); libvirtd's four-argument calls are unaffected.
func TestHelpAndVersion(t *testing.T) {
	type result struct {
		Answered bool
		Says     bool
	}
	for _, tc := range []struct {
		argv []string
		want result
		says string
	}{
		{[]string{"gallium-net-hook", "--help"}, result{true, true}, "libvirtd runs it"},
		{[]string{"gallium-net-hook", "-h"}, result{true, true}, "gallium-net OBJECT OP SUBOP EXTRA"},
		{[]string{"gallium-net-hook", "--version"}, result{true, true}, "gallium-net-hook " + version},
		{[]string{"/etc/libvirt/hooks/qemu.d/gallium-net", "--help", "start", "begin", "-"}, result{false, false}, "libvirtd runs it"},
		{[]string{"gallium-net-hook", "vm1"}, result{false, false}, "gallium-net-hook"},
	} {
		var out bytes.Buffer
		got := result{selfInfo(tc.argv, &out), strings.Contains(out.String(), tc.says)}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s%s", tc.argv, diff, out.String())
		}
	}
}
