package main

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/gallium/gallium-net/hooks/internal/records"
)

// flakyLookKernel fails its first failLooks ByMAC calls, as a netlink dump
// interrupted by libvirt's own link changes can.
type flakyLookKernel struct {
	*fakeKernel
	failLooks int
}

func (k *flakyLookKernel) ByMAC(mac net.HardwareAddr) (string, error) {
	if k.failLooks > 0 {
		k.failLooks--
		return "", errors.New("list links: results may be incomplete or inconsistent")
	}
	return k.fakeKernel.ByMAC(mac)
}

// TestAwaitTap: the detached hot-plug waiter outlives failed looks for the
// tap, records the tap before programming it (so a failed programming still
// leaves a record that a network update or reconnect re-asserts), and
// programs it.
func TestAwaitTap(t *testing.T) {
	const hotMAC = "52:54:00:00:00:03"
	for _, tc := range []struct {
		name      string
		failLooks int
		failWrite bool
		wantCode  int
	}{
		{"found at once", 0, false, 0},
		{"found after failed looks", 3, false, 0},
		{"programming fails", 0, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fk := newFakeKernel()
			fk.links["vnet2"].MAC = net.HardwareAddr{0xfe, 0x54, 0, 0, 0, 3} // libvirt's tap MAC for hotMAC
			k := &flakyLookKernel{fakeKernel: fk, failLooks: tc.failLooks}
			e := testEnv(t, k)
			if code, _, errOut := runHook(e, "qemu.d", "vm1", "start", "begin", domainXML("vm1", uuid1, true, 1, "flat")); code != 0 {
				t.Fatalf("start: %s", errOut)
			}
			// What port-created records for a NIC hot-plugged into a running domain.
			store := records.Store{Dir: e.StateDir}
			tx, err := store.Open(uuid1)
			if err != nil {
				t.Fatal(err)
			}
			d := tx.Domain()
			d.SetNIC(records.NIC{MAC: hotMAC, Network: "flat", Bridge: "gbr-vm", MTU: 1500})
			if _, err := tx.Put(d, false); err != nil {
				t.Fatal(err)
			}
			tx.Close()
			fk.writes, fk.fail = nil, tc.failWrite

			if code := awaitTap([]string{"/usr/libexec/gallium-net/gallium-net-hook", "gallium-net", awaitTapOp, hotMAC, "flat", uuid1}, e); code != tc.wantCode {
				t.Errorf("awaitTap exit %d, want %d", code, tc.wantCode)
			}
			st, err := store.Read()
			if err != nil {
				t.Fatal(err)
			}
			if nic := st.Domains[uuid1].NIC(hotMAC); nic == nil || nic.Tap != "vnet2" {
				t.Errorf("record of the hot-plugged NIC = %+v, want tap vnet2", nic)
			}
			if programmed := slices.Contains(fk.writes, "master vnet2 gbr-vm"); programmed == tc.failWrite {
				t.Errorf("kernel writes %q (writes failing: %v)", fk.writes, tc.failWrite)
			}
		})
	}
}
