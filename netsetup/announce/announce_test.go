package announce

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gallium/gallium-net/test/testenv"
)

func TestAnnounceFrames(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	g := garpFrame(mac, net.IPv4(10, 1, 2, 3).To4())
	want := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06,
		0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 10, 1, 2, 3}, make([]byte, 18)...)
	if !bytes.Equal(g, want) {
		t.Errorf("GARP:\n got % x\nwant % x", g, want)
	}
	r := rarpFrame(mac)
	if len(r) != 60 || r[12] != 0x80 || r[13] != 0x35 || r[21] != 3 || !bytes.Equal(r[6:12], mac) || !bytes.Equal(r[22:28], mac) || !bytes.Equal(r[32:38], mac) {
		t.Errorf("RARP: % x", r)
	}
}

// Tier 2: Send sends, out of the bond (here a veth standing in for it),
// a gratuitous ARP for the bridge's address and a RARP for a MAC the bridge
// learned on another port.
func TestAnnounceSendsGARPAndVMMACs(t *testing.T) {
	testenv.EnterNetns(t)
	testenv.VethPair(t, "gb-t", "gt-up")   // "the bond" and, behind it, the switch
	testenv.VethPair(t, "gt-vm", "gt-vmp") // a VM's tap and the VM
	a := netlink.NewLinkAttrs()
	a.Name = "gbr-t"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: a}); err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName("gbr-t")
	for _, p := range []string{"gb-t", "gt-vm"} {
		l, _ := netlink.LinkByName(p)
		netlink.LinkSetMaster(l, br)
	}
	netlink.LinkSetUp(br)
	addr, _ := netlink.ParseAddr("10.99.0.1/24")
	netlink.AddrAdd(br, addr)
	// The VM speaks once, so the bridge learns its MAC on gt-vm.
	vmMAC, _ := net.ParseMAC("52:54:00:aa:bb:cc")
	vm := testenv.RawSocket(t, "gt-vmp")
	if err := unix.Send(vm, rarpFrame(vmMAC), 0); err != nil {
		t.Fatal(err)
	}
	up := testenv.RawSocket(t, "gt-up")
	for i := 0; i < 50 && len(learnedMACs(br.Attrs().Index, 0)) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	n, err := Send("gb-t")
	// At least the GARP and the VM's RARP (the VM's kernel may have sent
	// frames of its own, IPv6 DAD for example, from its veth's MAC).
	if err != nil || n < 2 {
		t.Fatalf("announce: %d frames, %v; want at least 2", n, err)
	}
	br, _ = netlink.LinkByName("gbr-t")
	var garp, rarp bool
	buf := make([]byte, 2048)
	for end := time.Now().Add(time.Second); time.Now().Before(end) && !(garp && rarp); {
		m, _, err := unix.Recvfrom(up, buf, 0)
		if err != nil {
			continue
		}
		f := buf[:m]
		switch {
		case bytes.Equal(f, garpFrame(br.Attrs().HardwareAddr, net.IPv4(10, 99, 0, 1).To4())):
			garp = true
		case bytes.Equal(f, rarpFrame(vmMAC)):
			rarp = true
		}
	}
	if !garp || !rarp {
		t.Errorf("on the wire: GARP for the bridge IP %v, RARP for the VM MAC %v", garp, rarp)
	}
}
