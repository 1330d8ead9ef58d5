package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup/tap"
	"github.com/gallium/gallium-net/plugin/snapshot"
)

// networkOps are the network operations the hook acts on.
var networkOps = map[string]bool{"port-created": true, "port-deleted": true, "updated": true}

func (h *hook) network() error {
	hd, err := domains.ParseNetworkHook(h.stdin)
	if err != nil {
		return failf("gallium-net hook: network %s %s: %v", h.inv.object, h.inv.op, err)
	}
	if !hd.Network.Owned() {
		return nil // not a gallium-net network
	}
	netName := hd.Network.Name
	h.log, h.quiet = h.log.With("network", netName), h.quiet.With("network", netName)
	switch h.inv.op {
	case "port-created", "port-deleted":
		port := hd.Port
		if port == nil {
			return failf("gallium-net hook: network %s %s: no <networkport> on stdin", netName, h.inv.op)
		}
		mac, err := domains.NormalizeMAC(port.MAC)
		if err != nil {
			return failf("gallium-net hook: network %s %s: port %s: %v", netName, h.inv.op, port.UUID, err)
		}
		if h.inv.op == "port-deleted" {
			return h.portDeleted(port.OwnerUUID, port.OwnerName, mac)
		}
		return h.portCreated(netName, port.OwnerUUID, port.OwnerName, mac, port.UUID)
	case "updated":
		return h.reprogramNetwork(netName)
	}
	return nil
}

// portCreated records a NIC plugged into a gallium-net network. When its
// domain already runs (a hot-plug: libvirt creates the port before the tap),
// a detached waiter programs the tap once it appears; at a domain start the
// qemu start hook programs it instead.
func (h *hook) portCreated(netName, uuid, name, mac, portID string) error {
	snap, err := h.snapshot()
	if err != nil {
		return failf("gallium-net: NIC %s of domain %s on network %s: %v", mac, name, netName, err)
	}
	n, ok := snap.Networks[netName]
	if !ok {
		return failf("gallium-net: NIC %s of domain %s: network %s does not exist on hypervisor %s; fix: %s", mac, name, netName, snap.Hypervisor, fixNetworkHint(snap, netName))
	}
	tx, err := h.store().Open(uuid)
	if err != nil {
		return failf("gallium-net: NIC %s of domain %s on network %s: %v", mac, name, netName, err)
	}
	defer tx.Close()
	d := tx.Domain()
	if name != "" {
		d.Name = name
	}
	hotplug := d.Running
	rec := records.NIC{MAC: mac, Network: netName, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU, PortID: portID}
	if old := d.NIC(mac); old != nil {
		rec.Tap = old.Tap
	}
	d.SetNIC(rec)
	// A hot-plugged NIC of a running domain claims its MAC; a conflict is
	// the start's to refuse, not the port's (as before claims existed).
	conflicts, err := tx.Put(d, false)
	if err != nil {
		return failf("gallium-net: NIC %s of domain %s on network %s: %v", mac, name, netName, err)
	}
	for _, c := range conflicts {
		h.log.Warn("port created: the MAC is in use by another running domain here", "domain", name, "mac", mac, "owner", c.OwnerName)
	}
	h.log.Info("port created: NIC recorded", "domain", name, "mac", mac, "hotplug", hotplug)
	if hotplug {
		return h.spawnTapWaiter(mac, netName, uuid)
	}
	return nil
}

// portDeleted drops the NIC's record and gives up its MAC claim; a domain
// without a record costs no lock.
func (h *hook) portDeleted(uuid, name, mac string) error {
	// A corrupt record goes on to Open, which sets it aside.
	if d, err := h.store().Get(uuid); err == nil && (d == nil || d.NIC(mac) == nil) {
		return nil
	}
	tx, err := h.store().Open(uuid)
	if err != nil {
		return err
	}
	defer tx.Close()
	d := tx.Domain()
	if !d.RemoveNIC(mac) {
		return nil
	}
	if _, err := tx.Put(d, false); err != nil {
		return err
	}
	h.log.Info("port deleted: NIC record removed", "domain", name, "mac", mac)
	return nil
}

// reprogramNetwork re-asserts the taps of every recorded NIC on a network
// whose definition libvirt updated, with this host's current values.
func (h *hook) reprogramNetwork(netName string) error {
	snap, err := h.snapshot()
	if err != nil {
		return err
	}
	n, ok := snap.Networks[netName]
	if !ok {
		return fmt.Errorf("network %s is not in this host's snapshot; run 'gallium-net network define %s'", netName, netName)
	}
	st, err := h.store().Read()
	if err != nil {
		return err
	}
	for _, p := range st.Corrupt {
		h.log.Warn("network updated: a corrupt record is skipped; its domain's next start or reconnect rebuilds it", "path", p)
	}
	var errs []error
	for id, d := range st.Domains {
		if !d.Running || !slices.ContainsFunc(d.NICs, func(nic records.NIC) bool { return nic.Network == netName && nic.Tap != "" }) {
			continue
		}
		errs = append(errs, h.reprogramDomain(id, netName, n))
	}
	return errors.Join(errs...)
}

// reprogramDomain re-asserts the taps of one domain's NICs on a network under
// that domain's lock, and records the network's current values.
func (h *hook) reprogramDomain(uuid, netName string, n snapshot.Network) error {
	tx, err := h.store().Open(uuid)
	if err != nil {
		return err
	}
	defer tx.Close()
	d := tx.Domain()
	if !tx.Exists() || !d.Running {
		return nil // stopped meanwhile
	}
	var errs []error
	for i := range d.NICs {
		nic := &d.NICs[i]
		if nic.Network != netName || nic.Tap == "" {
			continue
		}
		res, err := tap.Program(h.env.Kernel, tap.Config{Tap: nic.Tap, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU})
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %s NIC %s: %w", d.Name, nic.MAC, err))
			continue
		}
		nic.Bridge, nic.VLAN, nic.MTU = n.Bridge, n.VLAN, n.MTU
		if res.Changed() {
			h.log.Info("network updated: tap reprogrammed", "domain", d.Name, "mac", nic.MAC, "tap", nic.Tap, "changes", res.Summary())
		}
	}
	_, err = tx.Put(d, false)
	return errors.Join(err, errors.Join(errs...))
}

// awaitTapOp is the hook's private operation for the detached tap waiter.
const awaitTapOp = "__await-tap"

// spawnTapWaiter starts `SELF gallium-net __await-tap MAC NETWORK UUID` in
// its own session with no stdio: libvirt waits for the hook's stdout and
// stderr to close, so the waiter must hold neither.
func (h *hook) spawnTapWaiter(mac, netName, uuid string) error {
	if h.env.Self == "" {
		return errors.New("cannot find the hook's own executable to wait for the tap")
	}
	cmd := exec.Command(h.env.Self, "gallium-net", awaitTapOp, mac, netName, uuid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start tap waiter for NIC %s: %w", mac, err)
	}
	return cmd.Process.Release()
}

// awaitTapTimeout bounds how long a waiter waits for a hot-plugged tap.
const awaitTapTimeout = 30 * time.Second

// awaitTap is the detached waiter: it waits for the tap of a hot-plugged NIC
// (MAC with first byte 0xFE) to appear, then programs it and records it.
func awaitTap(argv []string, e env) int {
	if len(argv) < 6 {
		return 2
	}
	mac, netName, uuid := argv[3], argv[4], argv[5]
	inv := invocation{kind: kindNetwork, object: netName, op: "hotplug"}
	log, closeLog := newLogger(e, os.Stderr, inv)
	defer closeLog()
	h := &hook{inv: inv, stdout: os.Stdout, stderr: os.Stderr, env: e, log: log, quiet: log}
	tapMAC := tap.MAC(mac)
	if tapMAC == nil {
		log.Error("hot-plug: malformed MAC", "mac", mac)
		return 2
	}
	deadline := time.Now().Add(awaitTapTimeout)
	var dev string
	var lastErr error
	for {
		// A failed look is retried until the deadline: the links change
		// under the waiter while libvirt plugs the NIC.
		found, err := e.Kernel.ByMAC(tapMAC)
		if err != nil {
			lastErr = err
		} else if found != "" {
			dev = found
			break
		}
		if time.Now().After(deadline) {
			args := []any{"mac", mac, "waited", awaitTapTimeout.String()}
			if lastErr != nil {
				args = append(args, "error", lastErr.Error())
			}
			log.Error("hot-plug: the NIC's tap did not appear; run 'gallium-net nic sync' for its domain", args...)
			return 1
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Record the tap first: a record with its tap is what a later network
	// update or reconnect re-asserts, even if programming fails below.
	if err := h.recordTap(uuid, mac, dev); err != nil {
		log.Error("hot-plug: record tap", "mac", mac, "tap", dev, "error", err.Error())
		return 1
	}
	snap, err := h.snapshot()
	if err != nil {
		log.Error("hot-plug", "mac", mac, "error", err.Error())
		return 1
	}
	n, ok := snap.Networks[netName]
	if !ok {
		log.Error("hot-plug: network not on this host", "mac", mac)
		return 1
	}
	// libvirt enslaves the tap right after creating it; give it that moment
	// so that both do not race on the port.
	time.Sleep(50 * time.Millisecond)
	res, err := tap.Program(e.Kernel, tap.Config{Tap: dev, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU})
	if err != nil {
		log.Error("hot-plug: program tap; run 'gallium-net nic sync' for its domain", "mac", mac, "tap", dev, "error", err.Error())
		return 1
	}
	log.Info("hot-plug: tap programmed", "mac", mac, "tap", dev, "bridge", n.Bridge, "vlan", n.VLAN, "changes", res.Summary())
	return 0
}

// recordTap records the tap of a hot-plugged NIC, if the NIC is still there.
func (h *hook) recordTap(uuid, mac, tap string) error {
	tx, err := h.store().Open(uuid)
	if err != nil {
		return err
	}
	defer tx.Close()
	d := tx.Domain()
	nic := d.NIC(mac)
	if !tx.Exists() || nic == nil || nic.Tap == tap {
		return nil
	}
	nic.Tap = tap
	_, err = tx.Put(d, false)
	return err
}
