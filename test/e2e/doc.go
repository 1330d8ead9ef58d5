// Package e2e is the end-to-end tier: the real gallium-net CLI and hook
// against a real libvirtd and QEMU on this machine. test/e2e/run.sh sets it
// up and runs the tests (go test -tags e2e); without the tag, as in the unit
// tier, the package is empty.
package e2e
