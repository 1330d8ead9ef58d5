package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// gitState is what the package version is derived from: the output of
// `git describe --tags --long --match 'v[0-9]*'` (empty when no release tag
// exists yet), the commit's short hash and committer time, and whether the
// work tree has uncommitted changes.
type gitState struct {
	Describe   string    // "v1.2.3-4-gabc1234" or ""
	ShortHash  string    // "abc1234"
	CommitTime time.Time // committer date of HEAD
	Dirty      bool
}

var describeRE = regexp.MustCompile(`^v([0-9][0-9A-Za-z.\-]*)-([0-9]+)-g([0-9a-f]+)$`)

// packageVersion returns an upstream version that is valid for both Debian
// and RPM and sorts the way builds were made:
//
//	on tag v1.2.3                   1.2.3
//	5 commits after v1.2.3          1.2.3+git20261124055300.abc1234
//	no tag yet, next is 0.1.0       0.1.0~git20261124055300.abc1234
//	uncommitted changes             ... .dirty appended
//
// "~" sorts before the empty string in both dpkg and rpm, so snapshots before
// the first tag sort below the release they lead to; "+" sorts after, so
// snapshots after a tag sort above it and below the next snapshot series.
// The commit timestamp (UTC, to the second) orders snapshots of a linear
// history; the hash says which commit it is. A "-" in a tag (v1.0.0-rc1) is
// a pre-release and becomes "~" (RPM versions cannot contain "-").
func packageVersion(g gitState, next string) (string, error) {
	if g.ShortHash == "" {
		return "", fmt.Errorf("package version: no commit hash: is this a git checkout with at least one commit?")
	}
	snapshot := "git" + g.CommitTime.UTC().Format("20060102150405") + "." + g.ShortHash
	var v string
	if g.Describe == "" {
		if !validUpstream(next) {
			return "", fmt.Errorf("package version: packaging/VERSION holds %q, want the next release as digits and dots, for example 0.1.0", next)
		}
		v = next + "~" + snapshot
	} else {
		m := describeRE.FindStringSubmatch(g.Describe)
		if m == nil {
			return "", fmt.Errorf("package version: cannot parse git describe output %q: release tags must look like v1.2.3", g.Describe)
		}
		v = strings.ReplaceAll(m[1], "-", "~")
		if m[2] != "0" {
			v += "+" + snapshot
		}
	}
	if g.Dirty {
		if strings.ContainsAny(v, "+~") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	if !validUpstream(strings.NewReplacer("~", ".", "+", ".").Replace(v)) {
		return "", fmt.Errorf("package version: %q (from tag %q) has characters neither dpkg nor rpm accept; use tags like v1.2.3", v, g.Describe)
	}
	return v, nil
}

var upstreamRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.]*$`)

// validUpstream reports whether v starts with a digit and holds only
// characters valid in both a Debian upstream version and an RPM Version.
func validUpstream(v string) bool { return upstreamRE.MatchString(v) }
