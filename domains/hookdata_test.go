package domains

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDomainManaged(t *testing.T) {
	cases := map[string]bool{
		"domain_managed_live.xml": true,
		"domain_4nics.xml":        true,
		"domain_migratable.xml":   true,
		"domain_unmanaged.xml":    false,
	}
	for file, want := range cases {
		d, err := ParseDomain(readTestdata(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if d.Managed != want {
			t.Errorf("%s: Managed = %v, want %v", file, d.Managed, want)
		}
	}
	// A URI spelled with character references is still our namespace.
	disguised := []byte(`<domain><metadata><g:net xmlns:g="https&#58;//gallium.dev/xmlns/gallium-net/1"/></metadata></domain>`)
	if d, err := ParseDomain(disguised); err != nil || !d.Managed {
		t.Fatalf("disguised URI: %+v %v", d, err)
	}
}

func TestParseNetworkHook(t *testing.T) {
	got, err := ParseNetworkHook(readTestdata(t, "networkhook_port_created.xml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &NetworkHookData{
		Network: NetworkDef{Name: "prod", UUID: "6cec7af7-271a-4edb-b6ce-3f73b0f90af8", ForwardMode: "bridge", Bridge: "gbr-vmgroup"},
		Port: &NetworkPort{UUID: "8c1b0f4e-5d2a-4b7c-9e3f-1a2b3c4d5e6f", OwnerName: "web-01", OwnerUUID: "3f1c2b6e-8d5a-4c3e-9b7f-2a1d0e6c5b4a",
			MAC: "52:54:00:4a:00:01", PlugType: "bridge", Bridge: "gbr-vmgroup"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hook data (-want +got):\n%s", diff)
	}
	if !got.Network.Owned() {
		t.Error("gallium network not owned")
	}

	got, err = ParseNetworkHook(readTestdata(t, "networkhook_started.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Port != nil || got.Network.VLAN != 100 || got.Network.Name != "prod" {
		t.Errorf("network-wide op: %+v", got)
	}
	// The live port of a network with native VLAN carries the tag.
	tagged := strings.Replace(string(readTestdata(t, "networkhook_port_created.xml")), "<plug", "<vlan><tag id='100'/></vlan><plug", 1)
	if got, err = ParseNetworkHook([]byte(tagged)); err != nil || got.Port.VLAN != 100 {
		t.Errorf("port VLAN: %+v %v", got, err)
	}
}

func TestParseNetworkHookErrors(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"empty":      {"", "empty"},
		"malformed":  {"<hookData><network>", "malformed"},
		"wrong root": {"<domain/>", "malformed"},
		"no network": {"<hookData/>", "no <network>"},
		"too large":  {"<hookData>" + strings.Repeat(" ", MaxDomainXMLBytes) + "</hookData>", "limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseNetworkHook([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
