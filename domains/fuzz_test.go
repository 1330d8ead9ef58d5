package domains

import (
	"bytes"
	"path/filepath"
	"testing"
)

// FuzzParseDomain feeds arbitrary bytes to the hook's parser. It must never
// panic, and what it accepts must be consistent: managed NICs are listed in
// the metadata, an identity rewrite returns the input unchanged, and a real
// rewrite produces XML that parses back with the change applied. The seeds
// are testdata/fuzz/FuzzParseDomain plus the domain samples.
func FuzzParseDomain(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "domain_*.xml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no domain samples in testdata: %v", err)
	}
	for _, file := range files {
		f.Add(readTestdata(f, filepath.Base(file)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDomain(data)
		if err != nil {
			if d != nil {
				t.Fatalf("error %v with a non-nil domain", err)
			}
			return
		}
		if d.Managed != (d.Meta != nil) {
			t.Fatalf("Managed=%v but Meta=%v", d.Managed, d.Meta)
		}
		for _, n := range d.NICs {
			if n.Managed && d.Meta.NIC(n.MAC) == nil {
				t.Fatalf("NIC %s managed but not in the metadata", n.MAC)
			}
		}
		out, changed, err := RewriteDomain(data, func(*NIC) bool { return true })
		if err != nil || changed || !bytes.Equal(out, data) {
			t.Fatalf("identity rewrite: changed=%v err=%v, output equal=%v", changed, err, bytes.Equal(out, data))
		}
		out, changed, err = RewriteDomain(data, func(n *NIC) bool {
			if n.Type != "bridge" || n.Bridge == "gbr-fuzz" {
				return false
			}
			n.Bridge = "gbr-fuzz"
			return true
		})
		if err != nil || !changed {
			return // an <interface> libvirtxml cannot read is a clean error
		}
		d2, err := ParseDomain(out)
		if err != nil {
			t.Fatalf("rewritten XML does not parse: %v\n%s", err, out)
		}
		if len(d2.NICs) != len(d.NICs) {
			t.Fatalf("rewrite changed the NIC count from %d to %d\n%s", len(d.NICs), len(d2.NICs), out)
		}
		for i, n := range d2.NICs {
			if d.NICs[i].Managed && d.NICs[i].Type == "bridge" && n.Bridge != "gbr-fuzz" {
				t.Fatalf("NIC %d: bridge %q after rewrite, want gbr-fuzz\n%s", i, n.Bridge, out)
			}
		}
	})
}
