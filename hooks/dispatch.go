package main

import (
	"path/filepath"
)

// kind is the libvirt hook driver an invocation belongs to.
type kind int

const (
	kindUnknown kind = iota
	kindQemu
	kindNetwork
)

func (k kind) String() string {
	switch k {
	case kindQemu:
		return "qemu"
	case kindNetwork:
		return "network"
	}
	return "unknown"
}

// invocation is one parsed command line: libvirt passes OBJECT OP SUBOP
// EXTRA (EXTRA and SUBOP are "-" when unused).
type invocation struct {
	kind   kind
	object string // domain or network name
	op     string
	subop  string
	extra  string
}

// Operations that only one of the two drivers has. start, started and
// stopped exist for both, so those need the program's directory (or, when
// run from elsewhere, the stdin document) to decide.
var (
	qemuOnlyOps    = map[string]bool{"prepare": true, "release": true, "migrate": true, "restore": true, "reconnect": true, "attach": true}
	networkOnlyOps = map[string]bool{"port-created": true, "port-deleted": true, "updated": true, "plugged": true, "unplugged": true}
)

// parseArgs reads libvirt's argument vector. The driver comes from the
// directory libvirt ran the program from (qemu.d, network.d) or its name
// (the single-file hooks /etc/libvirt/hooks/qemu and .../network); failing
// both, from an operation only one driver has. A bare start/started/stopped
// from an unknown place stays kindUnknown and is decided by the stdin
// document's root element.
func parseArgs(argv []string) invocation {
	inv := invocation{}
	if len(argv) > 0 {
		inv.kind = kindFromPath(argv[0])
	}
	get := func(i int) string {
		if i < len(argv) {
			return argv[i]
		}
		return ""
	}
	inv.object, inv.op, inv.subop, inv.extra = get(1), get(2), get(3), get(4)
	if inv.kind == kindUnknown {
		switch {
		case qemuOnlyOps[inv.op]:
			inv.kind = kindQemu
		case networkOnlyOps[inv.op]:
			inv.kind = kindNetwork
		}
	}
	return inv
}

func kindFromPath(p string) kind {
	switch filepath.Base(filepath.Dir(p)) {
	case "qemu.d":
		return kindQemu
	case "network.d":
		return kindNetwork
	}
	switch filepath.Base(p) {
	case "qemu":
		return kindQemu
	case "network":
		return kindNetwork
	}
	return kindUnknown
}
