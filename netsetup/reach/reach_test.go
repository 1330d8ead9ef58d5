package reach

import (
	"net/netip"
	"os"
	"testing"
	"time"
)

func pinger(t *testing.T) *Pinger {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a raw ICMP socket")
	}
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPingLoopback(t *testing.T) {
	p := pinger(t)
	rtt, err := p.Any(t.Context(), netip.MustParseAddr("127.0.0.1"), 3, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rtt <= 0 || rtt > time.Second {
		t.Errorf("round trip %v", rtt)
	}
}

// A closed pinger fails at once rather than waiting out its timeout.
func TestPingClosed(t *testing.T) {
	p := pinger(t)
	p.Close()
	start := time.Now()
	if _, err := p.Ping(t.Context(), netip.MustParseAddr("127.0.0.1"), 5*time.Second); err == nil {
		t.Fatal("a closed pinger answered")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestPingIPv6Refused(t *testing.T) {
	p := pinger(t)
	if _, err := p.Ping(t.Context(), netip.MustParseAddr("::1"), time.Second); err == nil {
		t.Fatal("IPv6 accepted")
	}
}
