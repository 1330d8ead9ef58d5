package records

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// legacyFile is nics.json as the previous hook (format version 1) wrote it:
// a running domain with two NICs, one whose port was created but that does
// not run yet, and a running one whose UUID cannot be a file name.
const legacyFile = `{"version":1,"domains":{` +
	`"11111111-1111-1111-1111-111111111111":{"uuid":"11111111-1111-1111-1111-111111111111","name":"vm1","running":true,"nics":[` +
	`{"mac":"52:54:00:00:00:01","network":"flat","bridge":"gbr-vm","tap":"vnet0","mtu":1500,"portID":"p1"},` +
	`{"mac":"52:54:00:00:00:02","network":"prod","bridge":"gbr-vm","tap":"vnet1","vlan":100,"mtu":1500}]},` +
	`"22222222-2222-2222-2222-222222222222":{"uuid":"22222222-2222-2222-2222-222222222222","name":"vm2","running":false,"nics":[` +
	`{"mac":"52:54:00:00:00:03","network":"flat","bridge":"gbr-vm","mtu":1500}]},` +
	`"../evil":{"uuid":"../evil","name":"evil","running":true,"nics":[{"mac":"52:54:00:00:00:09","network":"flat"}]}}}
`

const (
	legacyUUID1 = "11111111-1111-1111-1111-111111111111"
	legacyUUID2 = "22222222-2222-2222-2222-222222222222"
)

func writeLegacy(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nics.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyConversion is the package upgrade on a host with running VMs:
// the first call converts nics.json, nothing is lost, the running domain's
// MACs are claimed, and nics.json is moved aside as nics.json.v1.
func TestLegacyConversion(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	writeLegacy(t, s.Dir, legacyFile)
	if !s.Exists() {
		t.Error("Exists is false with records of the previous layout")
	}
	st, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Domain{
		legacyUUID1: {UUID: legacyUUID1, Name: "vm1", Running: true, NICs: []NIC{
			{MAC: "52:54:00:00:00:01", Network: "flat", Bridge: "gbr-vm", Tap: "vnet0", MTU: 1500, PortID: "p1"},
			{MAC: "52:54:00:00:00:02", Network: "prod", Bridge: "gbr-vm", Tap: "vnet1", VLAN: 100, MTU: 1500},
		}},
		legacyUUID2: {UUID: legacyUUID2, Name: "vm2", NICs: []NIC{{MAC: "52:54:00:00:00:03", Network: "flat", Bridge: "gbr-vm", MTU: 1500}}},
	}
	if diff := cmp.Diff(want, st.Domains); diff != "" {
		t.Errorf("converted records (-want +got):\n%s", diff)
	}
	for mac, owner := range map[string]string{"52:54:00:00:00:01": legacyUUID1, "52:54:00:00:00:02": legacyUUID1, "52:54:00:00:00:03": ""} {
		if got := claimOwner(t, s, mac); got != owner {
			t.Errorf("claim of %s: %q, want %q", mac, got, owner)
		}
	}
	// A domain that starts now with vm1's MAC is refused: the converted
	// record counts as running.
	want1 := []Conflict{{MAC: "52:54:00:00:00:01", OwnerUUID: legacyUUID1, OwnerName: "vm1"}}
	if diff := cmp.Diff(want1, put(t, s, uuidOf(5), running("vm5", "52:54:00:00:00:01"), true)); diff != "" {
		t.Errorf("start with a converted domain's MAC (-want +got):\n%s", diff)
	}

	// Converted once: moved aside, the original kept.
	if _, err := os.Stat(s.legacyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nics.json still there after the conversion: %v", err)
	}
	if kept, err := os.ReadFile(s.legacyPath() + ".v1"); err != nil || string(kept) != legacyFile {
		t.Errorf("nics.json.v1 is not the original: %v\n%s", err, kept)
	}

	put(t, s, legacyUUID1, nil, false)
	if d, err := s.Get(legacyUUID1); err != nil || d != nil {
		t.Errorf("vm1 after it stopped: %+v, %v", d, err)
	}
}

// TestLegacyWrittenAgain: a hook of the previous version that runs after the
// conversion (it waited for the lock during the upgrade, or the package was
// rolled back) starts a new nics.json with what it saw: only its own
// change. The next call converts that too: a domain only nics.json has
// running is taken from it, a domain recorded in the new layout keeps its
// record, and nothing the previous hook did not see is lost.
func TestLegacyWrittenAgain(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	writeLegacy(t, s.Dir, legacyFile)
	if _, err := s.Read(); err != nil {
		t.Fatal(err)
	}
	// vm2 (a port only, in the new layout) was started by the previous
	// hook, and vm4 is new.
	writeLegacy(t, s.Dir, `{"version":1,"domains":{`+
		`"`+legacyUUID2+`":{"uuid":"`+legacyUUID2+`","name":"vm2","running":true,"nics":[{"mac":"52:54:00:00:00:03","network":"flat","tap":"vnet7"}]},`+
		`"`+uuidOf(4)+`":{"uuid":"`+uuidOf(4)+`","name":"vm4","running":false,"nics":[{"mac":"52:54:00:00:00:04","network":"flat"}]}}}`)
	st, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{uuidOf(4), legacyUUID1, legacyUUID2}, sortedKeys(st.Domains)); diff != "" {
		t.Errorf("domains after the second conversion (-want +got):\n%s", diff)
	}
	if d := st.Domains[legacyUUID2]; d == nil || !d.Running || d.NICs[0].Tap != "vnet7" {
		t.Errorf("vm2: %+v, want it running as the previous hook recorded", d)
	}
	if d := st.Domains[legacyUUID1]; d == nil || !d.Running || len(d.NICs) != 2 {
		t.Errorf("vm1: %+v, want its record kept", d)
	}
	if got := claimOwner(t, s, "52:54:00:00:00:03"); got != legacyUUID2 {
		t.Errorf("claim of vm2's MAC: %q", got)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestLegacyConversionKeepsNewerRecords: when nics.json appears next to
// records of this layout (a hook of the previous version that ran during the
// upgrade wrote it), the records of this layout win and the rest is taken.
func TestLegacyConversionKeepsNewerRecords(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	put(t, s, legacyUUID1, running("vm1-new", "52:54:00:00:00:05"), true)
	writeLegacy(t, s.Dir, legacyFile)
	st, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Domains[legacyUUID1]; d == nil || d.Name != "vm1-new" || len(d.NICs) != 1 {
		t.Errorf("vm1 after the conversion: %+v, want the newer record", d)
	}
	if st.Domains[legacyUUID2] == nil {
		t.Errorf("vm2 not converted: %+v", st.Domains)
	}
	if got := claimOwner(t, s, "52:54:00:00:00:01"); got != "" {
		t.Errorf("a MAC of the superseded record is claimed by %q", got)
	}
}

func TestLegacyCorruptIsSetAside(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	writeLegacy(t, s.Dir, `{"version":1,"domains":{`)
	put(t, s, uuidOf(1), running("vm1", "52:54:00:00:00:01"), true)
	if data, err := os.ReadFile(s.legacyPath() + ".corrupt"); err != nil || string(data) != `{"version":1,"domains":{` {
		t.Errorf("corrupt nics.json not set aside: %v %q", err, data)
	}
	if _, err := os.Stat(s.legacyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nics.json after setting the corrupt one aside: %v", err)
	}
	if d, err := s.Get(uuidOf(1)); err != nil || d == nil {
		t.Errorf("record after the conversion: %+v, %v", d, err)
	}
}

// TestLegacyConversionWaitsForThePreviousHook: the conversion takes the
// previous hook's lock, so it never reads nics.json halfway through a change
// by a hook of the previous version; while that lock is held nothing is
// converted and the call gives up after the timeout.
func TestLegacyConversionWaitsForThePreviousHook(t *testing.T) {
	s := Store{Dir: t.TempDir(), LockTimeout: 100 * time.Millisecond}
	writeLegacy(t, s.Dir, legacyFile)
	release := holdFlock(t, s.legacyLockPath())
	if _, err := s.Open(uuidOf(1)); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Open while the previous hook holds its lock: %v, want ErrLockTimeout", err)
	}
	if _, err := os.Stat(s.domainsDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("records written while the previous hook held its lock: %v", err)
	}
	release()
	if d, err := s.Get(legacyUUID1); err != nil || d == nil {
		t.Fatalf("vm1 after the lock was released: %+v, %v", d, err)
	}
}
