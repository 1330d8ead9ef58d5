package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/boltstore"
)

// TestMACAllocateRelease drives mac allocate/release against a state file:
// the same NIC keeps its MAC, a release frees it.
func TestMACAllocateRelease(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, nil, 0o600)
	st := []string{"--state-file", filepath.Join(dir, "state.db"), "--config", cfg, "--hypervisor", "hv1", "--snapshot", filepath.Join(dir, "snap.json")}
	if _, errOut, code := run(t, append([]string{"spec", "push", "-f", example}, st...)...); code != 0 {
		t.Fatal(errOut)
	}
	alloc := func(key, network string) (string, int) {
		out, errOut, code := run(t, append([]string{"mac", "allocate", "--domain-uuid", "u1", "--key", key, "--network", network, "-o", "json"}, st...)...)
		if code != 0 {
			return errOut, code
		}
		var n store.NIC
		if err := json.Unmarshal([]byte(out), &n); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return n.MAC, 0
	}
	m1, code := alloc("net0", "prod")
	if code != 0 || !strings.HasPrefix(m1, "52:54:00:") {
		t.Fatalf("allocate: %s (exit %d)", m1, code)
	}
	if again, code := alloc("net0", "dev"); code != 0 || again != m1 {
		t.Errorf("second allocation for the same NIC gave %s (exit %d), want %s", again, code, m1)
	}
	if m2, code := alloc("net1", "prod"); code != 0 || m2 == m1 || !strings.HasPrefix(m2, "52:54:00:") {
		t.Errorf("another NIC got %s (exit %d), want a MAC other than %s", m2, code, m1)
	}
	if msg, code := alloc("net2", "nope"); code == 0 || !strings.Contains(msg, "not a network") {
		t.Errorf("unknown network: exit %d %s", code, msg)
	}
	snap, _ := os.ReadFile(filepath.Join(dir, "snap.json"))
	if !strings.Contains(string(snap), m1) {
		t.Errorf("host snapshot lacks the allocated MAC %s:\n%s", m1, snap)
	}
	if out, errOut, code := run(t, append([]string{"mac", "release", "--domain-uuid", "u1", "--key", "net0"}, st...)...); code != 0 || !strings.Contains(out, m1) {
		t.Fatalf("release: exit %d %s%s", code, out, errOut)
	}
	snap, _ = os.ReadFile(filepath.Join(dir, "snap.json"))
	if strings.Contains(string(snap), m1) {
		t.Errorf("host snapshot still lists the released MAC %s", m1)
	}
	// The snapshot cannot be written (its folder is a file): the MAC is
	// allocated all the same, so the command succeeds, prints it and warns
	// with the fix; a non-zero exit would tell a script it failed.
	os.WriteFile(filepath.Join(dir, "afile"), nil, 0o600)
	bad := append(st[:len(st):len(st)], "--snapshot", filepath.Join(dir, "afile", "snap.json"))
	out, errOut, code := run(t, append([]string{"mac", "allocate", "--domain-uuid", "u2", "--key", "net0", "--network", "prod"}, bad...)...)
	if code != 0 || !strings.Contains(out, "allocated for u2/net0") {
		t.Fatalf("allocation with a stale snapshot: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "is stored, but the hook's host snapshot") || !strings.Contains(errOut, "gallium-net state sync") {
		t.Errorf("no warning naming the fix:\n%s", errOut)
	}
	if _, errOut, code := run(t, append([]string{"state", "sync"}, bad...)...); code == 0 {
		t.Errorf("state sync must fail when it cannot write the snapshot:\n%s", errOut)
	}
}

// TestMACCheckImportLibvirt runs mac check and state import against
// libvirt's built-in test driver (test:///default: one domain "test" with
// one NIC, aa:bb:cc:dd:ee:ff), no daemon needed.
func TestMACCheckImportLibvirt(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, nil, 0o600)
	st := []string{"--state-file", filepath.Join(dir, "state.db"), "--config", cfg, "--hypervisor", "hv1"}
	lv := append([]string{"--connect", "test:///default"}, st...)
	if _, errOut, code := run(t, append([]string{"spec", "push", "-f", example, "--snapshot", filepath.Join(dir, "snap.json")}, st...)...); code != 0 {
		t.Fatal(errOut)
	}
	steps := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"check before import", []string{"mac", "check"}, 1, "unknown  aa:bb:cc:dd:ee:ff  test"},
		{"import", []string{"state", "import", "--snapshot", filepath.Join(dir, "snap.json")}, 0, "1 NICs imported, 0 already"},
		{"import again", []string{"state", "import", "--snapshot", filepath.Join(dir, "snap.json")}, 0, "0 NICs imported, 1 already"},
		{"check after import", []string{"mac", "check"}, 0, "ok: 1 NICs on this host"},
	}
	for _, s := range steps {
		out, errOut, code := run(t, append(s.args, lv...)...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) {
			t.Fatalf("%s: exit %d (want %d), output lacks %q:\n%s%s", s.name, code, s.wantCode, s.wantOut, out, errOut)
		}
	}
	// The same MAC in the ledger for another domain is a duplicate.
	// --snapshot: a release rewrites the host snapshot, which must not be
	// this machine's own (the e2e tier's hook reads that one).
	if _, errOut, code := run(t, append([]string{"mac", "release", "--domain-uuid", "6695eb01-f6a4-8304-79aa-97f2502e193f", "--key", "aa:bb:cc:dd:ee:ff", "--snapshot", filepath.Join(dir, "snap.json")}, st...)...); code != 0 {
		t.Fatalf("release: %s", errOut)
	}
	s := openTestStore(t, filepath.Join(dir, "state.db"))
	if _, _, err := s.ImportNIC(t.Context(), store.NIC{DomainUUID: "other-vm", Key: "net0", MAC: "aa:bb:cc:dd:ee:ff", Hypervisor: "hv2"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out, _, code := run(t, append([]string{"mac", "check"}, lv...)...)
	if code != 1 || !strings.Contains(out, "duplicate") || !strings.Contains(out, "other-vm") {
		t.Errorf("MAC owned by another domain in the ledger: exit %d\n%s", code, out)
	}
}

func openTestStore(t *testing.T, path string) *store.Store {
	t.Helper()
	b, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store.New(b)
}
