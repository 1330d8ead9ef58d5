package osnet

import (
	"fmt"
	"path"
	"strings"
)

// nmDirs hold NetworkManager's keyfile connection profiles.
var nmDirs = []string{"/etc/NetworkManager/system-connections", "/run/NetworkManager/system-connections"}

// scanNetworkManager reads the keyfile profiles: a profile claims the
// interface its [connection] interface-name names and/or the MAC of its
// [ethernet] mac-address, with the addresses of [ipv4] (address1=...,
// addresses=...) and method=auto as DHCP. Profiles that match neither (a
// profile for "any ethernet") are claims on "*".
func scanNetworkManager(root string) ([]Claim, []error) {
	var claims []Claim
	var errs []error
	for _, dir := range nmDirs {
		names, err := listDir(root, dir, ".nmconnection")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
		for _, n := range names {
			rel := path.Join(dir, n)
			b, err := readFile(root, rel)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", rel, err))
				continue
			}
			c, err := parseNMKeyfile(rel, string(b))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if c != nil {
				claims = append(claims, *c)
			}
		}
	}
	return claims, errs
}

// parseNMKeyfile reads one profile; nil for a profile that is not for an
// ethernet, bond, bridge or VLAN device.
func parseNMKeyfile(file, text string) (*Claim, error) {
	c := &Claim{Manager: NetworkManager, File: file, Line: 1}
	id, typ, method := "", "", ""
	for _, e := range parseINI(text) {
		switch {
		case e.section == "connection" && e.key == "id":
			id = e.value
		case e.section == "connection" && e.key == "type":
			typ = e.value
		case e.section == "connection" && e.key == "interface-name":
			c.Names, c.Line = []string{e.value}, e.line
		case (e.section == "ethernet" || e.section == "802-3-ethernet") && e.key == "mac-address":
			c.MAC = strings.ToLower(e.value)
			if len(c.Names) == 0 {
				c.Line = e.line
			}
		case e.section == "ipv4" && e.key == "method":
			method = e.value
		case e.section == "ipv4" && (strings.HasPrefix(e.key, "address") || e.key == "addresses"):
			// address1=192.168.1.101/24,192.168.1.1 ; addresses=a/24;b/24
			for _, part := range strings.Split(e.value, ";") {
				a, _, _ := strings.Cut(strings.TrimSpace(part), ",")
				if a == "" {
					continue
				}
				p, err := parsePrefix(a, 32)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: %s: %w", file, e.line, e.key, err)
				}
				c.Addresses = append(c.Addresses, p)
			}
		}
	}
	switch typ {
	case "ethernet", "802-3-ethernet", "bond", "bridge", "vlan", "":
	default:
		return nil, nil // wifi, vpn, loopback...
	}
	if len(c.Names) == 0 && c.MAC == "" {
		c.Names = []string{"*"}
	}
	c.DHCP = method == "auto" || (method == "" && len(c.Addresses) == 0)
	c.What = fmt.Sprintf("connection %q (%s)", firstNonEmpty(id, path.Base(file)), firstNonEmpty(typ, "ethernet"))
	return c, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
