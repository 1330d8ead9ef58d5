package main

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup"
	"github.com/gallium/gallium-net/plugin"
)

// qemuOps are the qemu operations the hook acts on; everything else (attach,
// started, ...) exits 0 without reading stdin.
var qemuOps = map[string]bool{
	"prepare": true, "start": true, "reconnect": true,
	"migrate": true, "restore": true, "stopped": true, "release": true,
}

func (h *hook) qemu() error {
	if h.inv.op == "stopped" || h.inv.op == "release" {
		return h.forget()
	}
	dom, err := domains.ParseDomain(h.stdin)
	if err != nil {
		if h.inv.op == "reconnect" {
			h.log.Warn("reconnect: cannot read the domain XML; leaving the domain alone", "error", err.Error())
			return nil
		}
		return failf("gallium-net hook: %s domain %s: %v", h.inv.op, h.inv.object, err)
	}
	if !dom.Managed {
		return nil
	}
	h.log, h.quiet = h.log.With("domain", dom.Name, "uuid", dom.UUID), h.quiet.With("domain", dom.Name, "uuid", dom.UUID)
	switch h.inv.op {
	case "prepare":
		return h.prepare(dom)
	case "start":
		return h.program(dom, true)
	case "reconnect":
		if err := h.program(dom, false); err != nil {
			// Never non-zero: libvirtd kills a VM whose reconnect hook
			// fails. Said once on stderr (h.log writes there too, so the
			// log record goes to the journal only).
			h.quiet.Error("reconnect: could not re-assert the NICs; the VM keeps running", "error", err.Error())
			fmt.Fprintf(h.stderr, "gallium-net hook: reconnect %s: could not re-assert its NICs, the VM keeps running: %v\n", dom.Name, err)
		}
		return nil
	case "migrate", "restore":
		return h.rewrite(dom)
	}
	return nil
}

func fixNetworkHint(snap *plugin.HostSnapshot, network string) string {
	return fmt.Sprintf("add network %s to the cluster spec on an adapter group of hypervisor %s and run 'gallium-net network define %s' on this host", network, snap.Hypervisor, network)
}

// prepare refuses to start a domain whose gallium-net networks are not
// realised on this host; the message names every problem and its fix.
func (h *hook) prepare(dom *domains.Domain) error {
	snap, err := h.snapshot()
	if err != nil {
		return failf("gallium-net: cannot start domain %s: %v", dom.Name, err)
	}
	var problems []string
	// One readiness check per network, however many NICs are on it.
	ready := map[string]error{}
	for _, nic := range dom.ManagedNICs() {
		netName := dom.NetworkOf(nic)
		n, ok := snap.Networks[netName]
		if !ok {
			problems = append(problems, fmt.Sprintf("NIC %s: network %s does not exist on hypervisor %s (networks here: %s); fix: %s", nic.MAC, netName, snap.Hypervisor, networkNames(snap), fixNetworkHint(snap, netName)))
			continue
		}
		err, checked := ready[netName]
		if !checked {
			err = netsetup.TapNetworkReady(h.env.Kernel, n.Bridge, n.Bond, n.VLAN)
			ready[netName] = err
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("NIC %s: network %s is not ready on hypervisor %s: %v; fix: run 'gallium-net host apply' (bonds, bridges, VLANs), then 'gallium-net network define %s'", nic.MAC, netName, snap.Hypervisor, err, netName))
		}
	}
	for _, m := range dom.MissingNICs() {
		h.log.Warn("metadata lists a NIC the domain does not have", "mac", m.MAC, "network", m.Network)
	}
	if len(problems) > 0 {
		return failf("gallium-net: cannot start domain %s:\n  %s", dom.Name, strings.Join(problems, "\n  "))
	}
	h.log.Info("prepare: networks ready", "nics", len(dom.ManagedNICs()))
	return nil
}

func networkNames(snap *plugin.HostSnapshot) string {
	names := make([]string, 0, len(snap.Networks))
	for n := range snap.Networks {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// program programs every managed NIC's tap and records the domain as
// running. With strict (start) a conflicting MAC or a tap that cannot be
// programmed is an error; without (reconnect) it does what it can.
func (h *hook) program(dom *domains.Domain, strict bool) error {
	// On reconnect the domain is running: "cannot start" would be wrong.
	subject := "cannot start domain " + dom.Name
	if !strict {
		subject = "running domain " + dom.Name
	}
	snap, err := h.snapshot()
	if err != nil {
		return failf("gallium-net: %s: %v", subject, err)
	}
	var errs []error
	err = h.store().Update(func(st *records.State) error {
		for _, nic := range dom.ManagedNICs() {
			if other := st.MACOwner(nic.MAC, dom.UUID); other != nil {
				err := failf("gallium-net: %s: NIC %s has the MAC of a NIC of running domain %s on this host; give it another with 'gallium-net nic remove %s %s' and 'gallium-net nic add %s --network %s'", subject, nic.MAC, other.Name, dom.Name, nic.MAC, dom.Name, dom.NetworkOf(nic))
				if strict {
					return err
				}
				errs = append(errs, err)
			}
		}
		rec := st.Domain(dom.UUID, dom.Name, true)
		rec.Running = true
		// The domain's XML is the truth for what it has now: NICs removed
		// while it was off are dropped from the record.
		rec.NICs = slices.DeleteFunc(rec.NICs, func(n records.NIC) bool { return dom.NIC(n.MAC) == nil })
		for _, nic := range dom.ManagedNICs() {
			netName := dom.NetworkOf(nic)
			r := records.NIC{MAC: nic.MAC, Network: netName, Tap: nic.Target, PortID: nic.PortID}
			n, ok := snap.Networks[netName]
			if !ok {
				err := failf("gallium-net: domain %s: NIC %s: network %s does not exist on hypervisor %s; fix: %s", dom.Name, nic.MAC, netName, snap.Hypervisor, fixNetworkHint(snap, netName))
				if strict {
					return err
				}
				errs = append(errs, err)
				rec.SetNIC(r)
				continue
			}
			r.Bridge, r.VLAN, r.MTU = n.Bridge, n.VLAN, n.MTU
			if nic.Target == "" {
				errs = append(errs, fmt.Errorf("NIC %s has no tap (<target dev>) in the domain XML", nic.MAC))
			} else {
				res, err := netsetup.TapProgram(h.env.Kernel, netsetup.TapConfig{Tap: nic.Target, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU})
				if err != nil {
					err = fmt.Errorf("NIC %s on network %s: %w", nic.MAC, netName, err)
					if strict {
						return failf("gallium-net: %s: %v; check the bridge with 'gallium-net host apply --dry-run'", subject, err)
					}
					errs = append(errs, err)
				} else if res.Changed() {
					h.log.Info("tap programmed", "mac", nic.MAC, "network", netName, "tap", nic.Target, "bridge", n.Bridge, "vlan", n.VLAN, "changes", res.Summary())
				} else {
					h.log.Info("tap already right", "mac", nic.MAC, "network", netName, "tap", nic.Target, "bridge", n.Bridge, "vlan", n.VLAN)
				}
			}
			rec.SetNIC(r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.log.Info(h.inv.op+": domain NICs in line", "nics", len(dom.ManagedNICs()), "problems", len(errs))
	return errors.Join(errs...)
}

// forget drops the domain's records when it stopped. It reads the UUID from
// stdin when it can, else goes by name; a domain without records costs no
// lock.
func (h *hook) forget() error {
	if !h.store().Exists() {
		return nil
	}
	uuid, name := "", h.inv.object
	if dom, err := domains.ParseDomain(h.stdin); err == nil {
		uuid, name = dom.UUID, dom.Name
	}
	st, err := h.store().Read()
	if err == nil && !hasDomain(st, uuid, name) {
		return nil
	}
	return h.store().Update(func(st *records.State) error {
		for id, d := range st.Domains {
			if id == uuid || uuid == "" && d.Name == name {
				delete(st.Domains, id)
				h.log.Info(h.inv.op+": records removed", "domain", d.Name, "uuid", id, "nics", len(d.NICs))
			}
		}
		return nil
	})
}

func hasDomain(st *records.State, uuid, name string) bool {
	if uuid != "" {
		return st.Domains[uuid] != nil
	}
	for _, d := range st.Domains {
		if d.Name == name {
			return true
		}
	}
	return false
}

// rewrite prints the domain XML with this host's bridge and MTU for each
// managed NIC when they differ from the incoming XML, or nothing.
func (h *hook) rewrite(dom *domains.Domain) error {
	snap, err := h.snapshot()
	if err != nil {
		return failf("gallium-net: cannot %s domain %s on this host: %v", h.inv.op, dom.Name, err)
	}
	var missing []string
	out, changed, err := domains.RewriteDomain(h.stdin, func(nic *domains.NIC) bool {
		netName := dom.NetworkOf(*nic)
		n, ok := snap.Networks[netName]
		if !ok {
			missing = append(missing, fmt.Sprintf("NIC %s: network %s does not exist on hypervisor %s; fix: %s", nic.MAC, netName, snap.Hypervisor, fixNetworkHint(snap, netName)))
			return false
		}
		before := *nic
		if nic.Type == "bridge" || nic.Bridge != "" {
			nic.Bridge = n.Bridge
		}
		if nic.MTU != 0 && n.MTU != 0 {
			nic.MTU = n.MTU
		}
		return *nic != before
	})
	if err != nil {
		return failf("gallium-net: cannot %s domain %s: %v", h.inv.op, dom.Name, err)
	}
	if len(missing) > 0 {
		return failf("gallium-net: cannot %s domain %s on this host:\n  %s", h.inv.op, dom.Name, strings.Join(missing, "\n  "))
	}
	if !changed {
		return nil
	}
	if _, err := h.stdout.Write(out); err != nil {
		return fmt.Errorf("write rewritten XML: %w", err)
	}
	h.log.Info(h.inv.op + ": per-host values rewritten")
	return nil
}
