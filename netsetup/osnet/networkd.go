package osnet

import (
	"fmt"
	"strings"
)

// networkdDirs in order of precedence: a file in an earlier one hides the
// same name in the later ones.
var networkdDirs = []string{"/etc/systemd/network", "/run/systemd/network", "/usr/lib/systemd/network", "/lib/systemd/network"}

// scanNetworkd reads the .network files systemd-networkd would use: each
// claims what its [Match] matches (Name= globs, MACAddress=,
// PermanentMACAddress=) with [Network] Address= / [Address] Address= and
// DHCP=. A file without Name or MAC matches (by driver, path, ...) is a
// claim on "*" with what it says.
func scanNetworkd(root string) ([]Claim, []error) {
	return scanLayered(root, networkdDirs, ".network", func(rel string, b []byte) ([]Claim, error) {
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil, nil // an empty file (or /dev/null link) masks the name
		}
		c, err := parseNetworkFile(rel, string(b))
		if err != nil {
			return nil, err
		}
		return []Claim{c}, nil
	})
}

func parseNetworkFile(file, text string) (Claim, error) {
	c := Claim{Manager: Networkd, File: file, Line: 1}
	var other []string
	matchLine := 0
	for _, e := range parseINI(text) {
		switch {
		case e.section == "Match" && e.key == "Name":
			c.Names = append(c.Names, strings.Fields(e.value)...)
			matchLine = firstLine(matchLine, e.line)
		case e.section == "Match" && (e.key == "MACAddress" || e.key == "PermanentMACAddress"):
			if f := strings.Fields(e.value); len(f) > 0 {
				c.MAC = strings.ToLower(f[0])
			}
			matchLine = firstLine(matchLine, e.line)
		case e.section == "Match":
			other = append(other, e.key+"="+e.value)
			matchLine = firstLine(matchLine, e.line)
		case (e.section == "Network" || e.section == "Address") && e.key == "Address":
			p, err := parsePrefix(e.value, 32)
			if err != nil {
				return c, fmt.Errorf("%s:%d: Address=: %w", file, e.line, err)
			}
			c.Addresses = append(c.Addresses, p)
		case e.section == "Link" && e.key == "Unmanaged":
			c.Unmanaged = parseBool(e.value)
		case e.section == "Network" && e.key == "DHCP":
			c.DHCP = e.value == "yes" || e.value == "ipv4" || e.value == "true"
		}
	}
	if matchLine > 0 {
		c.Line = matchLine
	}
	if len(c.Names) == 0 && c.MAC == "" {
		c.Names = []string{"*"}
	}
	var what []string
	if len(c.Names) > 0 {
		what = append(what, "Name="+strings.Join(c.Names, " "))
	}
	if c.MAC != "" {
		what = append(what, "MACAddress="+c.MAC)
	}
	c.What = "[Match] " + strings.Join(append(what, other...), " ")
	if c.Unmanaged {
		c.What += " Unmanaged=yes"
	}
	return c, nil
}

func firstLine(cur, l int) int {
	if cur == 0 {
		return l
	}
	return cur
}

// parseBool reads a systemd boolean.
func parseBool(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true
	}
	return false
}
