package netsetup

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/test/testenv"
)

// TestLabRenamedAdapter is issue 15's NIC rename on a real kernel: the
// lab VM's eth1 (a virtio NIC with a device in sysfs) is renamed ens9, as
// a firmware or kernel update renames a predictable name at boot, and the
// spec still says eth1 with its permanent MAC. The adapter check that
// `host check` and `host apply` run (CheckAdaptersIn over /sys/class/net)
// finds it under its new name and names the spec edit; the plan refuses
// and the host is left as it was; with the edit made the check passes.
func TestLabRenamedAdapter(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedKernel(t, "bonding")
	if !testenv.InLab() {
		t.Skip("renames a NIC of the host: only in a lab VM (GALLIUM_LAB=1)")
	}
	const sys = "/sys/class/net"
	raw, err := os.ReadFile(sys + "/eth1/address")
	if err != nil {
		t.Fatalf("the lab VM's eth1: %v", err)
	}
	mac := strings.TrimSpace(string(raw))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "eth1", "down")
	ip("link", "set", "eth1", "name", "ens9")
	t.Cleanup(func() {
		exec.Command("ip", "link", "set", "ens9", "name", "eth1").Run()
		exec.Command("ip", "link", "set", "eth1", "up").Run()
	})

	spec := &model.Spec{
		Cluster: model.Cluster{Name: "lab", Subnet: "10.78.0.0/24", VIP: "10.78.0.100", Evaluation: true},
		Hypervisors: []model.Hypervisor{{Name: "lab1", ManagementIP: "10.78.0.11/24",
			Adapters: []model.Adapter{{Name: "eth0"}, {Name: "eth1", MAC: mac}}}},
		AdapterGroups: []model.AdapterGroup{{Name: "infra", Infrastructure: true, Adapters: map[string][]string{"lab1": {"eth0", "eth1"}}}},
	}
	model.SetDefaults(spec)
	findings, _ := CheckAdaptersIn(spec, "lab1", SysfsReader(sys), ListAdapters(sys))
	var msg string
	for _, f := range findings.Errors() {
		if f.Path == "hypervisors[lab1].adapters[eth1]" {
			msg = f.Message
		}
	}
	for _, want := range []string{"mac " + mac, "the kernel now calls it ens9", "rename adapter eth1 to ens9 in the spec", "PermanentMACAddress=" + mac} {
		if !strings.Contains(msg, want) {
			t.Errorf("check of the renamed eth1: %q, want it to contain %q (all findings: %v)", msg, want, findings)
		}
	}

	// Apply refuses before any write: the host is as it was.
	k := &Counter{Kernel: NewNetlink()}
	before := observe(t, k)
	hs, err := Desired(spec, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Converge(k, hs, ApplyOptions{AllowDisruptive: true})
	if err == nil || !strings.Contains(err.Error(), "adapter eth1 does not exist") {
		t.Errorf("apply with the old name: plan %v, err %v; want the refusal that names eth1", p, err)
	}
	if after := observe(t, k); k.Writes != 0 || !reflect.DeepEqual(after.Restorable(), before.Restorable()) {
		t.Errorf("the refused apply changed the host (%d writes)", k.Writes)
	}

	// The edit the check names: the adapter is ens9 now, same MAC.
	spec.Hypervisors[0].Adapters[1].Name = "ens9"
	spec.AdapterGroups[0].Adapters["lab1"] = []string{"eth0", "ens9"}
	findings, _ = CheckAdaptersIn(spec, "lab1", SysfsReader(sys), ListAdapters(sys))
	for _, f := range findings.Errors() {
		t.Errorf("after the spec edit: %s: %s", f.Path, f.Message)
	}
}
