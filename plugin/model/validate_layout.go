package model

import (
	"fmt"
	"strings"
)

// Rules on each hypervisor's layout: the production requirements of
// DESIGN.md section 1 (at least 4 adapters; an infrastructure group with at
// least 2 adapters of at least 10 Gbps; a VM group with at least 2 adapters)
// and evaluation mode, which relaxes them to warnings.

// layoutProblem is one way a hypervisor falls short of production: an
// error in production, part of one warning in evaluation mode.
type layoutProblem struct {
	path  string
	msg   string // the whole error message (production)
	short string // a clause for the evaluation-mode summary
}

// checkLayout: per hypervisor, it has adapters and the infrastructure group
// (always required: the management IP lives there); in production it meets
// every production rule (errors); in evaluation mode each hypervisor that
// does not is one warning saying it is not supported for production.
func checkLayout(v *validator) {
	eval := v.s.Cluster.Evaluation
	short := 0 // hypervisors that fall short of production
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if !v.firstHV(h) {
			continue
		}
		path := hvPath(h, i)
		if len(h.Adapters) == 0 {
			v.errorf(path+".adapters", "hypervisor %s has no adapters: list its network adapters (the names ip link shows), for example adapters: [{name: eno1, speedMbps: 10000}]", show(h.Name))
			continue
		}
		var infra *membership
		var vm []membership
		for _, m := range v.members[h.Name] {
			switch {
			case m.group == v.infra:
				infra = &m
			case !m.group.Infrastructure:
				vm = append(vm, m)
			}
		}
		if v.infra != nil && infra == nil {
			v.errorf(groupAdaptersPath(v.infra, v.infraIdx, h.Name), "the infrastructure group %s has no adapters on hypervisor %s: it must be on every hypervisor (it carries the management IP and cluster traffic); add %s: [...] with %s's infrastructure adapters", show(v.infra.Name), show(h.Name), pathName(h.Name), pathName(h.Name))
		}
		problems := v.productionProblems(h, path, infra, vm)
		if len(problems) == 0 {
			continue
		}
		short++
		if !eval {
			for _, p := range problems {
				v.errorf(p.path, "%s", p.msg)
			}
			continue
		}
		clauses := make([]string, len(problems))
		for j, p := range problems {
			clauses[j] = p.short
		}
		v.warnf(path, "evaluation mode: hypervisor %s is not supported for production: %s. This is fine for evaluation; for production give it 2 infrastructure adapters of at least 10 Gbps and 2 VM adapters, and set cluster.evaluation: false",
			show(h.Name), strings.Join(clauses, "; "))
	}
	if eval && short == 0 && len(v.s.Hypervisors) > 0 {
		v.warnf("cluster.evaluation", "evaluation mode is on (not supported for production), but every hypervisor meets the production rules: set cluster.evaluation: false")
	}
}

// productionProblems lists how hypervisor h falls short of production.
func (v *validator) productionProblems(h *Hypervisor, path string, infra *membership, vm []membership) []layoutProblem {
	var out []layoutProblem
	hv := show(h.Name)
	if n := len(h.Adapters); n < ProductionMinAdapters {
		out = append(out, layoutProblem{
			path:  path + ".adapters",
			msg:   fmt.Sprintf("hypervisor %s has %d adapter(s), but a production hypervisor needs at least %d (2 for the infrastructure group, 2 for a VM group): add adapters, or set cluster.evaluation: true for a test setup (not supported for production)", hv, n, ProductionMinAdapters),
			short: fmt.Sprintf("it has %d adapter(s) (production needs at least %d)", n, ProductionMinAdapters),
		})
	}
	if infra != nil {
		g := infra.group
		if n := len(infra.adapters); n < 2 {
			out = append(out, layoutProblem{
				path:  groupAdaptersPath(g, infra.gi, h.Name),
				msg:   fmt.Sprintf("the infrastructure group %s has %d adapter on %s, but needs at least 2 for failover: add a second adapter of at least 10 Gbps", show(g.Name), n, hv),
				short: fmt.Sprintf("its infrastructure group %s has %d adapter (production needs at least 2)", show(g.Name), n),
			})
		}
		for _, a := range infra.adapters {
			if a.SpeedMbps > 0 && a.SpeedMbps < InfraMinSpeedMbps {
				out = append(out, layoutProblem{
					path:  groupAdaptersPath(g, infra.gi, h.Name),
					msg:   fmt.Sprintf("adapter %s of %s runs at %d Mbps, but infrastructure adapters need at least %d Mbps (10 Gbps) for cluster communication and storage replication: put 10 Gbps adapters in the infrastructure group (slower ones can serve a VM group)", show(a.Name), hv, a.SpeedMbps, InfraMinSpeedMbps),
					short: fmt.Sprintf("infrastructure adapter %s runs at %d Mbps (production needs at least %d)", show(a.Name), a.SpeedMbps, InfraMinSpeedMbps),
				})
			}
		}
	}
	if len(vm) == 0 {
		out = append(out, layoutProblem{
			path:  path,
			msg:   fmt.Sprintf("hypervisor %s has no VM adapter group: add a group without infrastructure: true that has 2 of %s's adapters for VM traffic", hv, hv),
			short: "it has no separate VM group (production needs one with at least 2 adapters)",
		})
	}
	for _, m := range vm {
		if n := len(m.adapters); n < 2 {
			out = append(out, layoutProblem{
				path:  groupAdaptersPath(m.group, m.gi, h.Name),
				msg:   fmt.Sprintf("VM group %s has %d adapter on %s, but needs at least 2 for failover (1 Gbps adapters are fine): add a second adapter", show(m.group.Name), n, hv),
				short: fmt.Sprintf("its VM group %s has %d adapter (production needs at least 2)", show(m.group.Name), n),
			})
		}
	}
	return out
}

// checkAdapterSpeeds: in production, an adapter in a group whose speed the
// spec does not give is a warning (the speed rules cannot be checked until
// host apply reads it from the host), and a VM adapter slower than 1 Gbps
// is a warning. Evaluation mode has no speed rules, so it reports neither.
func checkAdapterSpeeds(v *validator) {
	if v.s.Cluster.Evaluation {
		return
	}
	for i := range v.s.Hypervisors {
		h := &v.s.Hypervisors[i]
		if !v.firstHV(h) {
			continue
		}
		for _, m := range v.members[h.Name] {
			isInfra := m.group.Infrastructure
			for _, a := range m.adapters {
				path := v.adapterPath(h, a) + ".speedMbps"
				switch {
				case a.SpeedMbps == 0 && isInfra:
					v.warnf(path, "adapter %s of %s has no speedMbps, so validation cannot check that this infrastructure adapter has at least 10 Gbps (host apply reads the speed from the host and checks it then): add speedMbps, for example 10000", show(a.Name), show(h.Name))
				case a.SpeedMbps == 0:
					v.warnf(path, "adapter %s of %s has no speedMbps, so validation cannot check that this VM adapter has at least 1 Gbps (host apply reads the speed from the host and checks it then): add speedMbps, for example 1000", show(a.Name), show(h.Name))
				case !isInfra && a.SpeedMbps > 0 && a.SpeedMbps < VMMinSpeedMbps:
					v.warnf(path, "adapter %s of %s runs at %d Mbps; VM adapters should have at least %d Mbps (1 Gbps): use faster adapters for VM group %s", show(a.Name), show(h.Name), a.SpeedMbps, VMMinSpeedMbps, show(m.group.Name))
				}
			}
		}
	}
}
