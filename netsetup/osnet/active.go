package osnet

import (
	"os"
)

// Installed reports, per manager, whether the root has it installed and
// (for systemd-networkd, which every systemd host has) enabled: a claim of
// a manager that is not there is inert.
func Installed(root string) map[Manager]bool {
	exists := func(rels ...string) bool {
		for _, r := range rels {
			if _, err := os.Stat(inRoot(root, r)); err == nil {
				return true
			}
		}
		return false
	}
	return map[Manager]bool{
		Ifupdown:       exists("/sbin/ifup", "/usr/sbin/ifup"),
		NetworkManager: exists("/usr/sbin/NetworkManager", "/sbin/NetworkManager"),
		Networkd: exists("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
			"/etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
			"/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"),
		Netplan: exists("/usr/sbin/netplan", "/sbin/netplan"),
	}
}
