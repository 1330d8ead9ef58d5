package osnet

import (
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
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
	u, e := scanNMUnmanaged(root)
	return append(claims, u...), append(errs, e...)
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

// nmConfDirs hold NetworkManager's configuration drop-ins; a name in an
// earlier one hides the same name in the later ones, and all are read in
// the order of their file names after NetworkManager.conf.
var nmConfDirs = []string{"/etc/NetworkManager/conf.d", "/run/NetworkManager/conf.d", "/usr/lib/NetworkManager/conf.d"}

// nmSpec is one device spec of unmanaged-devices and where it was set.
type nmSpec struct {
	spec, file string
	line       int
}

// scanNMUnmanaged reads [keyfile] unmanaged-devices from NetworkManager.conf
// and its conf.d drop-ins ("=" sets the list, "+=" adds to it, "-="
// removes from it, as NetworkManager merges them) and returns an Unmanaged
// claim per interface-name: or mac: spec of the result.
func scanNMUnmanaged(root string) ([]Claim, []error) {
	var errs []error
	files := []string{"/etc/NetworkManager/NetworkManager.conf"}
	hidden := map[string]string{}
	for _, dir := range nmConfDirs {
		names, err := listDir(root, dir, ".conf")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
		for _, n := range names {
			if _, ok := hidden[n]; !ok {
				hidden[n] = path.Join(dir, n)
			}
		}
	}
	var dropins []string
	for n := range hidden {
		dropins = append(dropins, n)
	}
	sort.Strings(dropins)
	for _, n := range dropins {
		files = append(files, hidden[n])
	}
	var specs []nmSpec
	for _, rel := range files {
		b, err := readFile(root, rel)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			continue
		}
		for _, e := range parseINI(string(b)) {
			if e.section != "keyfile" || !strings.HasPrefix(e.key, "unmanaged-devices") {
				continue
			}
			op := strings.TrimSpace(strings.TrimPrefix(e.key, "unmanaged-devices"))
			var vals []nmSpec
			for _, v := range strings.FieldsFunc(e.value, func(r rune) bool { return r == ';' || r == ',' }) {
				if v = strings.TrimSpace(v); v != "" {
					vals = append(vals, nmSpec{v, rel, e.line})
				}
			}
			switch op {
			case "":
				specs = vals
			case "+":
				specs = append(specs, vals...)
			case "-":
				specs = slices.DeleteFunc(specs, func(s nmSpec) bool {
					return slices.ContainsFunc(vals, func(v nmSpec) bool { return v.spec == s.spec })
				})
			}
		}
	}
	var claims []Claim
	for _, s := range specs {
		c := Claim{Manager: NetworkManager, File: s.file, Line: s.line, Unmanaged: true, What: "unmanaged-devices " + s.spec}
		kind, v, ok := strings.Cut(s.spec, ":")
		switch {
		case ok && kind == "interface-name":
			c.Names = []string{strings.TrimLeft(v, "=~")}
		case ok && kind == "mac":
			c.MAC = strings.ToLower(v)
		case !ok:
			if _, err := net.ParseMAC(s.spec); err != nil {
				continue
			}
			c.MAC = strings.ToLower(s.spec)
		default:
			continue // driver:, type:, except:, ...: not about a name or a MAC
		}
		claims = append(claims, c)
	}
	return claims, errs
}
