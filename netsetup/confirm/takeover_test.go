package confirm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/netsetup/osnet"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// takeoverSetup is hv1 of examples/cluster.yaml on a simulated kernel with
// ifupdown holding eno1 and the management IP under a fresh root, and the
// commands Apply and a rollback would run recorded instead.
func takeoverSetup(t *testing.T) (k *netsetup.SimKernel, req Request, ran *[]string, orig []byte) {
	t.Helper()
	s, err := specfile.Load("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	desired, err := netsetup.Desired(s, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	k = netsetup.NewSimKernel(desired.Adapters()...)
	k.SeedAddr("eno1", "192.168.1.101/24")
	obs, _ := k.Observe()
	plan, err := netsetup.MakePlan(desired, obs)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	orig = []byte("auto lo\niface lo inet loopback\n\nallow-hotplug eno1\niface eno1 inet static\n  address 192.168.1.101/24\n")
	if err := os.MkdirAll(filepath.Join(root, "etc/network"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/network/interfaces"), orig, 0o640); err != nil {
		t.Fatal(err)
	}
	rel, err := osnet.PlanRelease(root, osnet.Target{Names: osnet.Interfaces(s, "hv1")}, map[osnet.Manager]bool{osnet.Ifupdown: true, osnet.Networkd: true, osnet.NetworkManager: true})
	if err != nil || len(rel.Edits) != 3 {
		t.Fatalf("release %+v: %v", rel, err)
	}
	ran = new([]string)
	old, oldActive := RunCommand, UnitActive
	RunCommand = func(argv []string) error { *ran = append(*ran, strings.Join(argv, " ")); return nil }
	// networkd runs; NetworkManager (its reload would be recorded) does not.
	UnitActive = func(unit string) bool { return unit == "systemd-networkd.service" }
	t.Cleanup(func() { RunCommand, UnitActive = old, oldActive })
	return k, Request{Store: Store{Dir: t.TempDir()}, Hypervisor: "hv1", Desired: desired, Observed: obs, Plan: plan, Takeover: rel, Root: root}, ran, orig
}

// files is what a test compares of the root: every file and its bytes.
func files(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out[strings.TrimPrefix(p, root)] = fi.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	return out
}

// A takeover writes its files and reloads before the plan, and a manual
// rollback puts every byte (and mode) back, removes the drop-in, restores
// the addresses and reloads the managers again.
func TestTakeoverAppliesAndRollsBackFiles(t *testing.T) {
	k, req, ran, _ := takeoverSetup(t)
	before := files(t, req.Root)
	if _, err := Apply(k, req); err != nil {
		t.Fatal(err)
	}
	after := files(t, req.Root)
	if !strings.Contains(after["/etc/network/interfaces"], "#gallium-net# iface eno1 inet static") || after["/etc/systemd/network/00-gallium-net.network"] == "" {
		t.Fatalf("after the takeover: %v", after)
	}
	if d := cmp.Diff([]string{"networkctl reload"}, *ran); d != "" {
		t.Errorf("reloads: %s", d)
	}
	ids := req.Store.IDs()
	if len(ids) != 1 {
		t.Fatalf("saved %v", ids)
	}
	if _, err := req.Store.RollbackNow(k, ids[0], nil); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, files(t, req.Root)); d != "" {
		t.Errorf("files after the rollback (-before +after):\n%s", d)
	}
	obs, _ := k.Observe()
	if l := obs.Link("eno1"); l == nil || !slices.Contains(l.Addrs, "192.168.1.101/24") || l.Master != "" {
		t.Errorf("eno1 after the rollback: %+v", l)
	}
	if len(*ran) != 2 {
		t.Errorf("the rollback did not reload the managers: %v", *ran)
	}
}

// When the plan fails, its undo puts the links back and the takeover puts
// the files back and reloads: nothing is left half taken over.
func TestTakeoverPlanFailurePutsFilesBack(t *testing.T) {
	k, req, ran, orig := takeoverSetup(t)
	before := files(t, req.Root)
	k.FailAt, k.FailErr = 3, errors.New("device busy")
	if _, err := Apply(k, req); err == nil || !strings.Contains(err.Error(), "device busy") {
		t.Fatalf("apply: %v", err)
	}
	if d := cmp.Diff(before, files(t, req.Root)); d != "" {
		t.Errorf("files (-before +after):\n%s", d)
	}
	if b, _ := os.ReadFile(filepath.Join(req.Root, "etc/network/interfaces")); string(b) != string(orig) {
		t.Errorf("interfaces: %q", b)
	}
	if d := cmp.Diff([]string{"networkctl reload", "networkctl reload"}, *ran); d != "" {
		t.Errorf("reloads: %s", d)
	}
	if len(req.Store.Armed()) != 0 {
		t.Errorf("still armed: %v", req.Store.Armed())
	}
}

// The saved state carries the files: a rollback run by another process (the
// detached timer) finds them in the store.
func TestTakeoverSavedWithThePendingState(t *testing.T) {
	k, req, _, _ := takeoverSetup(t)
	if _, err := Apply(k, req); err != nil {
		t.Fatal(err)
	}
	p, err := req.Store.Load(req.Store.IDs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Takeover == nil || len(p.Takeover.Edits) != 3 || p.Root != req.Root || p.Takeover.Edits[0].Mode != 0o640 {
		t.Fatalf("saved takeover: %+v root %q", p.Takeover, p.Root)
	}
}
