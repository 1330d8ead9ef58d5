package osnet

import (
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ifupdownFile is where ifupdown starts reading.
const ifupdownFile = "/etc/network/interfaces"

// sourceDirName is the run-parts rule source-directory applies to names.
var sourceDirName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ifupdownLine is one logical line (continuations joined) and where it
// starts.
type ifupdownLine struct {
	file string
	line int
	text string
}

// scanIfupdown reads /etc/network/interfaces and what it sources: "auto" and
// "allow-*" lines claim the interfaces they name, an "iface NAME inet ..."
// stanza claims NAME with its addresses ("address A/LEN", or "address A"
// with "netmask M").
func scanIfupdown(root string) ([]Claim, []error) {
	var lines []ifupdownLine
	var errs []error
	seen := map[string]bool{}
	var read func(rel string, depth int)
	read = func(rel string, depth int) {
		if seen[rel] || depth > 8 {
			return
		}
		seen[rel] = true
		b, err := readFile(root, rel)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			return
		}
		for _, l := range logicalLines(rel, string(b)) {
			f := strings.Fields(l.text)
			if len(f) < 2 || (f[0] != "source" && f[0] != "source-directory") {
				lines = append(lines, l)
				continue
			}
			target := f[1]
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(rel), target)
			}
			if f[0] == "source-directory" {
				names, err := listDir(root, target, "")
				if err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: source-directory %s: %w", l.file, l.line, target, err))
				}
				for _, n := range names {
					if sourceDirName.MatchString(n) {
						read(path.Join(target, n), depth+1)
					}
				}
				continue
			}
			matches, err := filepath.Glob(inRoot(root, target))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: source %s: %w", l.file, l.line, target, err))
			}
			for _, m := range matches {
				r, err := filepath.Rel(root, m)
				if err == nil {
					read("/"+filepath.ToSlash(r), depth+1)
				}
			}
		}
	}
	read(ifupdownFile, 0)
	claims, perr := parseIfupdown(lines)
	return claims, append(errs, perr...)
}

// logicalLines splits an interfaces file into lines without comments and
// blank lines, joining backslash continuations.
func logicalLines(file, text string) []ifupdownLine {
	var out []ifupdownLine
	var cur *ifupdownLine
	for i, raw := range strings.Split(text, "\n") {
		t := strings.TrimSpace(raw)
		if cur == nil && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		cont := strings.HasSuffix(t, "\\")
		t = strings.TrimSuffix(t, "\\")
		if cur == nil {
			cur = &ifupdownLine{file: file, line: i + 1, text: t}
		} else {
			cur.text += " " + t
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// parseIfupdown turns logical lines into claims.
func parseIfupdown(lines []ifupdownLine) ([]Claim, []error) {
	var claims []Claim
	var errs []error
	var st *Claim // the iface stanza being read
	var addr string
	mask := -1
	end := func() {
		if st == nil {
			return
		}
		if addr != "" {
			p, err := parsePrefix(addr, mask)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", st.Where(), st.What, err))
			} else {
				st.Addresses = append(st.Addresses, p)
			}
		}
		claims = append(claims, *st)
		st, addr, mask = nil, "", -1
	}
	for _, l := range lines {
		f := strings.Fields(l.text)
		switch {
		case f[0] == "auto" || strings.HasPrefix(f[0], "allow-"):
			end()
			for _, n := range f[1:] {
				claims = append(claims, Claim{Manager: Ifupdown, File: l.file, Line: l.line, Names: []string{n}, What: f[0] + " " + n})
			}
		case f[0] == "iface" && len(f) >= 4:
			end()
			st = &Claim{Manager: Ifupdown, File: l.file, Line: l.line, Names: []string{f[1]}, What: strings.Join(f[:4], " "), DHCP: f[3] == "dhcp"}
		case f[0] == "mapping" || f[0] == "rename" || f[0] == "iface":
			end()
		case st != nil && f[0] == "address" && len(f) >= 2:
			addr = f[1]
		case st != nil && f[0] == "netmask" && len(f) >= 2:
			if n, err := strconv.Atoi(f[1]); err == nil {
				mask = n
			} else if m, err := netip.ParseAddr(f[1]); err == nil && m.Is4() {
				b := m.As4()
				mask = maskBits(b[:])
			} else {
				errs = append(errs, fmt.Errorf("%s:%d: netmask %q is neither a prefix length nor a dotted mask", l.file, l.line, f[1]))
			}
		}
	}
	end()
	return claims, errs
}

// maskBits counts the leading ones of a netmask (-1 when not contiguous).
func maskBits(b []byte) int {
	n, zero := 0, false
	for _, x := range b {
		for i := 7; i >= 0; i-- {
			if x&(1<<i) != 0 {
				if zero {
					return -1
				}
				n++
			} else {
				zero = true
			}
		}
	}
	return n
}
