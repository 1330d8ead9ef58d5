package model

// Kernel link names that gallium-net derives from the spec. All of them start
// with "gb" so that gallium-net can tell its own links from everything else
// on a host and never touch what it did not create.
const (
	// BondPrefix starts the name of every bond gallium-net creates.
	BondPrefix = "gb-"
	// BridgePrefix starts the name of every bridge gallium-net creates.
	BridgePrefix = "gbr-"
	// MaxIfNameLen is the kernel's limit on an interface name (IFNAMSIZ-1).
	MaxIfNameLen = 15
)

// BondName is the kernel name of the bond that realises adapter group group.
func BondName(group string) string { return BondPrefix + group }

// BridgeName is the kernel name of the VLAN-filtering bridge on top of the
// bond of adapter group group. It is also the bridge of every libvirt network
// on that group.
func BridgeName(group string) string { return BridgePrefix + group }

// Owned reports whether a kernel link name is one gallium-net derives (a bond
// or bridge of some group), i.e. one it may change or delete.
func Owned(link string) bool {
	return len(link) > len(BondPrefix) && link[:len(BondPrefix)] == BondPrefix ||
		len(link) > len(BridgePrefix) && link[:len(BridgePrefix)] == BridgePrefix
}

// ValidIfName reports why name is not a valid kernel interface name, or ""
// when it is: at most 15 bytes, not empty, not "." or "..", and no '/', ':'
// or whitespace (the kernel's dev_valid_name).
func ValidIfName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > MaxIfNameLen:
		return "is longer than the kernel's 15-byte limit for interface names"
	case name == "." || name == "..":
		return "is not allowed as an interface name"
	}
	for _, r := range name {
		switch {
		case r == '/' || r == ':':
			return "contains '" + string(r) + "', which the kernel refuses in interface names"
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f':
			return "contains whitespace, which the kernel refuses in interface names"
		case r < 0x20 || r == 0x7f:
			return "contains a control character"
		}
	}
	return ""
}
