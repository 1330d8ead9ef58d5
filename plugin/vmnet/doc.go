// Package vmnet holds gallium-net's libvirt use cases: defining this
// hypervisor's libvirt networks from the spec, adding, removing and syncing
// VM NICs, a VM's hardware profile, and the policy that picks a new NIC's
// MAC (the cluster ledger, or this host alone). The CLI and the agent both
// call it, so a command handler keeps only flags, output and exit codes.
//
// It talks to libvirt through Conn, a narrow interface with just the calls
// the use cases make, named by what they do rather than by libvirt's flags.
// That keeps the package free of the cgo binding: package libvirtconn adapts
// a libvirt.org/go/libvirt connection to it, and the tests run the use cases
// against a fake and against libvirt's test:///default driver.
package vmnet
