package vmnet

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
)

func TestAllocateMAC(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		used    map[string]bool
		rnd     []byte
		want    string
		wantErr string
	}{
		{name: "default prefix", prefix: model.DefaultMACPrefix, rnd: []byte{1, 2, 3}, want: "52:54:00:01:02:03"},
		{name: "spec prefix", prefix: "02:aa:bb:cc", rnd: []byte{9, 8}, want: "02:aa:bb:cc:09:08"},
		{name: "skips a used MAC", prefix: "52:54:00", rnd: []byte{1, 2, 3, 4, 5, 6}, used: map[string]bool{"52:54:00:01:02:03": true}, want: "52:54:00:04:05:06"},
		{name: "multicast prefix refused", prefix: "01:00:5e", wantErr: "multicast"},
		{name: "fe prefix refused", prefix: "fe:54", wantErr: "libvirt refuses"},
		{name: "malformed prefix", prefix: "52:zz", wantErr: "not hex bytes"},
		{name: "too long prefix", prefix: "52:54:00:01:02:03", wantErr: "1 to 5 bytes"},
		{name: "a random pick that is taken moves on to a free one", prefix: "52:54:00:01:02", rnd: bytes.Repeat([]byte{7}, 4096),
			used: map[string]bool{"52:54:00:01:02:07": true}, want: "52:54:00:01:02:08"},
		{name: "full range is an error, not a hang", prefix: "52:54:00:01:02", rnd: bytes.Repeat([]byte{7}, 4096),
			used: fullRange("52:54:00:01:02"), wantErr: "all 256 MAC addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateMAC(tt.prefix, tt.used, bytes.NewReader(tt.rnd))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("allocateMAC = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func fullRange(prefix string) map[string]bool {
	used := map[string]bool{}
	for i := range 256 {
		used[fmt.Sprintf("%s:%02x", prefix, i)] = true
	}
	return used
}

func TestCheckMAC(t *testing.T) {
	used := map[string]bool{"52:54:00:00:00:01": true}
	tests := []struct{ in, want, wantErr string }{
		{"52:54:00:AA:BB:CC", "52:54:00:aa:bb:cc", ""},
		{"52:54:00:00:00:01", "", "already used"},
		{"fe:54:00:00:00:02", "", "libvirt refuses"},
		{"01:00:5e:00:00:01", "", "multicast"},
		{"nonsense", "", `--mac: "nonsense" is not a MAC`},
	}
	for _, tt := range tests {
		got, err := CheckMAC(tt.in, used)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckMAC(%s) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CheckMAC(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestUsedMACs(t *testing.T) {
	cfg, err := domains.ParseDomain([]byte(`<domain><name>a</name><metadata><gallium:net xmlns:gallium="` + domains.MetadataNamespace + `"><gallium:nic mac="52:54:00:00:00:09" network="n"/></gallium:net></metadata><devices><interface type="network"><mac address="52:54:00:00:00:01"/></interface></devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	live, err := domains.ParseDomain([]byte(`<domain><name>a</name><devices><interface type="network"><mac address="52:54:00:00:00:02"/></interface></devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	snap := &snapshot.Host{NICs: []snapshot.NIC{{MAC: "52:54:00:00:00:03"}}}
	used := UsedMACs([]*Domain{{Config: cfg, Live: live}}, snap)
	for _, m := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:09"} {
		if !used[m] {
			t.Errorf("%s not counted as used: %v", m, used)
		}
	}
	if len(used) != 4 {
		t.Errorf("used = %v, want 4 MACs", used)
	}
}

func TestCompareMACs(t *testing.T) {
	ledger := []store.NIC{
		{DomainUUID: "u1", Key: "k", Domain: "web1", MAC: "52:54:00:00:00:01", Hypervisor: "hv1"},
		{DomainUUID: "u2", Key: "k", Domain: "db1", MAC: "52:54:00:00:00:02", Hypervisor: "hv2"},
		{DomainUUID: "u3", Key: "k", Domain: "gone", MAC: "52:54:00:00:00:03", Hypervisor: "hv1"},
	}
	cases := []struct {
		name string
		host []HostNIC
		want []string // "kind mac domain"
	}{
		{"all known", []HostNIC{{Domain: "web1", UUID: "u1", MAC: "52:54:00:00:00:01"}}, []string{"missing 52:54:00:00:00:03 gone"}},
		{"unknown", []HostNIC{{Domain: "web1", UUID: "u1", MAC: "52:54:00:00:00:01"}, {Domain: "new", UUID: "u9", MAC: "52:54:00:00:00:09"}},
			[]string{"unknown 52:54:00:00:00:09 new", "missing 52:54:00:00:00:03 gone"}},
		{"ledger gives it to another domain", []HostNIC{{Domain: "copy", UUID: "u8", MAC: "52:54:00:00:00:02"}, {Domain: "gone", UUID: "u3", MAC: "52:54:00:00:00:03"}},
			[]string{"duplicate 52:54:00:00:00:02 copy", "missing 52:54:00:00:00:01 web1"}},
		{"twice on this host", []HostNIC{{Domain: "web1", UUID: "u1", MAC: "52:54:00:00:00:01"}, {Domain: "clone", UUID: "u7", MAC: "52:54:00:00:00:01"}, {Domain: "gone", UUID: "u3", MAC: "52:54:00:00:00:03"}},
			[]string{"duplicate 52:54:00:00:00:01 web1", "duplicate 52:54:00:00:00:01 clone"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, f := range CompareMACs(c.host, ledger, "hv1") {
				got = append(got, f.Kind+" "+f.MAC+" "+f.Domain)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}
