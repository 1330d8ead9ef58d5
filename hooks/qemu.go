package main

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
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

func fixNetworkHint(snap *snapshot.Host, network string) string {
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
			err = tap.NetworkReady(h.env.Kernel, n.Bridge, n.Bond, n.VLAN)
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

func networkNames(snap *snapshot.Host) string {
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
//
// Only the domain's own lock is held while the taps are programmed: starts
// of other domains do not wait for it (the MAC claims are taken and the
// record written before, in Put, which holds each MAC's lock only for that).
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
	tx, err := h.store().Open(dom.UUID)
	if err != nil {
		return failf("gallium-net: %s: %v", subject, err)
	}
	defer tx.Close()
	before := tx.Current()
	rec := tx.Domain()
	rec.Name, rec.Running = dom.Name, true
	// The domain's XML is the truth for what it has now: NICs removed
	// while it was off are dropped from the record.
	rec.NICs = slices.DeleteFunc(rec.NICs, func(n records.NIC) bool { return dom.NIC(n.MAC) == nil })
	var errs []error
	type tapJob struct {
		mac, network string
		cfg          tap.Config
	}
	var jobs []tapJob
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
			jobs = append(jobs, tapJob{nic.MAC, netName, tap.Config{Tap: nic.Target, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU}})
		}
		rec.SetNIC(r)
	}
	conflicts, err := tx.Put(rec, strict)
	if err != nil {
		return failf("gallium-net: %s: %v", subject, err)
	}
	for _, c := range conflicts {
		err := failf("gallium-net: %s: NIC %s has the MAC of a NIC of running domain %s on this host; give it another with 'gallium-net nic remove %s %s' and 'gallium-net nic add %s --network %s'", subject, c.MAC, c.OwnerName, dom.Name, c.MAC, dom.Name, networkOfMAC(dom, c.MAC))
		if strict {
			return err
		}
		errs = append(errs, err)
	}
	for _, j := range jobs {
		res, err := tap.Program(h.env.Kernel, j.cfg)
		if err != nil {
			err = fmt.Errorf("NIC %s on network %s: %w", j.mac, j.network, err)
			if strict {
				// The start fails: the records go back to what they were,
				// and the MACs claimed for it are free again.
				if _, uerr := tx.Put(before, false); uerr != nil {
					h.log.Warn("could not restore the domain's records after the failed start", "error", uerr.Error())
				}
				return failf("gallium-net: %s: %v; check the bridge with 'gallium-net host apply --dry-run'", subject, err)
			}
			errs = append(errs, err)
		} else if res.Changed() {
			h.log.Info("tap programmed", "mac", j.mac, "network", j.network, "tap", j.cfg.Tap, "bridge", j.cfg.Bridge, "vlan", j.cfg.VLAN, "changes", res.Summary())
		} else {
			h.log.Info("tap already right", "mac", j.mac, "network", j.network, "tap", j.cfg.Tap, "bridge", j.cfg.Bridge, "vlan", j.cfg.VLAN)
		}
	}
	h.log.Info(h.inv.op+": domain NICs in line", "nics", len(dom.ManagedNICs()), "problems", len(errs))
	return errors.Join(errs...)
}

// networkOfMAC is the gallium-net network of the domain's NIC with MAC mac.
func networkOfMAC(dom *domains.Domain, mac string) string {
	for _, nic := range dom.ManagedNICs() {
		if strings.EqualFold(nic.MAC, mac) {
			return dom.NetworkOf(nic)
		}
	}
	return "NETWORK"
}

// forget drops the domain's records when it stopped. It reads the UUID from
// stdin when it can, else goes by name (which reads every record); a domain
// without a record costs no lock.
func (h *hook) forget() error {
	store := h.store()
	if !store.Exists() {
		return nil
	}
	var uuids []string
	name := h.inv.object
	if dom, err := domains.ParseDomain(h.stdin); err == nil && dom.UUID != "" {
		uuids = []string{dom.UUID}
	} else {
		st, err := store.Read()
		if err != nil {
			return err
		}
		for id, d := range st.Domains {
			if d.Name == name {
				uuids = append(uuids, id)
			}
		}
	}
	var errs []error
	for _, id := range uuids {
		if d, err := store.Get(id); err == nil && d == nil {
			continue
		}
		if err := h.forgetDomain(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// forgetDomain removes domain uuid's record and gives up its MAC claims.
func (h *hook) forgetDomain(uuid string) error {
	tx, err := h.store().Open(uuid)
	if err != nil {
		return err
	}
	defer tx.Close()
	d := tx.Current()
	if d == nil {
		return nil
	}
	if _, err := tx.Put(nil, false); err != nil {
		return err
	}
	h.log.Info(h.inv.op+": records removed", "domain", d.Name, "uuid", uuid, "nics", len(d.NICs))
	return nil
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
