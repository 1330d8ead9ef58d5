package cluster

import (
	"strings"
	"testing"
)

func TestCPUShare(t *testing.T) {
	// uptime 1000 s, 100 ticks a second: the agent started at 400 s and
	// used 3 s (utime 200 + stime 100 ticks) in its 600 s.
	got := cpuShare([]string{
		"1000.00 100 200 100 40000 /usr/bin/gallium-net agent",
		"1000.00 100 1500 500 10000 /usr/bin/gallium-net cluster serve",
		"garbage",
		"1000.00 100 1 1 100000 /usr/bin/gallium-net born-later",
	})
	want := "agent 0.5% (3s in 10m0s), cluster serve 2.2% (20s in 15m0s)"
	if got != want {
		t.Errorf("cpuShare:\n got %s\nwant %s", got, want)
	}
}

func TestMoverXMLPinsTheMachine(t *testing.T) {
	x := moverXML()
	if !strings.Contains(x, "machine='"+moverMachine+"'") || strings.Contains(x, "machine='pc'") {
		t.Errorf("mover's XML does not pin %s:\n%s", moverMachine, x)
	}
}
