package domains

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MetadataNamespace is the XML namespace of gallium-net's domain metadata.
const MetadataNamespace = "https://gallium.dev/xmlns/gallium-net/1"

// MetadataPrefix is the namespace prefix (libvirt's metadata "key") under
// which gallium-net stores its element. Readers match on MetadataNamespace,
// never on the prefix: libvirt re-serialises the element with whatever key
// the last virDomainSetMetadata call used.
const MetadataPrefix = "gallium"

// metadataElement is the local name of gallium-net's element in <metadata>.
const metadataElement = "net"

// MaxMetadataBytes caps the metadata element ParseMetadata accepts. A domain
// with a hundred NICs needs about 8 KiB.
const MaxMetadataBytes = 1 << 20

// Metadata is the element under a domain's <metadata> that marks the domain
// and its NICs as managed by gallium-net. Inside a domain's XML it reads
//
//	<gallium:net xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1">
//	  <gallium:profile>modern</gallium:profile>
//	  <gallium:nic mac="52:54:00:12:34:56" network="prod"/>
//	</gallium:net>
//
// The presence of the element makes the domain managed; a NIC is managed when
// its MAC is listed.
type Metadata struct {
	// Profile is the VM's hardware profile; "" means the cluster default.
	Profile string
	// NICs are the domain's gallium-net NICs, in the order they were added.
	NICs []MetadataNIC
}

// MetadataNIC is one gallium-net NIC of a domain.
type MetadataNIC struct {
	// MAC is the NIC's MAC address, lower case.
	MAC string
	// Network is the spec (and libvirt) network the NIC is on.
	Network string
}

// metadataXML is the wire form. The field tags carry no namespace so that
// they match both the namespaced form in a domain's XML and the bare form
// virDomainGetMetadata returns (libvirt strips its namespace there).
type metadataXML struct {
	XMLName xml.Name         `xml:"net"`
	Profile string           `xml:"profile,omitempty"`
	NICs    []metadataNICXML `xml:"nic"`
}

type metadataNICXML struct {
	MAC     string `xml:"mac,attr"`
	Network string `xml:"network,attr"`
}

// Validate reports the first problem that would make the metadata unusable:
// a NIC with a malformed MAC or no network, or a MAC listed twice.
func (m Metadata) Validate() error {
	seen := make(map[string]bool, len(m.NICs))
	for i, n := range m.NICs {
		mac, err := NormalizeMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("gallium-net metadata: nic %d: %w", i+1, err)
		}
		if n.Network == "" {
			return fmt.Errorf("gallium-net metadata: nic %s has no network", mac)
		}
		if seen[mac] {
			return fmt.Errorf("gallium-net metadata: nic %s is listed twice", mac)
		}
		seen[mac] = true
	}
	return nil
}

// XML returns the element in the form virDomainSetMetadata takes with
// type VIR_DOMAIN_METADATA_ELEMENT, uri MetadataNamespace and key
// MetadataPrefix: without any namespace. libvirt puts the element and all its
// children into the namespace itself, and refuses an element that already
// declares the key's prefix.
func (m Metadata) XML() (string, error) {
	return m.marshal(false)
}

// ElementXML returns the element as it appears inside a domain's <metadata>
// (namespaced, prefix MetadataPrefix), for writing domain XML directly.
func (m Metadata) ElementXML() (string, error) {
	return m.marshal(true)
}

func (m Metadata) marshal(namespaced bool) (string, error) {
	if err := m.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	open := func(name string) {
		b.WriteByte('<')
		if namespaced {
			b.WriteString(MetadataPrefix + ":")
		}
		b.WriteString(name)
	}
	closeTag := func(name string) {
		b.WriteString("</")
		if namespaced {
			b.WriteString(MetadataPrefix + ":")
		}
		b.WriteString(name)
		b.WriteByte('>')
	}
	// Written by hand rather than with xml.Marshal: encoding/xml cannot
	// produce a prefixed element (it emits xmlns="..." on every element).
	open(metadataElement)
	if namespaced {
		b.WriteString(` xmlns:` + MetadataPrefix + `="` + MetadataNamespace + `"`)
	}
	b.WriteByte('>')
	if m.Profile != "" {
		open("profile")
		b.WriteByte('>')
		escape(&b, m.Profile)
		closeTag("profile")
	}
	for _, n := range m.NICs {
		mac, _ := NormalizeMAC(n.MAC) // validated above
		open("nic")
		b.WriteString(` mac="`)
		b.WriteString(mac)
		b.WriteString(`" network="`)
		escape(&b, n.Network)
		b.WriteString(`"/>`)
	}
	closeTag(metadataElement)
	return b.String(), nil
}

func escape(b *strings.Builder, s string) {
	var buf bytes.Buffer
	_ = xml.EscapeText(&buf, []byte(s)) // writes to a bytes.Buffer never fail
	b.Write(buf.Bytes())
}

// ParseMetadata parses gallium-net's element: either as libvirt returns it
// from virDomainGetMetadata (no namespace) or as it appears inside domain XML
// (in MetadataNamespace, under any prefix). An element in another namespace,
// or with another name, is an error.
func ParseMetadata(s string) (*Metadata, error) {
	if len(s) > MaxMetadataBytes {
		return nil, fmt.Errorf("gallium-net metadata is %d bytes, more than the %d-byte limit", len(s), MaxMetadataBytes)
	}
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("gallium-net metadata is empty")
			}
			return nil, fmt.Errorf("gallium-net metadata: malformed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if !isOurs(t.Name, true) {
				return nil, fmt.Errorf("gallium-net metadata: got element <%s>, want <%s:%s xmlns:%s=%q>", fullName(t.Name), MetadataPrefix, metadataElement, MetadataPrefix, MetadataNamespace)
			}
			m, err := decodeMetadata(dec, &t)
			if err != nil {
				return nil, err
			}
			if err := expectEnd(dec); err != nil {
				return nil, fmt.Errorf("gallium-net metadata: %w", err)
			}
			return m, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("gallium-net metadata: text outside the element")
			}
		}
	}
}

// expectEnd checks that nothing but whitespace, comments and processing
// instructions follows the element.
func expectEnd(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("malformed XML after the element: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("unexpected element <%s> after the element", fullName(t.Name))
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text after the element")
			}
		}
	}
}

// isOurs reports whether name is gallium-net's element. bare allows no
// namespace at all (virDomainGetMetadata's form). An unbound "gallium:"
// prefix (a fragment cut out of a document that declared it higher up) is
// accepted too: encoding/xml reports the prefix itself as the space then.
func isOurs(name xml.Name, bare bool) bool {
	if name.Local != metadataElement {
		return false
	}
	return name.Space == MetadataNamespace || name.Space == MetadataPrefix || bare && name.Space == ""
}

func fullName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return "{" + n.Space + "}" + n.Local
}

// decodeMetadata decodes gallium-net's element whose start tag was just read
// and normalises and validates it. Unknown children are ignored, so that an
// older gallium-net reads what a newer one wrote.
func decodeMetadata(dec *xml.Decoder, start *xml.StartElement) (*Metadata, error) {
	var w metadataXML
	if err := dec.DecodeElement(&w, start); err != nil {
		return nil, fmt.Errorf("gallium-net metadata: malformed XML: %w", err)
	}
	m := &Metadata{Profile: strings.TrimSpace(w.Profile)}
	if len(w.NICs) > 0 {
		m.NICs = make([]MetadataNIC, 0, len(w.NICs))
	}
	for _, n := range w.NICs {
		mac, err := NormalizeMAC(n.MAC)
		if err != nil {
			return nil, fmt.Errorf("gallium-net metadata: nic %q: %w", n.MAC, err)
		}
		m.NICs = append(m.NICs, MetadataNIC{MAC: mac, Network: n.Network})
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// NIC returns the metadata entry of the NIC with MAC mac (any case), or nil.
func (m *Metadata) NIC(mac string) *MetadataNIC {
	if m == nil {
		return nil
	}
	for i := range m.NICs {
		if strings.EqualFold(m.NICs[i].MAC, mac) {
			return &m.NICs[i]
		}
	}
	return nil
}

// SetNIC records NIC mac on network, replacing an existing entry for the same
// MAC; it returns an error for a malformed MAC or an empty network.
func (m *Metadata) SetNIC(mac, network string) error {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return err
	}
	if network == "" {
		return fmt.Errorf("nic %s: network is empty", norm)
	}
	if n := m.NIC(norm); n != nil {
		n.Network = network
		return nil
	}
	m.NICs = append(m.NICs, MetadataNIC{MAC: norm, Network: network})
	return nil
}

// RemoveNIC drops the entry of NIC mac and reports whether there was one.
func (m *Metadata) RemoveNIC(mac string) bool {
	for i := range m.NICs {
		if strings.EqualFold(m.NICs[i].MAC, mac) {
			m.NICs = append(m.NICs[:i], m.NICs[i+1:]...)
			return true
		}
	}
	return false
}
