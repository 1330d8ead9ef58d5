// Package labwire holds the JSON lines that labtool (the lab's in-guest
// helper) prints, so that labtool and the host-side tests that read them
// (test/lab's failover test, test/cluster's faults) share one definition.
package labwire

// ProbeStats is what labtool probe prints (one JSON line).
type ProbeStats struct {
	Sent       int      `json:"sent"`
	Received   int      `json:"received"`
	Lost       int      `json:"lost"`
	MaxBurst   int      `json:"maxBurst"`   // longest run of consecutive lost probes
	LostRanges []string `json:"lostRanges"` // first..last seq of each run, at most 10
	MaxRTTms   float64  `json:"maxRTTms"`
	IntervalMs float64  `json:"intervalMs"`
	DurationMs float64  `json:"durationMs"`
}

// BondEvent is one line of labtool watch-bond.
type BondEvent struct {
	Ms     float64 `json:"ms"` // since watch-bond started (monotonic)
	Event  string  `json:"event"`
	Dev    string  `json:"dev"`
	Up     bool    `json:"up,omitempty"`
	Active string  `json:"active,omitempty"`
}
