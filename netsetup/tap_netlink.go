package netsetup

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// TapNetlink is the real TapKernel, on netlink (no cgo). The zero value uses
// the calling thread's network namespace and a new socket per request;
// NewTapNetlink shares one socket; Handle may point it at another namespace.
type TapNetlink struct {
	Handle *netlink.Handle
	shared *sharedHandle
}

// sharedHandle is one netlink socket opened on first use.
type sharedHandle struct {
	once sync.Once
	h    *netlink.Handle
}

// NewTapNetlink returns a TapNetlink that opens one netlink socket, in the
// namespace of the thread that makes its first request, and reuses it for
// every later request: programming a VM's taps is several requests per NIC.
// Nothing is opened until then, so a hook call that programs no tap pays
// nothing.
func NewTapNetlink() TapNetlink { return TapNetlink{shared: &sharedHandle{}} }

func (t TapNetlink) h() *netlink.Handle {
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

func (t TapNetlink) link(name string) (netlink.Link, error) {
	l, err := t.h().LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%s: %w", name, ErrTapNotFound)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// TapLink implements TapKernel.
func (t TapNetlink) TapLink(name string, withVLANs bool) (TapLinkState, error) {
	l, err := t.link(name)
	if err != nil {
		return TapLinkState{}, err
	}
	a := l.Attrs()
	st := TapLinkState{
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
		all, err := t.h().BridgeVlanList()
		if err != nil {
			return st, fmt.Errorf("%s: bridge vlan list: %w", name, err)
		}
		st.VLANs = tapVLANs(all[int32(a.Index)])
	}
	return st, nil
}

func tapVLANs(infos []*nl.BridgeVlanInfo) []TapVLAN {
	out := make([]TapVLAN, 0, len(infos))
	for _, v := range infos {
		out = append(out, TapVLAN{VID: int(v.Vid), PVID: v.PortVID(), Untagged: v.EngressUntag()})
	}
	return out
}

// TapByMAC implements TapKernel. Bridges never match.
func (t TapNetlink) TapByMAC(mac net.HardwareAddr) (string, error) {
	links, err := t.h().LinkList()
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

// TapSetMaster implements TapKernel.
func (t TapNetlink) TapSetMaster(link, bridge string) error {
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

// TapSetMTU implements TapKernel.
func (t TapNetlink) TapSetMTU(link string, mtu int) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().LinkSetMTU(l, mtu)
}

// TapVlanAdd implements TapKernel: `bridge vlan add dev LINK vid V [pvid]
// [untagged]` on the port (master), as the bridge's port setting.
func (t TapNetlink) TapVlanAdd(link string, v TapVLAN) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().BridgeVlanAdd(l, uint16(v.VID), v.PVID, v.Untagged, false, true)
}

// TapVlanDel implements TapKernel.
func (t TapNetlink) TapVlanDel(link string, vid int) error {
	l, err := t.link(link)
	if err != nil {
		return err
	}
	return t.h().BridgeVlanDel(l, uint16(vid), false, false, false, true)
}
