package netsetup

import (
	"fmt"
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
	return f
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
