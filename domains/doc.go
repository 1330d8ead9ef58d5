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
//
// # Networks
//
// A spec network becomes a libvirt network of the same name with
// <forward mode='bridge'/> onto its adapter group's bridge (gbr-GROUP). A
// libvirt network is gallium-net's iff it has that shape on a bridge whose
// name model.Owned accepts; nothing else is ever changed. The VLAN of a
// tagged network is put on each tap by gallium-net's hook, because libvirt
// before 11.0 cannot do it on a plain Linux bridge (Debian 12 has 9.0);
// NetworkOptions.NativeVLAN (see NetworkOptionsFor) writes <vlan> into the
// network instead, for libvirt >= 11.0.
//
// # Ownership metadata
//
// A managed domain carries, under <metadata>, one element in namespace
// MetadataNamespace:
//
//	<gallium:net xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1">
//	  <gallium:profile>modern</gallium:profile>
//	  <gallium:nic mac="52:54:00:12:34:56" network="prod"/>
//	</gallium:net>
//
// Its presence makes the domain managed; the NICs whose MACs it lists are
// managed. Facts about libvirt (9.0, checked against its test driver in
// libvirt_test.go) that shaped this:
//   - virDomainSetMetadata(VIR_DOMAIN_METADATA_ELEMENT, xml, key, uri) puts
//     the element and every child without a namespace into uri under the
//     prefix key, and fails ("failed to create a new XML namespace") when the
//     element already declares that prefix. Metadata.XML therefore writes the
//     element bare (<net>...</net>); Metadata.ElementXML is the namespaced
//     form for writing domain XML directly.
//   - virDomainGetMetadata returns the element with the namespace stripped
//     again; ParseMetadata reads both forms.
//   - libvirt re-serialises the element with the key of the last
//     SetMetadata call as prefix, and a define drops children of <metadata>
//     without a namespace and all but the first element of each namespace.
//     Readers therefore match on the namespace URI, never on the prefix, and
//     use the first element.
package domains
