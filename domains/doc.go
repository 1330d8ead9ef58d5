// Package domains is gallium-net's libvirt XML: the libvirt network XML of a
// spec network on one hypervisor, the domain <interface> XML of a VM NIC, the
// gallium-net element of a domain's <metadata> that marks the domain and its
// NICs as managed, and the parsing (and per-host rewriting) of the domain XML
// a libvirt hook receives on stdin.
//
// Everything here is pure: no libvirt connection, no files, no kernel. XML is
// generated with libvirt.org/go/libvirtxml so that it follows libvirt's
// schema; the hook-side parser streams the document with encoding/xml and
// decodes only the few elements it needs, because it runs on every VM start.
package domains
