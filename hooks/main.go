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
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr, defaultEnv()))
}
