// Command gallium-net-hook is gallium-net's libvirt hook. It is installed
// (as links) as /etc/libvirt/hooks/qemu.d/gallium-net and
// /etc/libvirt/hooks/network.d/gallium-net, and libvirt runs it as
//
//	gallium-net OBJECT OP SUBOP EXTRA
//
// synchronously, as root, with the domain XML (qemu.d) or
// <hookData><network/>[<networkport/>]</hookData> (network.d) on stdin.
//
// It keeps every gallium-net VM NIC in line with the host: it refuses to
// start a domain whose networks are missing on this host, programs each tap's
// bridge VLAN and MTU (libvirt < 11.0 cannot), re-asserts them when libvirtd
// reconnects, rewrites per-host values on an incoming migration, and keeps a
// small local record of the running NICs under /run/gallium-net/hook.
//
// It never calls back into libvirt (that would deadlock libvirtd), never
// links the cgo libvirt binding, etcd or gRPC (it runs on every VM start and
// must be small and fast), and writes nothing to stdout except the rewritten
// domain XML of migrate/restore. Domains that gallium-net does not manage and
// operations it does not know pass through: exit 0, nothing written.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time (-ldflags -X main.version=...), as the CLI's.
var version = "dev"

func main() {
	if selfInfo(os.Args, os.Stdout) {
		return
	}
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr, defaultEnv()))
}

// usage is what --help prints: the hook is not run by hand, so it says who
// runs it and where to look.
const usage = `gallium-net-hook: gallium-net's libvirt hook.

libvirtd runs it, not you: it is linked as /etc/libvirt/hooks/qemu.d/gallium-net
and /etc/libvirt/hooks/network.d/gallium-net ('gallium-net hook install'),
and libvirtd calls it as

   gallium-net OBJECT OP SUBOP EXTRA

with the domain XML (qemu.d) or <hookData> (network.d) on stdin. It programs
the taps of gallium-net VM NICs (bridge, VLAN, MTU) and refuses to start a
domain whose networks are missing on this host. Domains gallium-net does not
manage pass through untouched.

Usage:
   gallium-net-hook --help | --version

See 'gallium-net hook status', and hooks/README.md in the source for each operation.
`

// selfInfo answers --help and --version (which printed nothing) and reports
// whether it did. Only a lone argument counts: libvirtd always passes four
// (a domain may be named "--help").
func selfInfo(argv []string, w io.Writer) bool {
	if len(argv) != 2 {
		return false
	}
	switch argv[1] {
	case "--help", "-h", "help":
		fmt.Fprint(w, usage)
	case "--version", "-V", "version":
		fmt.Fprintln(w, "gallium-net-hook", version)
	default:
		return false
	}
	return true
}
