package store

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
)

// parseMAC returns a 6-byte MAC in lower-case colon form.
func parseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six colon-separated hex bytes such as 52:54:00:12:34:56", s)
	}
	return hw.String(), nil
}

// candidateMAC draws a random MAC under prefix. Random candidates spread
// concurrent allocators over the whole space, so compare-and-swap collisions
// stay rare; the ledger, not this function, guarantees uniqueness.
// TODO(lead): switch to plugin's MAC allocator (plugin/mac.go, engineer A)
// once it lands; it owns the prefix rules (unicast, never 0xFE).
func candidateMAC(prefix string) (string, error) {
	p, err := net.ParseMAC(strings.TrimSpace(prefix) + strings.Repeat(":00", 6-prefixLen(prefix)))
	if err != nil || len(p) != 6 {
		return "", fmt.Errorf("MAC prefix %q: want 1 to 5 colon-separated hex bytes such as 52:54:00", prefix)
	}
	n := prefixLen(prefix)
	if n < 1 || n > 5 {
		return "", fmt.Errorf("MAC prefix %q: want 1 to 5 bytes", prefix)
	}
	if p[0]&1 != 0 || p[0] == 0xfe {
		return "", fmt.Errorf("MAC prefix %q: the first byte must be unicast and not 0xFE (libvirt reserves it for taps)", prefix)
	}
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	copy(r[:n], p[:n])
	return net.HardwareAddr(r[:]).String(), nil
}

func prefixLen(prefix string) int {
	prefix = strings.TrimSpace(prefix)
	if prefix == "" {
		return 0
	}
	return strings.Count(prefix, ":") + 1
}
