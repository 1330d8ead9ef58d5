package main

import (
	"github.com/gallium/gallium-net/test/testenv"

	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestPackageVersion(t *testing.T) {
	when := time.Date(2026, 11, 24, 5, 53, 0, 0, time.FixedZone("CET", 3600))
	cases := []struct {
		name string
		g    gitState
		next string
		want string
		err  string
	}{
		{name: "no tag", g: gitState{ShortHash: "f74a53c", CommitTime: when}, next: "0.1.0", want: "0.1.0~git20261124045300.f74a53c"},
		{name: "no tag dirty", g: gitState{ShortHash: "f74a53c", CommitTime: when, Dirty: true}, next: "0.1.0", want: "0.1.0~git20261124045300.f74a53c.dirty"},
		{name: "on tag", g: gitState{Describe: "v1.2.3-0-gf74a53c", ShortHash: "f74a53c", CommitTime: when}, want: "1.2.3"},
		{name: "on tag dirty", g: gitState{Describe: "v1.2.3-0-gf74a53c", ShortHash: "f74a53c", CommitTime: when, Dirty: true}, want: "1.2.3+dirty"},
		{name: "after tag", g: gitState{Describe: "v1.2.3-5-gf74a53c", ShortHash: "f74a53c", CommitTime: when}, want: "1.2.3+git20261124045300.f74a53c"},
		{name: "rc tag", g: gitState{Describe: "v1.0.0-rc1-0-gf74a53c", ShortHash: "f74a53c", CommitTime: when}, want: "1.0.0~rc1"},
		{name: "bad next", g: gitState{ShortHash: "f74a53c", CommitTime: when}, next: "next", err: "packaging/VERSION"},
		{name: "bad tag", g: gitState{Describe: "v1.0_0-0-gf74a53c", ShortHash: "f74a53c", CommitTime: when}, err: "cannot parse"},
		{name: "no commit", g: gitState{}, next: "0.1.0", err: "no commit hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := packageVersion(c.g, c.next)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("packageVersion() = %q, %v; want error containing %q", got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("packageVersion() = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestVersionOrder checks the documented ordering with dpkg itself: the
// scheme is only useful if dpkg (and rpm, which orders ~ and + the same way
// for these shapes) agrees with it.
func TestVersionOrder(t *testing.T) {
	dpkg := testenv.NeedTool(t, "dpkg", "Debian's package manager")
	ascending := []string{
		"0.1.0~git20261124045300.f74a53c",
		"0.1.0~git20261124045300.f74a53c.dirty",
		"0.1.0~git20261124050000.0abc123",
		"0.1.0~rc1",
		"0.1.0",
		"0.1.0+dirty",
		"0.1.0+git20261201000000.1234567",
		"0.1.1~git20261202000000.7654321",
	}
	for i := 1; i < len(ascending); i++ {
		a, b := ascending[i-1], ascending[i]
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg says %s is not lower than %s", a, b)
		}
	}
}
