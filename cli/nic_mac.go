package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin"
)

// allocateMAC picks the MAC of a new NIC on this host alone (no cluster
// ledger): plugin's allocator under the spec's prefix, never one in used
// (lower-case MACs).
func allocateMAC(prefix string, used map[string]bool, rnd io.Reader) (string, error) {
	if prefix == "" {
		prefix = plugin.DefaultMACPrefix
	}
	mac, err := plugin.AllocateMAC(prefix, func(m net.HardwareAddr) bool { return used[m.String()] }, rnd)
	if err != nil {
		return "", fmt.Errorf("cluster.macPrefix: %w", err)
	}
	return mac.String(), nil
}

// checkMAC validates an operator-given MAC for a new NIC.
func checkMAC(mac string, used map[string]bool) (string, error) {
	hw, err := plugin.ParseVMMAC(mac)
	if err != nil {
		return "", fmt.Errorf("--mac: %w", err)
	}
	norm := hw.String()
	if used[norm] {
		return "", fmt.Errorf("--mac %s is already used by a NIC on this host; leave --mac out to allocate one", mac)
	}
	return norm, nil
}

// usedMACs collects the MACs of every NIC of every domain (persistent and
// live) and of the host snapshot's NIC records.
func usedMACs(doms []*domainHandle, snap *plugin.HostSnapshot) map[string]bool {
	used := map[string]bool{}
	for _, d := range doms {
		for _, x := range []*domains.Domain{d.config, d.live} {
			if x == nil {
				continue
			}
			for _, n := range x.NICs {
				used[strings.ToLower(n.MAC)] = true
			}
			for _, n := range x.MissingNICs() {
				used[strings.ToLower(n.MAC)] = true
			}
		}
	}
	if snap != nil {
		for _, n := range snap.NICs {
			used[strings.ToLower(n.MAC)] = true
		}
	}
	return used
}

// randReader is crypto/rand's reader; tests swap in a deterministic one.
var randReader io.Reader = rand.Reader
