package domains

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// MaxDomainXMLBytes caps the domain XML ParseDomain and RewriteDomain accept.
// A live domain XML is a few kilobytes; a hook must not be made to swallow an
// unbounded stdin.
const MaxDomainXMLBytes = 4 << 20

// ErrDomainTooLarge is returned (wrapped) for domain XML over
// MaxDomainXMLBytes.
var ErrDomainTooLarge = fmt.Errorf("domain XML is larger than %d bytes", MaxDomainXMLBytes)

// Domain is what a libvirt hook needs from a domain's XML.
type Domain struct {
	Name string
	UUID string
	// Managed is true when the domain's <metadata> holds gallium-net's
	// element (in MetadataNamespace, under any prefix).
	Managed bool
	// Meta is gallium-net's metadata; nil when the domain is not managed.
	Meta *Metadata
	// NICs are all the domain's <interface> devices, in document order.
	NICs []NIC
}

// NIC is one <interface> of a domain as libvirt formats it (live XML after
// prepare has <source network=... bridge=... portid=...> and <target dev=...>).
type NIC struct {
	MAC     string // lower case; "" when the XML has none
	Type    string // the interface type: network, bridge, direct, ...
	Network string // <source network=...>
	Bridge  string // <source bridge=...> (also set on type network once running)
	Target  string // <target dev=...>: the tap, vnetN, once the domain starts
	Model   string // <model type=...>
	MTU     int    // <mtu size=...>; 0 when absent
	// Managed is true when the NIC's MAC is listed in gallium-net's metadata.
	Managed bool
	// PortID is <source portid=...>: the libvirt network port of a type
	// network NIC, which the network hook's <networkport> names.
	PortID string
	// Alias is <alias name=...> (net0, ua-...), libvirt's device name.
	Alias string
}

// NIC returns the domain's NIC with MAC mac (any case), or nil.
func (d *Domain) NIC(mac string) *NIC {
	for i := range d.NICs {
		if strings.EqualFold(d.NICs[i].MAC, mac) {
			return &d.NICs[i]
		}
	}
	return nil
}

// NetworkOf is the spec network of NIC n: gallium-net's metadata wins over
// the interface's own source (which names a libvirt network or a bridge).
func (d *Domain) NetworkOf(n NIC) string {
	if m := d.Meta.NIC(n.MAC); m != nil {
		return m.Network
	}
	return n.Network
}

// ManagedNICs returns the NICs gallium-net manages, in document order.
func (d *Domain) ManagedNICs() []NIC {
	var out []NIC
	for _, n := range d.NICs {
		if n.Managed {
			out = append(out, n)
		}
	}
	return out
}

// MissingNICs returns the metadata entries with no <interface> of that MAC
// in the domain (a NIC removed behind gallium-net's back).
func (d *Domain) MissingNICs() []MetadataNIC {
	if d.Meta == nil {
		return nil
	}
	var out []MetadataNIC
	for _, m := range d.Meta.NICs {
		if d.NIC(m.MAC) == nil {
			out = append(out, m)
		}
	}
	return out
}

// ParseDomain reads a domain's XML as libvirt hands it to a hook (or as
// virDomainGetXMLDesc returns it). Elements it does not need are skipped
// unread, whatever they hold. Errors: input over MaxDomainXMLBytes, malformed
// XML, a root other than <domain> (or <domstatus> holding one), and a
// malformed gallium-net element or managed NIC; an unmanaged domain never
// fails on the contents of its devices.
func ParseDomain(data []byte) (*Domain, error) {
	p, err := parseDomain(data)
	if err != nil {
		return nil, err
	}
	return &p.dom, nil
}

// parsedDomain is a parsed domain plus the byte range of each <interface>
// element in the input, parallel to dom.NICs, for RewriteDomain.
type parsedDomain struct {
	dom   Domain
	spans []span
}

type span struct{ start, end int64 }

func parseDomain(data []byte) (*parsedDomain, error) {
	if len(data) > MaxDomainXMLBytes {
		return nil, fmt.Errorf("%w (got %d); this is not a libvirt domain", ErrDomainTooLarge, len(data))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("domain XML is empty")
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	root, err := findRoot(dec)
	if err != nil {
		return nil, err
	}
	if root.Name.Space == "" && root.Name.Local == "domstatus" {
		// libvirtd's status files wrap the live domain; accept them too.
		if root, err = findChild(dec, "domain"); err != nil {
			return nil, err
		}
	}
	if root.Name.Space != "" || root.Name.Local != "domain" {
		return nil, fmt.Errorf("domain XML: root element is <%s>, want <domain>", fullName(root.Name))
	}
	p := &parsedDomain{}
	nicErrs := map[int]error{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return p.finish(nicErrs)
		case xml.StartElement:
			if t.Name.Space != "" {
				if err := dec.Skip(); err != nil {
					return nil, malformed(err)
				}
				continue
			}
			switch t.Name.Local {
			case "name":
				if p.dom.Name, err = text(dec); err != nil {
					return nil, err
				}
			case "uuid":
				if p.dom.UUID, err = text(dec); err != nil {
					return nil, err
				}
			case "metadata":
				if err := p.metadata(dec); err != nil {
					return nil, err
				}
			case "devices":
				if err := p.devices(dec, nicErrs); err != nil {
					return nil, err
				}
			default:
				if err := dec.Skip(); err != nil {
					return nil, malformed(err)
				}
			}
		}
	}
}

func malformed(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("domain XML: malformed XML: unexpected end of input")
	}
	return fmt.Errorf("domain XML: malformed XML: %w", err)
}

// findRoot returns the first start element, skipping the prolog.
func findRoot(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, malformed(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, errors.New("domain XML: text before the root element")
			}
		}
	}
}

// findChild returns the next child element named local of the current
// element, skipping other children.
func findChild(dec *xml.Decoder, local string) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, malformed(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == "" && t.Name.Local == local {
				return t, nil
			}
			if err := dec.Skip(); err != nil {
				return xml.StartElement{}, malformed(err)
			}
		case xml.EndElement:
			return xml.StartElement{}, fmt.Errorf("domain XML: no <%s> element", local)
		}
	}
}

// text reads the character data of the element just opened, up to its end;
// child elements are skipped.
func text(dec *xml.Decoder) (string, error) {
	var b []byte
	for depth := 0; ; {
		tok, err := dec.Token()
		if err != nil {
			return "", malformed(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if depth == 0 {
				b = append(b, t...)
			}
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return strings.TrimSpace(string(b)), nil
			}
			depth--
		}
	}
}

// metadata reads <metadata>: the first gallium-net element counts (libvirt
// itself keeps only the first element of a namespace); others are skipped.
func (p *parsedDomain) metadata(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return malformed(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if p.dom.Meta == nil && isOurs(t.Name, false) {
				m, err := decodeMetadata(dec, &t)
				if err != nil {
					return fmt.Errorf("domain %s: %w", p.name(), err)
				}
				p.dom.Meta = m
				p.dom.Managed = true
				continue
			}
			if err := dec.Skip(); err != nil {
				return malformed(err)
			}
		}
	}
}

func (p *parsedDomain) name() string {
	if p.dom.Name != "" {
		return p.dom.Name
	}
	return "(unnamed)"
}

// devices reads <devices>, collecting every <interface> with its byte range.
func (p *parsedDomain) devices(dec *xml.Decoder, nicErrs map[int]error) error {
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return malformed(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if t.Name.Space != "" || t.Name.Local != "interface" {
				if err := dec.Skip(); err != nil {
					return malformed(err)
				}
				continue
			}
			nic, nicErr, err := readInterface(dec, &t)
			if err != nil {
				return err
			}
			if nicErr != nil {
				nicErrs[len(p.dom.NICs)] = nicErr
			}
			p.dom.NICs = append(p.dom.NICs, nic)
			p.spans = append(p.spans, span{start, dec.InputOffset()})
		}
	}
}

// readInterface reads an <interface> element whose start tag was just read.
// A malformed value (an MTU that is not a number) is returned as nicErr,
// which only counts when the NIC turns out to be managed.
func readInterface(dec *xml.Decoder, start *xml.StartElement) (nic NIC, nicErr error, err error) {
	nic.Type = attr(start, "type")
	for depth := 0; ; {
		tok, err := dec.Token()
		if err != nil {
			return nic, nil, malformed(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if depth == 0 {
				return nic, nicErr, nil
			}
			depth--
		case xml.StartElement:
			depth++
			if depth != 1 || t.Name.Space != "" {
				continue
			}
			switch t.Name.Local {
			case "mac":
				nic.MAC = strings.ToLower(attr(&t, "address"))
			case "source":
				nic.Network = attr(&t, "network")
				nic.Bridge = attr(&t, "bridge")
				nic.PortID = attr(&t, "portid")
			case "target":
				nic.Target = attr(&t, "dev")
			case "model":
				nic.Model = attr(&t, "type")
			case "alias":
				nic.Alias = attr(&t, "name")
			case "mtu":
				if s := attr(&t, "size"); s != "" {
					mtu, convErr := strconv.Atoi(s)
					if convErr != nil || mtu <= 0 || mtu > 65535 {
						nicErr = fmt.Errorf("<mtu size=%q> is not an MTU between 1 and 65535", s)
					} else {
						nic.MTU = mtu
					}
				}
			}
		}
	}
}

func attr(t *xml.StartElement, local string) string {
	for _, a := range t.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// finish marks managed NICs and reports problems of managed NICs.
func (p *parsedDomain) finish(nicErrs map[int]error) (*parsedDomain, error) {
	if p.dom.Meta == nil {
		return p, nil
	}
	for i := range p.dom.NICs {
		n := &p.dom.NICs[i]
		if n.MAC == "" || p.dom.Meta.NIC(n.MAC) == nil {
			continue
		}
		n.Managed = true
		if err := nicErrs[i]; err != nil {
			return nil, fmt.Errorf("domain %s: NIC %s: %w", p.name(), n.MAC, err)
		}
	}
	return p, nil
}

// RewriteDomain lets rewrite change the per-host values of each managed NIC
// of a managed domain (for the migrate and restore hooks, whose output
// replaces the domain XML): Type (network or bridge), Network, Bridge,
// Target, Model and MTU. rewrite returns whether it changed anything. Only
// the <interface> elements that really differ are re-serialised; the rest of
// the document is copied byte for byte. When nothing differs (or the domain
// is not managed) it returns the input itself and changed=false. Changing a
// NIC's MAC is an error.
func RewriteDomain(data []byte, rewrite func(*NIC) bool) ([]byte, bool, error) {
	p, err := parseDomain(data)
	if err != nil {
		return nil, false, err
	}
	if !p.dom.Managed || rewrite == nil {
		return data, false, nil
	}
	type edit struct {
		span
		text []byte
	}
	var edits []edit
	for i, old := range p.dom.NICs {
		if !old.Managed {
			continue
		}
		nic := old
		if !rewrite(&nic) {
			continue
		}
		nic.Managed = old.Managed // not an XML value
		if nic == old {
			continue
		}
		if !strings.EqualFold(nic.MAC, old.MAC) {
			return nil, false, fmt.Errorf("domain %s: NIC %s: a rewrite may not change the MAC (to %q)", p.name(), old.MAC, nic.MAC)
		}
		sp := p.spans[i]
		out, err := rewriteInterface(data[sp.start:sp.end], old, nic, indentBefore(data, sp.start))
		if err != nil {
			return nil, false, fmt.Errorf("domain %s: NIC %s: %w", p.name(), old.MAC, err)
		}
		edits = append(edits, edit{sp, out})
	}
	if len(edits) == 0 {
		return data, false, nil
	}
	var b bytes.Buffer
	b.Grow(len(data) + 256*len(edits))
	last := int64(0)
	for _, e := range edits {
		b.Write(data[last:e.start])
		b.Write(e.text)
		last = e.end
	}
	b.Write(data[last:])
	return b.Bytes(), true, nil
}

// indentBefore returns the whitespace between the line start and offset, so
// that a re-serialised element lines up with the original.
func indentBefore(data []byte, off int64) string {
	i := bytes.LastIndexByte(data[:off], '\n')
	ind := data[i+1 : off]
	if len(bytes.TrimLeft(ind, " \t")) != 0 {
		return ""
	}
	return string(ind)
}

// rewriteInterface applies the differences between old and nic to the
// <interface> element elem through libvirtxml, leaving everything else of the
// element as it was.
func rewriteInterface(elem []byte, old, nic NIC, indent string) ([]byte, error) {
	var iface libvirtxml.DomainInterface
	if err := iface.Unmarshal(string(elem)); err != nil {
		return nil, fmt.Errorf("parse <interface>: %w", err)
	}
	if nic.Type != old.Type || nic.Network != old.Network || nic.Bridge != old.Bridge || nic.PortID != old.PortID {
		switch nic.Type {
		case "network":
			src := &libvirtxml.DomainInterfaceSourceNetwork{Network: nic.Network, Bridge: nic.Bridge, PortID: nic.PortID}
			if iface.Source != nil && iface.Source.Network != nil && nic.Network == old.Network {
				src.PortGroup = iface.Source.Network.PortGroup
			}
			if nic.Network == "" {
				return nil, errors.New("type network needs a source network")
			}
			iface.Source = &libvirtxml.DomainInterfaceSource{Network: src}
		case "bridge":
			if nic.Bridge == "" {
				return nil, errors.New("type bridge needs a source bridge")
			}
			iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: nic.Bridge}}
		default:
			return nil, fmt.Errorf("cannot rewrite an interface to type %q (only network and bridge)", nic.Type)
		}
	}
	if nic.Target != old.Target {
		if nic.Target == "" {
			iface.Target = nil
		} else if iface.Target != nil {
			iface.Target.Dev = nic.Target
		} else {
			iface.Target = &libvirtxml.DomainInterfaceTarget{Dev: nic.Target}
		}
	}
	if nic.Model != old.Model {
		if nic.Model == "" {
			iface.Model = nil
		} else {
			iface.Model = &libvirtxml.DomainInterfaceModel{Type: nic.Model}
		}
	}
	if iface.MTU != nil && iface.MTU.Size == 0 {
		// <mtu/> without a size reads as no MTU; libvirtxml would write it
		// back as size="0", which nothing accepts.
		iface.MTU = nil
	}
	if nic.MTU != old.MTU {
		if nic.MTU < 0 || nic.MTU > 65535 {
			return nil, fmt.Errorf("MTU %d is out of range", nic.MTU)
		}
		if nic.MTU == 0 {
			iface.MTU = nil
		} else {
			iface.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(nic.MTU)}
		}
	}
	if nic.Alias != old.Alias {
		if nic.Alias == "" {
			iface.Alias = nil
		} else {
			iface.Alias = &libvirtxml.DomainAlias{Name: nic.Alias}
		}
	}
	out, err := xml.MarshalIndent(&iface, indent, "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal <interface>: %w", err)
	}
	// MarshalIndent prefixes the first line too; the original indentation
	// before the element is kept in the document.
	return bytes.TrimPrefix(out, []byte(indent)), nil
}
