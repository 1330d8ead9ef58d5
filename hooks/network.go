package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/netsetup"
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
			return h.store().Update(func(st *records.State) error {
				if d := st.Domain(port.OwnerUUID, port.OwnerName, false); d != nil && d.RemoveNIC(mac) {
					h.log.Info("port deleted: NIC record removed", "domain", port.OwnerName, "mac", mac)
				}
				return nil
			})
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
	hotplug := false
	err = h.store().Update(func(st *records.State) error {
		d := st.Domain(uuid, name, true)
		hotplug = d.Running
		rec := records.NIC{MAC: mac, Network: netName, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU, PortID: portID}
		if old := d.NIC(mac); old != nil {
			rec.Tap = old.Tap
		}
		d.SetNIC(rec)
		return nil
	})
	if err != nil {
		return err
	}
	h.log.Info("port created: NIC recorded", "domain", name, "mac", mac, "hotplug", hotplug)
	if hotplug {
		return h.spawnTapWaiter(mac, netName, uuid)
	}
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
	var errs []error
	err = h.store().Update(func(st *records.State) error {
		for _, d := range st.Domains {
			for i := range d.NICs {
				nic := &d.NICs[i]
				if nic.Network != netName || nic.Tap == "" || !d.Running {
					continue
				}
				res, err := netsetup.TapProgram(h.env.Kernel, netsetup.TapConfig{Tap: nic.Tap, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU})
				if err != nil {
					errs = append(errs, fmt.Errorf("domain %s NIC %s: %w", d.Name, nic.MAC, err))
					continue
				}
				nic.Bridge, nic.VLAN, nic.MTU = n.Bridge, n.VLAN, n.MTU
				if res.Changed() {
					h.log.Info("network updated: tap reprogrammed", "domain", d.Name, "mac", nic.MAC, "tap", nic.Tap, "changes", res.Summary())
				}
			}
		}
		return nil
	})
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
	tapMAC := netsetup.TapMAC(mac)
	if tapMAC == nil {
		log.Error("hot-plug: malformed MAC", "mac", mac)
		return 2
	}
	deadline := time.Now().Add(awaitTapTimeout)
	tap := ""
	for tap == "" {
		var err error
		if tap, err = e.Kernel.TapByMAC(tapMAC); err != nil {
			log.Error("hot-plug: look for the tap", "mac", mac, "error", err.Error())
			return 1
		}
		if tap != "" {
			break
		}
		if time.Now().After(deadline) {
			log.Error("hot-plug: the NIC's tap did not appear; run 'gallium-net nic sync' for its domain", "mac", mac, "waited", awaitTapTimeout.String())
			return 1
		}
		time.Sleep(20 * time.Millisecond)
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
	res, err := netsetup.TapProgram(e.Kernel, netsetup.TapConfig{Tap: tap, Bridge: n.Bridge, VLAN: n.VLAN, MTU: n.MTU})
	if err != nil {
		log.Error("hot-plug: program tap", "mac", mac, "tap", tap, "error", err.Error())
		return 1
	}
	log.Info("hot-plug: tap programmed", "mac", mac, "tap", tap, "bridge", n.Bridge, "vlan", n.VLAN, "changes", res.Summary())
	err = h.store().Update(func(st *records.State) error {
		if d := st.Domain(uuid, "", false); d != nil {
			if nic := d.NIC(mac); nic != nil {
				nic.Tap = tap
			}
		}
		return nil
	})
	if err != nil {
		log.Error("hot-plug: record tap", "mac", mac, "error", err.Error())
		return 1
	}
	return 0
}
