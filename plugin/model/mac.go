package model

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// MAC addresses of VM NICs. gallium-net allocates them under the cluster's
// MAC prefix (cluster.macPrefix): unicast, never starting with 0xFE (libvirt
// keeps those for taps) and not in use. Whether a MAC is in use is the
// caller's question (the used predicate): within one spec and the domains
// given here, and cluster-wide through the state store.

// MACPrefix is the fixed leading part of allocated MACs, 1 to 5 bytes.
type MACPrefix []byte

// ErrMACSpaceExhausted is returned (wrapped) by AllocateMAC when no free MAC
// is left under the prefix, or so few that they cannot be found quickly.
var ErrMACSpaceExhausted = errors.New("no free MAC address left under the prefix")

const (
	// macRandomTries is how many random MACs AllocateMAC tries before it
	// scans. With the default 3-byte prefix (16M addresses) all tries fail
	// only when the space is nearly full.
	macRandomTries = 64
	// macMaxScan bounds the scan after the random tries: a prefix of 4 or 5
	// bytes is scanned whole; under a shorter one, this many addresses in a
	// row all in use means the space is nearly exhausted.
	macMaxScan = 1 << 20
)

// ParseMACPrefix parses a MAC prefix of 1 to 5 bytes written as hex pairs
// separated by ':' or '-' ("52:54:00"). The prefix must give unicast MACs
// (first byte even) and must not start with 0xFE. A locally administered
// prefix (second-lowest bit of the first byte set, as in 52 or 02) is fine
// and recommended. The error says what to write instead.
func ParseMACPrefix(s string) (MACPrefix, error) {
	const format = "write 1 to 5 bytes as hex pairs separated by ':' (for example \"52:54:00\")"
	if s == "" {
		return nil, fmt.Errorf("no MAC prefix given: %s", format)
	}
	sep := ":"
	if !strings.Contains(s, ":") && strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) > 5 {
		if len(parts) == 6 {
			return nil, fmt.Errorf("MAC prefix %s is a whole MAC address (6 bytes): a prefix has 1 to 5 bytes so that addresses remain to allocate; drop the last bytes (for example \"52:54:00\")", show(s))
		}
		return nil, fmt.Errorf("MAC prefix %s has more than 5 bytes: %s", show(s), format)
	}
	p := make(MACPrefix, 0, len(parts))
	for _, part := range parts {
		b, err := strconv.ParseUint(part, 16, 8)
		if len(part) != 2 || err != nil {
			return nil, fmt.Errorf("MAC prefix %s is not hex bytes: %s", show(s), format)
		}
		p = append(p, byte(b))
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// check enforces the rules on a prefix's bytes.
func (p MACPrefix) check() error {
	if len(p) < 1 || len(p) > 5 {
		return fmt.Errorf("MAC prefix has %d bytes: use 1 to 5 (for example \"52:54:00\")", len(p))
	}
	if p[0]&1 != 0 {
		return fmt.Errorf("MAC prefix %s is multicast (the lowest bit of its first byte is set): VM MACs must be unicast; use an even first byte, for example \"52:54:00\" or a locally administered \"02:...\"", p)
	}
	if p[0] == 0xfe {
		return fmt.Errorf("MAC prefix %s starts with fe, which libvirt refuses for guest MACs (it gives fe:... to tap devices): use another first byte, for example \"52:54:00\"", p)
	}
	return nil
}

// String writes the prefix as lower-case hex pairs separated by ':'.
func (p MACPrefix) String() string {
	var b strings.Builder
	for i, c := range p {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02x", c)
	}
	return b.String()
}

// Contains reports whether mac (6 bytes) starts with the prefix.
func (p MACPrefix) Contains(mac net.HardwareAddr) bool {
	if len(mac) != 6 || len(p) > 6 {
		return false
	}
	for i, c := range p {
		if mac[i] != c {
			return false
		}
	}
	return true
}

// Size is the number of MACs under the prefix.
func (p MACPrefix) Size() uint64 {
	if len(p) >= 6 {
		return 0
	}
	return 1 << (8 * (6 - len(p)))
}

// AllocateMAC returns a MAC under prefix (see ParseMACPrefix) for which used
// returns false. used may be nil (nothing in use); rnd is the source of
// randomness, nil for crypto/rand (tests pass a seeded reader, which makes
// the result deterministic). It tries random addresses first, then scans;
// when none is free (or so few that the bounded scan finds none) the error
// wraps ErrMACSpaceExhausted. The caller marks the result as used before it
// allocates the next one.
func AllocateMAC(prefix string, used func(net.HardwareAddr) bool, rnd io.Reader) (net.HardwareAddr, error) {
	p, err := ParseMACPrefix(prefix)
	if err != nil {
		return nil, err
	}
	return p.Allocate(used, rnd)
}

// Allocate is AllocateMAC with a parsed prefix.
func (p MACPrefix) Allocate(used func(net.HardwareAddr) bool, rnd io.Reader) (net.HardwareAddr, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	free := 6 - len(p)
	size := p.Size()
	mac := make(net.HardwareAddr, 6)
	copy(mac, p)
	// set writes suffix n (n < size) into the free bytes of mac.
	set := func(n uint64) {
		for i := 5; i >= len(p); i-- {
			mac[i] = byte(n)
			n >>= 8
		}
	}
	ok := func() bool {
		return !isZeroMAC(mac) && (used == nil || !used(mac))
	}
	buf := make([]byte, free)
	var n uint64
	for range macRandomTries {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, fmt.Errorf("allocate a MAC address: read random bytes: %w", err)
		}
		n = 0
		for _, b := range buf {
			n = n<<8 | uint64(b)
		}
		set(n)
		if ok() {
			return mac, nil
		}
	}
	scan := min(size, macMaxScan)
	for i := uint64(1); i < scan; i++ {
		set((n + i) % size)
		if ok() {
			return mac, nil
		}
	}
	if scan == size {
		return nil, fmt.Errorf("%w: all %d MAC addresses under %s are in use; use a shorter cluster.macPrefix (for example \"52:54:00\") for more addresses", ErrMACSpaceExhausted, size, p)
	}
	return nil, fmt.Errorf("%w: the MAC addresses under %s are nearly all in use (%d random tries and %d in a row taken); use a shorter cluster.macPrefix for more addresses", ErrMACSpaceExhausted, p, macRandomTries, scan)
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// ParseMAC parses a 6-byte MAC address in any form net.ParseMAC reads
// ("52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "5254.00ab.cdef").
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%s is not a MAC address: write six hex pairs separated by ':' (for example \"52:54:00:12:34:56\")", show(s))
	}
	return mac, nil
}

// NormalizeMAC returns the canonical form of a MAC address (lower case, ':'
// separated: "52:54:00:ab:cd:ef"), so that MACs compare as strings.
func NormalizeMAC(s string) (string, error) {
	mac, err := ParseMAC(s)
	if err != nil {
		return "", err
	}
	return mac.String(), nil
}

// ParseVMMAC parses a MAC address given for a VM NIC and checks that a guest
// may use it: unicast, not all zero, and not starting with 0xFE (libvirt
// refuses those).
func ParseVMMAC(s string) (net.HardwareAddr, error) {
	mac, err := ParseMAC(s)
	if err != nil {
		return nil, err
	}
	switch {
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("MAC %s is multicast (the lowest bit of its first byte is set): a VM NIC needs a unicast MAC, with an even first byte", mac)
	case mac[0] == 0xfe:
		return nil, fmt.Errorf("MAC %s starts with fe, which libvirt refuses for guest NICs (it gives fe:... to taps): use another MAC", mac)
	case isZeroMAC(mac):
		return nil, fmt.Errorf("MAC %s is all zero: use a real address", mac)
	}
	return mac, nil
}
