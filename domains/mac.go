package domains

import (
	"fmt"
	"net"
	"strings"
)

// NormalizeMAC checks that mac is a MAC address libvirt accepts for a guest
// NIC and returns it in lower case with colons: six bytes, unicast (the
// group bit of the first byte clear), not all zero, and a first byte other
// than 0xFE (libvirt reserves that for the host side of taps and refuses it).
func NormalizeMAC(mac string) (string, error) {
	if mac == "" {
		return "", fmt.Errorf("MAC address is empty")
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || strings.Count(mac, ":") != 5 {
		return "", fmt.Errorf("MAC address %q is not six colon-separated hex bytes (like 52:54:00:12:34:56)", mac)
	}
	switch {
	case hw[0]&1 != 0:
		return "", fmt.Errorf("MAC address %q is a multicast address; a NIC needs a unicast one (even first byte)", mac)
	case hw[0] == 0xfe:
		return "", fmt.Errorf("MAC address %q starts with 0xFE, which libvirt reserves for tap devices and refuses for guests", mac)
	case hw[0]|hw[1]|hw[2]|hw[3]|hw[4]|hw[5] == 0:
		return "", fmt.Errorf("MAC address %q is all zero", mac)
	}
	return hw.String(), nil
}
