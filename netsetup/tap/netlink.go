package tap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// Netlink is the real Kernel, on netlink (no cgo). The zero value uses
// the calling thread's network namespace and a new socket per request;
// NewNetlink shares one socket; Handle may point it at another namespace.
type Netlink struct {
	Handle *netlink.Handle
	shared *sharedHandle
}

// sharedHandle is one netlink socket opened on first use.
type sharedHandle struct {
	once sync.Once
	h    *netlink.Handle
}

// NewNetlink returns a Netlink that opens one netlink socket, in the
// namespace of the thread that makes its first request, and reuses it for
// every later request: programming a VM's taps is several requests per NIC.
// Nothing is opened until then, so a hook call that programs no tap pays
// nothing.
func NewNetlink() Netlink { return Netlink{shared: &sharedHandle{}} }

func (t Netlink) h() *netlink.Handle {
	switch {
	case t.Handle != nil:
		return t.Handle
	case t.shared != nil:
		t.shared.once.Do(func() {
			h, err := netlink.NewHandle()
			if err != nil {
				h = &netlink.Handle{} // a socket per request, as the zero value
			}
			t.shared.h = h
		})
		return t.shared.h
	}
	return &netlink.Handle{}
}

func (t Netlink) link(name string) (netlink.Link, error) {
	l, err := t.h().LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// Link implements Kernel.
func (t Netlink) Link(name string, withVLANs bool) (LinkState, error) {
	l, err := t.link(name)
	if err != nil {
		return LinkState{}, err
	}
	a := l.Attrs()
	st := LinkState{
		Name:  a.Name,
		Index: a.Index,
		MAC:   a.HardwareAddr,
		MTU:   a.MTU,
		Up:    a.Flags&net.FlagUp != 0,
	}
	if a.MasterIndex > 0 {
		m, err := t.h().LinkByIndex(a.MasterIndex)
		if err != nil {
			return st, fmt.Errorf("%s: master index %d: %w", name, a.MasterIndex, err)
		}
		st.Master = m.Attrs().Name
	}
	if br, ok := l.(*netlink.Bridge); ok {
		st.Bridge = true
		st.VlanFiltering = br.VlanFiltering != nil && *br.VlanFiltering
		st.DefaultPVID = 1
		if br.VlanDefaultPVID != nil {
			st.DefaultPVID = int(*br.VlanDefaultPVID)
		}
	}
	if withVLANs {
		all, err := Redump(t.h().BridgeVlanList)
		if err != nil {
			return st, fmt.Errorf("%s: bridge vlan list: %w", name, err)
		}
		st.VLANs = vlans(all[int32(a.Index)])
	}
	return st, nil
}

func vlans(infos []*nl.BridgeVlanInfo) []VLAN {
	out := make([]VLAN, 0, len(infos))
	for _, v := range infos {
		out = append(out, VLAN{VID: int(v.Vid), PVID: v.PortVID(), Untagged: v.EngressUntag()})
	}
	return out
}

// dumpAttempts bounds how often a dump interrupted by a concurrent change is
// read again.
const dumpAttempts = 20

// Redump runs a netlink dump until the kernel answers it without
// interruption. The kernel flags a dump during which the table changed
// (NLM_F_DUMP_INTR) and the library then returns ErrDumpInterrupted with
// possibly inconsistent results: while libvirt creates and enslaves taps for
// other domains, that happens to the hook's dumps, and a domain must not
// fail to start because another one did at the same moment.
func Redump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for attempt := 1; ; attempt++ {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		if attempt == dumpAttempts {
			return v, fmt.Errorf("the kernel's table kept changing during %d reads: %w", dumpAttempts, err)
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
}

// ByMAC implements Kernel. Bridges never match.
func (t Netlink) ByMAC(mac net.HardwareAddr) (string, error) {
	links, err := Redump(t.h().LinkList)
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		// A bridge takes its first port's MAC: skip bridges, we want the port.
		if _, isBridge := l.(*netlink.Bridge); isBridge {
			continue
		}
		if bytes.Equal(l.Attrs().HardwareAddr, mac) {
			return l.Attrs().Name, nil
		}
	}
	return "", nil
}

// SetMaster implements Kernel.
func (t Netlink) SetMaster(link, bridge string) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	b, err := t.link(bridge)
	if err != nil {
		return err
	}
	return t.h().LinkSetMaster(l, b)
}

// SetMTU implements Kernel.
func (t Netlink) SetMTU(link string, mtu int) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().LinkSetMTU(l, mtu)
}

// VlanAdd implements Kernel: `bridge vlan add dev LINK vid V [pvid]
// [untagged]` on the port (master), as the bridge's port setting.
func (t Netlink) VlanAdd(link string, v VLAN) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().BridgeVlanAdd(l, uint16(v.VID), v.PVID, v.Untagged, false, true)
}

// VlanDel implements Kernel.
func (t Netlink) VlanDel(link string, vid int) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().BridgeVlanDel(l, uint16(vid), false, false, false, true)
}
