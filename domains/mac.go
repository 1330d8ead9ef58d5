package domains

import "github.com/gallium/gallium-net/plugin/model"

// NormalizeMAC checks that mac is a MAC address libvirt accepts for a guest
// NIC and returns it in lower case with colons. It is model.ParseVMMAC, so
// that every command reads the same forms ("52:54:00:ab:cd:ef",
// "52-54-00-AB-CD-EF", "5254.00ab.cdef"): `nic add --mac` accepted a
// dash-separated MAC that `nic remove` then refused when both had a parser.
func NormalizeMAC(mac string) (string, error) {
	hw, err := model.ParseVMMAC(mac)
	if err != nil {
		return "", err
	}
	return hw.String(), nil
}
