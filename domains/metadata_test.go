package domains

import (
	"github.com/gallium/gallium-net/test/testenv"

	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testMeta = Metadata{
	Profile: "modern",
	NICs: []MetadataNIC{
		{MAC: "52:54:00:12:34:56", Network: "prod"},
		{MAC: "52:54:00:12:34:57", Network: "flat"},
	},
}

func TestMetadataGolden(t *testing.T) {
	cases := []struct {
		golden string
		m      Metadata
		ns     bool
	}{
		{"metadata_setmetadata.xml", testMeta, false},
		{"metadata_element.xml", testMeta, true},
		{"metadata_no_profile.xml", Metadata{NICs: []MetadataNIC{{MAC: "52:54:00:AA:00:01", Network: "backup"}}}, false},
		{"metadata_empty.xml", Metadata{}, true},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			xmlFn := c.m.XML
			if c.ns {
				xmlFn = c.m.ElementXML
			}
			got, err := xmlFn()
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, c.golden, got)

			back, err := ParseMetadata(got)
			if err != nil {
				t.Fatal(err)
			}
			want := normalizedMeta(c.m)
			if diff := cmp.Diff(&want, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func normalizedMeta(m Metadata) Metadata {
	out := Metadata{Profile: m.Profile}
	for _, n := range m.NICs {
		n.MAC = strings.ToLower(n.MAC)
		out.NICs = append(out.NICs, n)
	}
	return out
}

// The forms libvirt hands back: virDomainGetMetadata strips the namespace
// and indents; inside domain XML the element carries whatever prefix the
// last SetMetadata call used as its key.
func TestParseMetadataForms(t *testing.T) {
	forms := map[string]string{
		"virDomainGetMetadata": `<net>
  <profile>modern</profile>
  <nic mac="52:54:00:12:34:56" network="prod"/>
  <nic mac="52:54:00:12:34:57" network="flat"/>
</net>
`,
		"domain XML, gallium prefix": `<gallium:net xmlns:gallium="https://gallium.dev/xmlns/gallium-net/1">
      <gallium:profile>modern</gallium:profile>
      <gallium:nic mac="52:54:00:12:34:56" network="prod"/>
      <gallium:nic mac="52:54:00:12:34:57" network="flat"/>
    </gallium:net>`,
		"domain XML, other prefix":                           `<gnet:net xmlns:gnet='https://gallium.dev/xmlns/gallium-net/1'><gnet:profile>modern</gnet:profile><gnet:nic mac='52:54:00:12:34:56' network='prod'/><gnet:nic mac='52:54:00:12:34:57' network='flat'/></gnet:net>`,
		"default namespace":                                  `<net xmlns="https://gallium.dev/xmlns/gallium-net/1"><profile>modern</profile><nic mac="52:54:00:12:34:56" network="prod"/><nic mac="52:54:00:12:34:57" network="flat"/></net>`,
		"unbound gallium prefix":                             `<gallium:net><gallium:profile>modern</gallium:profile><gallium:nic mac="52:54:00:12:34:56" network="prod"/><gallium:nic mac="52:54:00:12:34:57" network="flat"/></gallium:net>`,
		"upper-case MACs, unknown children, XML declaration": `<?xml version="1.0"?><!-- by hand --><net><future x="1"><y/></future><profile> modern </profile><nic mac="52:54:00:12:34:56" network="prod" extra="ignored"/><nic mac="52:54:00:12:34:57" network="flat"/></net>`,
	}
	for name, in := range forms {
		t.Run(name, func(t *testing.T) {
			got, err := ParseMetadata(in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&testMeta, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMetadataErrors(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"empty":            {"", "empty"},
		"blank":            {"  \n", "empty"},
		"malformed":        {"<net><nic", "malformed"},
		"wrong namespace":  {`<x:net xmlns:x="https://example.com/other"/>`, "want <gallium:net"},
		"wrong element":    {`<network/>`, "want <gallium:net"},
		"text":             {`hello`, "text outside"},
		"bad MAC":          {`<net><nic mac="01:00:00:00:00:01" network="prod"/></net>`, "multicast"},
		"missing MAC":      {`<net><nic network="prod"/></net>`, `"" is not a MAC`},
		"missing network":  {`<net><nic mac="52:54:00:12:34:56"/></net>`, "has no network"},
		"duplicate MAC":    {`<net><nic mac="52:54:00:12:34:56" network="a"/><nic mac="52:54:00:12:34:56" network="b"/></net>`, "listed twice"},
		"trailing element": {`<net/><net/>`, "after the element"},
		"trailing text":    {`<net/>x`, "text after"},
		"too large":        {"<net>" + strings.Repeat(" ", MaxMetadataBytes) + "</net>", "limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseMetadata(c.in)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestMetadataXMLRefusesInvalid(t *testing.T) {
	for _, m := range []Metadata{
		{NICs: []MetadataNIC{{MAC: "nope", Network: "prod"}}},
		{NICs: []MetadataNIC{{MAC: "52:54:00:12:34:56"}}},
		{NICs: []MetadataNIC{{MAC: "52:54:00:12:34:56", Network: "a"}, {MAC: "52:54:00:12:34:56", Network: "b"}}},
	} {
		if _, err := m.XML(); err == nil {
			t.Errorf("XML() of %+v: no error", m)
		}
	}
}

func TestMetadataEscaping(t *testing.T) {
	m := Metadata{Profile: `a<b&"c"`, NICs: []MetadataNIC{{MAC: "52:54:00:12:34:56", Network: `n"<&>'`}}}
	for _, f := range []func() (string, error){m.XML, m.ElementXML} {
		s, err := f()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseMetadata(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if diff := cmp.Diff(&m, back); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
}

func TestMetadataNICEdits(t *testing.T) {
	var m Metadata
	if err := m.SetNIC("52:54:00:AA:00:01", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetNIC("52:54:00:aa:00:02", "flat"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetNIC("52:54:00:aa:00:01", "backup"); err != nil { // replaces
		t.Fatal(err)
	}
	want := []MetadataNIC{{"52:54:00:aa:00:01", "backup"}, {"52:54:00:aa:00:02", "flat"}}
	if diff := cmp.Diff(want, m.NICs); diff != "" {
		t.Errorf("NICs (-want +got):\n%s", diff)
	}
	if n := m.NIC("52:54:00:AA:00:02"); n == nil || n.Network != "flat" {
		t.Errorf("NIC lookup = %+v", n)
	}
	if err := m.SetNIC("fe:00:00:00:00:01", "prod"); err == nil {
		t.Error("SetNIC accepted a 0xFE MAC")
	}
	if err := m.SetNIC("52:54:00:aa:00:03", ""); err == nil {
		t.Error("SetNIC accepted an empty network")
	}
	if !m.RemoveNIC("52:54:00:AA:00:01") || m.RemoveNIC("52:54:00:aa:00:01") {
		t.Error("RemoveNIC did not remove exactly once")
	}
	if len(m.NICs) != 1 || m.NICs[0].MAC != "52:54:00:aa:00:02" {
		t.Errorf("NICs after remove = %+v", m.NICs)
	}
	var nilMeta *Metadata
	if nilMeta.NIC("52:54:00:aa:00:02") != nil {
		t.Error("nil metadata has a NIC")
	}
}
