package netsetup

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// DefaultSysfs is where the kernel publishes link facts.
const DefaultSysfs = "/sys/class/net"

// MinInfraSpeedMbps is the least speed of an infrastructure adapter in
// production.
const MinInfraSpeedMbps = 10000

// AdapterFacts is what the host says about one adapter.
type AdapterFacts struct {
	Name      string `json:"name" yaml:"name"`
	Exists    bool   `json:"exists" yaml:"exists"`
	Carrier   bool   `json:"carrier" yaml:"carrier"`
	OperState string `json:"operState,omitempty" yaml:"operState,omitempty"`
	// SpeedMbps is -1 when the kernel does not know (virtual NICs, no link).
	SpeedMbps int `json:"speedMbps" yaml:"speedMbps"`
	// MAC is the permanent MAC (a bond slave's perm_hwaddr), PCIPath the
	// PCI address of the device; "" when unknown.
	MAC     string `json:"mac,omitempty" yaml:"mac,omitempty"`
	PCIPath string `json:"pciPath,omitempty" yaml:"pciPath,omitempty"`
}

// ReadAdapter reads an adapter's facts from sysfs under root
// (/sys/class/net on a host; a directory tree in tests).
func ReadAdapter(root, name string) AdapterFacts {
	f := AdapterFacts{Name: name, SpeedMbps: -1}
	dir := filepath.Join(root, name)
	if _, err := os.Stat(dir); err != nil {
		return f
	}
	f.Exists = true
	f.Carrier = readSys(dir, "carrier") == "1"
	f.OperState = readSys(dir, "operstate")
	// speed reads -1 (or fails with EINVAL) when unknown or without carrier.
	if n, err := strconv.Atoi(readSys(dir, "speed")); err == nil && n > 0 {
		f.SpeedMbps = n
	}
	for _, file := range []string{"bonding_slave/perm_hwaddr", "address"} {
		if m, err := net.ParseMAC(readSys(dir, file)); err == nil {
			f.MAC = m.String()
			break
		}
	}
	if dev, err := os.Readlink(filepath.Join(dir, "device")); err == nil {
		if b := filepath.Base(dev); model.IsPCIPath(b) == nil {
			f.PCIPath = b
		}
	}
	return f
}

// ListAdapters reads the facts of every link under root that has a device
// (a NIC, not a bond, bridge or tap).
func ListAdapters(root string) []AdapterFacts {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []AdapterFacts
	for _, e := range ents {
		if _, err := os.Lstat(filepath.Join(root, e.Name(), "device")); err == nil {
			out = append(out, ReadAdapter(root, e.Name()))
		}
	}
	return out
}

// identityFindings compares the spec's identity of adapter a (mac,
// pciPath) with what the host has: the NIC under that name, and every NIC
// (all) to find one the kernel renamed. It returns the error to report
// instead of the plain "does not exist" one, or "".
func identityFindings(hv, group string, a *model.Adapter, f AdapterFacts, all []AdapterFacts) string {
	if a == nil || (a.MAC == "" && a.PCIPath == "") {
		return ""
	}
	same := func(x AdapterFacts) bool {
		return (a.MAC == "" || strings.EqualFold(a.MAC, x.MAC)) && (a.PCIPath == "" || strings.EqualFold(a.PCIPath, x.PCIPath))
	}
	id := identityText(a)
	var now string
	for _, x := range all {
		if x.Name != a.Name && same(x) {
			now = x.Name
		}
	}
	rename := ""
	if now != "" {
		rename = fmt.Sprintf("; fix: rename adapter %[1]s to %[2]s in the spec (hypervisors[%[3]s].adapters and adapterGroups[%[4]s].adapters.%[3]s), run 'gallium-net spec push' and 'gallium-net host apply'; or keep the name %[1]s with a systemd .link file (/etc/systemd/network/10-%[1]s.link: [Match] %[5]s, [Link] Name=%[1]s) and reboot", a.Name, now, hv, group, linkMatch(a))
	}
	switch {
	case !f.Exists && now != "":
		return fmt.Sprintf("adapter %s of hypervisor %s is not here under that name, but its NIC (%s) is: the kernel now calls it %s (a firmware or kernel update renames predictable names)%s", a.Name, hv, id, now, rename)
	case !f.Exists:
		return fmt.Sprintf("adapter %s of hypervisor %s does not exist on this host, and no NIC has its identity (%s): the NIC is gone or not detected; check 'ip link' and the hardware", a.Name, hv, id)
	case (a.MAC != "" && f.MAC != "" && !strings.EqualFold(a.MAC, f.MAC)) || (a.PCIPath != "" && f.PCIPath != "" && !strings.EqualFold(a.PCIPath, f.PCIPath)):
		if now == "" {
			return fmt.Sprintf("adapter %s of hypervisor %s is another NIC than the spec's (%s here, the spec says %s), and no NIC here has the spec's identity; fix the adapter's mac/pciPath in the spec or check the hardware", a.Name, hv, identityText(&model.Adapter{MAC: f.MAC, PCIPath: f.PCIPath}), id)
		}
		return fmt.Sprintf("adapter %s of hypervisor %s is another NIC than the spec's (%s here, the spec says %s): the spec's NIC is now called %s%s", a.Name, hv, identityText(&model.Adapter{MAC: f.MAC, PCIPath: f.PCIPath}), id, now, rename)
	}
	return ""
}

func identityText(a *model.Adapter) string {
	var p []string
	if a.MAC != "" {
		p = append(p, "mac "+strings.ToLower(a.MAC))
	}
	if a.PCIPath != "" {
		p = append(p, "pciPath "+strings.ToLower(a.PCIPath))
	}
	return strings.Join(p, ", ")
}

func linkMatch(a *model.Adapter) string {
	if a.MAC != "" {
		return "PermanentMACAddress=" + strings.ToLower(a.MAC)
	}
	return "Path=pci-" + strings.ToLower(a.PCIPath)
}

func readSys(dir, file string) string {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// CheckAdapters checks hypervisor hv's adapters as the host reports them:
// a missing adapter is an error; an infrastructure adapter under 10 Gbps is
// an error (a warning in evaluation mode); an unknown speed (virtual NICs)
// is a warning; so is a speed that differs from the one the spec declares
// and an adapter without carrier.
func CheckAdapters(spec *model.Spec, hv string, read func(name string) AdapterFacts) (model.Findings, []AdapterFacts) {
	return CheckAdaptersIn(spec, hv, read, nil)
}

// CheckAdaptersIn is CheckAdapters that also knows every NIC of the host
// (ListAdapters): an adapter with a mac or pciPath in the spec is found
// under its new name when the kernel renamed it, and the error says which
// edit to make; one whose name now belongs to another NIC is an error too.
func CheckAdaptersIn(spec *model.Spec, hv string, read func(name string) AdapterFacts, all []AdapterFacts) (model.Findings, []AdapterFacts) {
	h := spec.Hypervisor(hv)
	if h == nil {
		return model.Findings{{Severity: model.SeverityError, Path: "hypervisors", Message: fmt.Sprintf("hypervisor %q is not in the cluster spec", hv)}}, nil
	}
	infra := map[string]bool{}
	if g := spec.InfrastructureGroup(); g != nil {
		for _, a := range g.Adapters[hv] {
			infra[a] = true
		}
	}
	var out model.Findings
	var facts []AdapterFacts
	add := func(sev model.Severity, adapter, msg string) {
		out = append(out, model.Finding{Severity: sev, Path: fmt.Sprintf("hypervisors[%s].adapters[%s]", hv, adapter), Message: msg})
	}
	for _, g := range spec.GroupsOn(hv) {
		for _, name := range g.Adapters[hv] {
			f := read(name)
			facts = append(facts, f)
			if msg := identityFindings(hv, g.Name, h.Adapter(name), f, all); msg != "" {
				add(model.SeverityError, name, msg)
				continue
			}
			if !f.Exists {
				add(model.SeverityError, name, fmt.Sprintf("adapter %s of hypervisor %s does not exist on this host; check the NIC name (ip link) or fix the spec", name, hv))
				continue
			}
			if !f.Carrier {
				add(model.SeverityWarning, name, fmt.Sprintf("adapter %s has no carrier (cable or switch port down)", name))
			}
			declared := 0
			if a := h.Adapter(name); a != nil {
				declared = a.SpeedMbps
			}
			switch {
			case f.SpeedMbps < 0:
				add(model.SeverityWarning, name, fmt.Sprintf("adapter %s does not report its speed (a virtual NIC, or no link); cannot check the %d Mbps minimum", name, MinInfraSpeedMbps))
			case infra[name] && f.SpeedMbps < MinInfraSpeedMbps:
				sev, tail := model.SeverityError, "; an infrastructure adapter needs at least 10 Gbps (evaluation mode allows less)"
				if spec.Cluster.Evaluation {
					sev, tail = model.SeverityWarning, "; allowed in evaluation mode, not supported for production"
				}
				add(sev, name, fmt.Sprintf("infrastructure adapter %s runs at %d Mbps%s", name, f.SpeedMbps, tail))
			}
			if declared > 0 && f.SpeedMbps > 0 && declared != f.SpeedMbps {
				add(model.SeverityWarning, name, fmt.Sprintf("adapter %s runs at %d Mbps, the spec says %d", name, f.SpeedMbps, declared))
			}
		}
	}
	return out, facts
}

// SysfsReader returns a reader of adapter facts under root.
func SysfsReader(root string) func(string) AdapterFacts {
	return func(name string) AdapterFacts { return ReadAdapter(root, name) }
}
