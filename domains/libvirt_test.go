package domains

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/test/testenv"
)

// virshTest runs one virsh session against libvirt's in-process test driver
// (test:///default: no daemon, no root, state lives for that one session),
// so that libvirt's own XML parser and formatter check what this package
// writes and reads. The commands are separated by ";" and their outputs are
// returned split at "echo @@" markers.
func virshTest(t *testing.T, cmds ...string) []string {
	t.Helper()
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		if testenv.Strict() {
			t.Fatal("virsh not found; test/setup/deps.sh installs libvirt-clients")
		}
		t.Skip("virsh not found (Debian package libvirt-clients); make test installs it")
	}
	out, err := exec.Command(virsh, "-q", "-c", "test:///default", strings.Join(cmds, "; echo @@; ")).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh: %v\n%s", err, out)
	}
	return strings.Split(string(out), "@@")
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLibvirtAcceptsNetworkXML(t *testing.T) {
	s := testSpec(t)
	for _, native := range []bool{false, true} {
		for _, name := range []string{"prod", "flat", "backup"} {
			want, err := NetworkXML(s, name, "hv1", NetworkOptions{NativeVLAN: native})
			if err != nil {
				t.Fatal(err)
			}
			out := virshTest(t, "net-define "+writeTemp(t, "net.xml", want), "net-dumpxml "+name)
			if len(out) != 2 {
				t.Fatalf("virsh output: %q", out)
			}
			have := out[1]
			owned, err := OwnedNetworkXML(have)
			if err != nil || !owned {
				t.Errorf("%s (native %v): libvirt's XML not recognised as owned (%v):\n%s", name, native, err, have)
			}
			drift, diffs, err := NetworkDrift(want, have)
			if err != nil || drift {
				t.Errorf("%s (native %v): drift after a plain define: %v %q\nwant:\n%s\nhave:\n%s", name, native, err, diffs, want, have)
			}
		}
	}
}

// The full cycle the CLI and the hook go through: the CLI attaches NICs from
// InterfaceXML and records them with virDomainSetMetadata(XML(), uri,
// "gallium"); libvirt formats the running domain, which the hook parses.
func TestLibvirtDomainRoundTrip(t *testing.T) {
	s := testSpec(t)
	meta := Metadata{Profile: "modern"}
	var devs strings.Builder
	nets := []string{"prod", "flat", "backup"}
	macs := []string{"52:54:00:40:00:01", "52:54:00:40:00:02", "52:54:00:40:00:03"}
	for i := range nets {
		x, err := InterfaceXML(s, nets[i], "", macs[i])
		if err != nil {
			t.Fatal(err)
		}
		devs.WriteString(x + "\n")
		if err := meta.SetNIC(macs[i], nets[i]); err != nil {
			t.Fatal(err)
		}
	}
	// One NIC that gallium-net does not manage.
	devs.WriteString(`<interface type='bridge'><mac address='52:54:00:40:00:99'/><source bridge='br0'/></interface>`)
	dom := "<domain type='test'><name>gtest</name><memory unit='KiB'>1048576</memory><os><type>hvm</type></os><devices>\n" +
		devs.String() + "</devices></domain>"
	set, err := meta.XML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(set, "'") {
		t.Fatalf("metadata %s cannot be quoted for virsh", set)
	}
	out := virshTest(t,
		"define "+writeTemp(t, "dom.xml", dom),
		"metadata gtest --uri "+MetadataNamespace+" --key "+MetadataPrefix+" --set '"+set+"'",
		"start gtest",
		"dumpxml gtest",
		"metadata gtest --uri "+MetadataNamespace,
		// libvirt rewrites the prefix to the key of the last SetMetadata.
		"metadata gtest --uri "+MetadataNamespace+" --key gnet --set '"+set+"'",
		"dumpxml gtest",
	)
	if len(out) != 7 {
		t.Fatalf("virsh output: %q", out)
	}
	for _, live := range []string{out[3], out[6]} {
		d, err := ParseDomain([]byte(live))
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		if diff := cmp.Diff(&meta, d.Meta); !d.Managed || diff != "" {
			t.Errorf("metadata as libvirt formats it: managed=%v, meta (-want +got):\n%s\n%s", d.Managed, diff, live)
		}
		if len(d.NICs) != 4 {
			t.Fatalf("%d NICs, want 4:\n%s", len(d.NICs), live)
		}
		for i := range nets {
			n := d.NICs[i]
			if !n.Managed || n.MAC != macs[i] || n.Network != nets[i] || n.Type != "network" || n.Model != "e1000" || n.Target == "" {
				t.Errorf("NIC %d = %+v", i, n)
			}
		}
		if d.NICs[2].MTU != 9000 || d.NICs[0].MTU != 0 {
			t.Errorf("MTUs %d, %d; want 0, 9000", d.NICs[0].MTU, d.NICs[2].MTU)
		}
		if d.NICs[3].Managed {
			t.Errorf("unlisted NIC is managed: %+v", d.NICs[3])
		}
	}
	if !strings.Contains(out[6], "<gnet:net xmlns:gnet=") {
		t.Errorf("expected libvirt to use the new key as prefix:\n%s", out[6])
	}
	got, err := ParseMetadata(out[4])
	if err != nil {
		t.Errorf("virDomainGetMetadata form: %v\n%s", err, out[4])
	} else if diff := cmp.Diff(&meta, got); diff != "" {
		t.Errorf("virDomainGetMetadata form (-want +got):\n%s\n%s", diff, out[4])
	}
}

// The hand-written samples are XML libvirt (Debian 12's 9.0) accepts, and so
// is RewriteDomain's output; libvirt's re-formatting of them parses to the
// same NICs and metadata.
func TestLibvirtAcceptsSamples(t *testing.T) {
	rewritten, _, err := RewriteDomain(readTestdata(t, "domain_managed_live.xml"), func(n *NIC) bool {
		n.Type, n.Bridge, n.Network, n.PortID, n.MTU = "bridge", "gbr-other", "", "", 1400
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string][]byte{"rewritten live domain": rewritten}
	for _, f := range []string{"domain_managed_live.xml", "domain_unmanaged.xml", "domain_4nics.xml", "domain_migratable.xml", "rewrite_migratable_bridge.xml"} {
		samples[f] = readTestdata(t, f)
	}
	for name, data := range samples {
		t.Run(name, func(t *testing.T) {
			want, err := ParseDomain(data)
			if err != nil {
				t.Fatal(err)
			}
			// The test driver only takes domains of type test; live-only
			// attributes (id) go too.
			doc := string(data)
			i := strings.Index(doc, "<domain ")
			j := strings.Index(doc[i:], ">")
			doc = doc[:i] + "<domain type='test'" + doc[i+j:]
			out := virshTest(t, "define "+writeTemp(t, "dom.xml", doc), "dumpxml --inactive "+want.Name)
			if len(out) != 2 {
				t.Fatalf("virsh output: %q", out)
			}
			got, err := ParseDomain([]byte(out[1]))
			if err != nil {
				t.Fatalf("%v\n%s", err, out[1])
			}
			if got.Name != want.Name || got.Managed != want.Managed || !reflect.DeepEqual(got.Meta, want.Meta) || len(got.NICs) != len(want.NICs) {
				t.Fatalf("libvirt's formatting parses differently:\n got %+v\nwant %+v\n%s", got, want, out[1])
			}
			for i := range want.NICs {
				g, w := got.NICs[i], want.NICs[i]
				// Runtime-only values are not in inactive XML.
				g.Target, g.Alias, g.PortID, w.Target, w.Alias, w.PortID = "", "", "", "", "", ""
				if w.Type == "network" {
					g.Bridge, w.Bridge = "", ""
				}
				if g != w {
					t.Errorf("NIC %d: libvirt has %+v, sample has %+v", i, g, w)
				}
			}
		})
	}
}
