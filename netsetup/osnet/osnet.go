// Package osnet reads what the OS's own network managers (ifupdown,
// NetworkManager, systemd-networkd, netplan) are configured to put on this
// host's interfaces, from a root directory (/ or a copy of one), so that
// gallium-net can say who holds an adapter, one of its bonds or bridges, or
// the management IP before it takes them over (CheckOSManagers, for `host
// check`). It only reads files: no daemon is asked, nothing is written, and
// every claim names the file and line it comes from.
package osnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Manager is one of the OS's network managers.
type Manager string

const (
	Ifupdown       Manager = "ifupdown"
	NetworkManager Manager = "NetworkManager"
	Networkd       Manager = "systemd-networkd"
	Netplan        Manager = "netplan"
)

// Claim is one piece of a manager's configuration that takes an interface:
// brings it up, addresses it, or matches it.
type Claim struct {
	Manager Manager `json:"manager" yaml:"manager"`
	// File is the path inside the root (/etc/network/interfaces), Line its
	// 1-based line where the claim starts.
	File string `json:"file" yaml:"file"`
	Line int    `json:"line" yaml:"line"`
	// Names are the interface names it matches (globs for networkd and
	// NetworkManager's interface-name); MAC the hardware address it
	// matches. Either may be empty, not both.
	Names []string `json:"names,omitempty" yaml:"names,omitempty"`
	MAC   string   `json:"mac,omitempty" yaml:"mac,omitempty"`
	// Addresses are the static addresses it puts on the interface.
	Addresses []netip.Prefix `json:"addresses,omitempty" yaml:"addresses,omitempty"`
	DHCP      bool           `json:"dhcp,omitempty" yaml:"dhcp,omitempty"`
	// What says it in the manager's words: "iface eno1 inet static",
	// "connection \"Wired connection 1\"", ...
	What string `json:"what" yaml:"what"`
	// Unmanaged: the claim makes its manager let go of what it matches
	// (networkd's Unmanaged=yes, NetworkManager's unmanaged-devices), as
	// `gallium-net host takeover` writes; it holds nothing itself and
	// shadows that manager's other claims on the same interface.
	Unmanaged bool `json:"unmanaged,omitempty" yaml:"unmanaged,omitempty"`
}

// Where is "FILE:LINE".
func (c Claim) Where() string { return fmt.Sprintf("%s:%d", c.File, c.Line) }

// Matches reports whether the claim applies to the interface called name
// with hardware address mac (nil when unknown). A claim that matches on
// both name and MAC needs both.
func (c Claim) Matches(name string, mac net.HardwareAddr) bool {
	if c.MAC != "" {
		if mac == nil || !strings.EqualFold(c.MAC, mac.String()) {
			return false
		}
		if len(c.Names) == 0 {
			return true
		}
	}
	for _, n := range c.Names {
		if ok, _ := path.Match(n, name); ok {
			return true
		}
	}
	return false
}

// HasAddress reports whether the claim puts address a on its interface.
func (c Claim) HasAddress(a netip.Addr) bool {
	for _, p := range c.Addresses {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

// Scan reads every manager's configuration under root. A file it cannot
// read or parse is reported in errs (with its path) and the others are
// still read; claims come in a stable order: by manager, file, line.
func Scan(root string) (claims []Claim, errs []error) {
	for _, scan := range []func(string) ([]Claim, []error){scanIfupdown, scanNetworkManager, scanNetworkd, scanNetplan} {
		c, e := scan(root)
		claims = append(claims, c...)
		errs = append(errs, e...)
	}
	sort.SliceStable(claims, func(i, j int) bool {
		a, b := claims[i], claims[j]
		if a.Manager != b.Manager {
			return a.Manager < b.Manager
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return claims, errs
}

// Of returns the claims that apply to interface name with hardware address
// mac: those of a manager told to leave it alone (Unmanaged) do not.
// systemd-networkd uses the first .network file by file name that matches,
// so there an Unmanaged file shadows only the files after it;
// NetworkManager's unmanaged-devices shadows every profile; netplan's
// claims are shadowed by either (it renders for one of them).
func Of(claims []Claim, name string, mac net.HardwareAddr) []Claim {
	var matching []Claim
	released := map[Manager]bool{}
	winner := -1 // the networkd file networkd would use
	for _, c := range claims {
		if !c.Matches(name, mac) {
			continue
		}
		if c.Manager == Networkd {
			if winner < 0 || path.Base(c.File) < path.Base(matching[winner].File) {
				winner = len(matching)
			}
		} else if c.Unmanaged {
			released[c.Manager] = true
		}
		matching = append(matching, c)
	}
	// netplan renders for one of the two: what it renders loses to either
	// one's Unmanaged claim.
	if winner >= 0 && matching[winner].Unmanaged || released[NetworkManager] {
		released[Netplan] = true
	}
	var out []Claim
	for i, c := range matching {
		switch {
		case c.Unmanaged || released[c.Manager]:
		case c.Manager == Networkd && i != winner:
		default:
			out = append(out, c)
		}
	}
	return out
}

// Holding returns the claims that put address a on some interface.
func Holding(claims []Claim, a netip.Addr) []Claim {
	var out []Claim
	for _, c := range claims {
		if c.HasAddress(a) {
			out = append(out, c)
		}
	}
	return out
}

// inRoot is the host path of rel (an absolute path on the scanned host).
func inRoot(root, rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

// readFile reads rel under root; a missing file is (nil, nil).
func readFile(root, rel string) ([]byte, error) {
	b, err := os.ReadFile(inRoot(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// listDir returns the names of the regular files in directory rel under
// root that end in suffix (all with ""), sorted; a missing directory is
// empty.
func listDir(root, rel, suffix string) ([]string, error) {
	ents, err := os.ReadDir(inRoot(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			if strings.HasSuffix(e.Name(), suffix) {
				out = append(out, e.Name())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// parsePrefix reads "192.168.1.101/24", or a bare address with the prefix
// length bits (-1: none known, an error).
func parsePrefix(s string, bits int) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if bits < 0 {
		return netip.Prefix{}, fmt.Errorf("address %s has no prefix length (no netmask)", s)
	}
	p := netip.PrefixFrom(a, bits)
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("address %s: prefix length %d out of range", s, bits)
	}
	return p, nil
}

// scanLayered parses, with parse, the files ending in suffix of dirs in
// order of precedence: a file name in an earlier directory hides the same
// name in the later ones (as systemd and netplan do). A file that cannot
// be read or parsed is an error; the others are still read (parse may
// return claims with its error).
func scanLayered(root string, dirs []string, suffix string, parse func(rel string, data []byte) ([]Claim, error)) ([]Claim, []error) {
	var claims []Claim
	var errs []error
	hidden := map[string]bool{}
	for _, dir := range dirs {
		names, err := listDir(root, dir, suffix)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
		for _, n := range names {
			if hidden[n] {
				continue
			}
			hidden[n] = true
			rel := path.Join(dir, n)
			b, err := readFile(root, rel)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", rel, err))
				continue
			}
			c, err := parse(rel, b)
			if err != nil {
				errs = append(errs, err)
			}
			claims = append(claims, c...)
		}
	}
	return claims, errs
}
