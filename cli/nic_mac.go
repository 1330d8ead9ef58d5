package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin"
)

// defaultMACPrefix is QEMU/libvirt's locally administered range, used when
// the spec sets no macPrefix.
const defaultMACPrefix = "52:54:00"

// allocateMAC picks the MAC of a new NIC: the spec's prefix followed by
// random bytes, never one in used (lower-case MACs). This is the one place
// that decides a new NIC's MAC: the local rule (not used on this host) for
// now, the cluster ledger's allocator later.
func allocateMAC(prefix string, used map[string]bool, rnd io.Reader) (string, error) {
	if prefix == "" {
		prefix = defaultMACPrefix
	}
	pre, err := parseMACPrefix(prefix)
	if err != nil {
		return "", err
	}
	free := 1 << (8 * (6 - len(pre)))
	buf := make([]byte, 6)
	// Random picks find a free MAC quickly unless the range is nearly full;
	// the bound turns a full range into an error instead of a hang.
	for range 4 * min(free, 1<<16) {
		copy(buf, pre)
		if _, err := io.ReadFull(rnd, buf[len(pre):]); err != nil {
			return "", fmt.Errorf("allocate MAC: %w", err)
		}
		mac := net.HardwareAddr(buf).String()
		if !used[mac] {
			return mac, nil
		}
	}
	return "", fmt.Errorf("allocate MAC: no free MAC found under prefix %s (%d in use here); widen cluster.macPrefix", prefix, len(used))
}

func parseMACPrefix(prefix string) ([]byte, error) {
	parts := strings.Split(prefix, ":")
	if len(parts) < 1 || len(parts) > 5 {
		return nil, fmt.Errorf("cluster.macPrefix %q: want 1 to 5 bytes like 52:54:00", prefix)
	}
	out := make([]byte, len(parts))
	for i, p := range parts {
		var b byte
		if _, err := fmt.Sscanf(p, "%02x", &b); err != nil || len(p) != 2 {
			return nil, fmt.Errorf("cluster.macPrefix %q: %q is not a hex byte", prefix, p)
		}
		out[i] = b
	}
	if out[0]&1 == 1 {
		return nil, fmt.Errorf("cluster.macPrefix %q is a multicast prefix; VM MACs must be unicast (52:54:00 is the usual choice)", prefix)
	}
	if out[0] == 0xfe {
		return nil, fmt.Errorf("cluster.macPrefix %q starts with fe, which libvirt reserves for taps", prefix)
	}
	return out, nil
}

// checkMAC validates an operator-given MAC for a new NIC.
func checkMAC(mac string, used map[string]bool) (string, error) {
	norm, err := domains.NormalizeMAC(mac)
	if err != nil {
		return "", fmt.Errorf("--mac %s: %w", mac, err)
	}
	hw, _ := net.ParseMAC(norm)
	switch {
	case hw[0]&1 == 1:
		return "", fmt.Errorf("--mac %s is a multicast address; a NIC needs a unicast MAC", mac)
	case hw[0] == 0xfe:
		return "", fmt.Errorf("--mac %s starts with fe, which libvirt refuses for guests (it uses it for taps)", mac)
	case used[norm]:
		return "", fmt.Errorf("--mac %s is already used by a NIC on this host; leave --mac out to allocate one", mac)
	}
	return norm, nil
}

// usedMACs collects the MACs of every NIC of every domain (persistent and
// live) and of the host snapshot's NIC records.
func usedMACs(doms []*domainHandle, snap *plugin.HostSnapshot) map[string]bool {
	used := map[string]bool{}
	for _, d := range doms {
		for _, x := range []*domains.Domain{d.config, d.live} {
			if x == nil {
				continue
			}
			for _, n := range x.NICs {
				used[strings.ToLower(n.MAC)] = true
			}
			for _, n := range x.MissingNICs() {
				used[strings.ToLower(n.MAC)] = true
			}
		}
	}
	if snap != nil {
		for _, n := range snap.NICs {
			used[strings.ToLower(n.MAC)] = true
		}
	}
	return used
}

// randReader is crypto/rand's reader; tests swap in a deterministic one.
var randReader io.Reader = rand.Reader
