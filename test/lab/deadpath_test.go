package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

// deadPathWindow is how long a dead path is watched: a bond that has not
// moved its traffic by then never will (miimon sees only carrier).
const deadPathWindow = 5 * time.Second

// deadPathRuns is how many ARP failovers TestDeadPath measures.
const deadPathRuns = 3

// deadPathResult is one dead path: the active adapter's switch port stops
// forwarding while its carrier stays up.
type deadPathResult struct {
	From, To string        // active slave before and after ("" To: no change)
	Host     time.Duration // port wedged -> active_slave change seen through the agent
	Outage   time.Duration // the longest run of lost probes, times the probe interval
	Probes   probeStats
}

func (r deadPathResult) String() string {
	to := r.To
	if to == "" {
		to = "(no change)"
	}
	return fmt.Sprintf("dead path on %s: active %s -> %s after %s (host); traffic back after %s (longest loss burst %d probes); probes lost %d of %d (ranges %v)",
		r.From, r.From, to, r.Host.Round(time.Millisecond), r.Outage, r.Probes.MaxBurst, r.Probes.Lost, r.Probes.Sent, r.Probes.LostRanges)
}

// deadPath wedges the switch port of the bonded VM's active adapter for
// deadPathWindow while the peer probes the bond every 10 ms, with the same
// tools as measure (labtool watch-bond and probe), then frees the port.
func (r *failoverRig) deadPath(ctx context.Context) (deadPathResult, error) {
	var res deadPathResult
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// watch-bond fails when no change comes: the miimon case.
	events, watchDone := r.watchBond(ctx, 2*time.Second+deadPathWindow+time.Second)
	for res.From == "" {
		select {
		case e, ok := <-events:
			if !ok {
				return res, fmt.Errorf("watch-bond ended early: %v", <-watchDone)
			}
			if e.Event == "active" {
				res.From = e.Active
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	nicID := r.bonded.Name + "-" + res.From
	probeOut, probeErr := r.probe(ctx, 2*time.Second+deadPathWindow)
	time.Sleep(2 * time.Second)
	wedged := time.Now()
	if err := r.bonded.SetForwarding(nicID, false); err != nil {
		return res, err
	}
	defer r.bonded.SetForwarding(nicID, true)
	for e := range events {
		if e.host.After(wedged) && e.Event == "active" && e.Active != "" && e.Active != res.From && res.To == "" {
			res.To, res.Host = e.Active, e.host.Sub(wedged)
		}
	}
	<-watchDone
	out := <-probeOut
	if err := <-probeErr; err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &res.Probes); err != nil {
		return res, fmt.Errorf("probe output %q: %v", out, err)
	}
	res.Outage = time.Duration(res.Probes.MaxBurst) * 10 * time.Millisecond
	if err := r.bonded.SetForwarding(nicID, true); err != nil {
		return res, err
	}
	return res, nil
}

// settle waits until both adapters of bond0 are up again and the primary
// (eth0) is active (after a dead path, the ARP monitor needs an answer on
// the freed port first), so that no failback falls into the next run.
func (r *failoverRig) settle(ctx context.Context) error {
	_, err := r.bonded.MustRun(ctx, `i=0; until [ "$(grep -c 'MII Status: up' /proc/net/bonding/bond0)" = 3 ] && [ "$(cat /sys/class/net/bond0/bonding/active_slave)" = eth0 ]; do i=$((i+1)); [ $i -lt 300 ] || { cat /proc/net/bonding/bond0; exit 1; }; sleep 0.05; done; sleep 0.5`)
	return err
}

// TestDeadPath is issue 15's dead path behind a live link: the switch port
// of the bond's active adapter stops forwarding while its carrier stays
// up. With miimon (100 ms) the bond never fails over and loses every probe
// for the whole window; switched in place to ARP monitoring (arp_interval
// 100, the peer as target, arp_validate all, as gallium-net's plan writes
// it) it fails over, measured deadPathRuns times. The test fails if the
// miimon bond fails over or the ARP bond does not.
func TestDeadPath(t *testing.T) {
	lab.NeedLab(t)
	ctx := testCtx(t, 10*time.Minute)
	r := newFailoverRig(t, ctx, true)

	mii, err := r.deadPath(ctx)
	t.Logf("miimon 100: %s", mii)
	if err != nil {
		t.Fatal(err)
	}
	if mii.To != "" {
		t.Errorf("miimon bond failed over (%s -> %s) though the carrier stayed up: the dead path was not dead", mii.From, mii.To)
	}
	if mii.Outage < deadPathWindow-500*time.Millisecond {
		t.Errorf("miimon bond: traffic came back after %s of a %s dead path; it must be lost for the whole window", mii.Outage, deadPathWindow)
	}
	if err := r.settle(ctx); err != nil {
		t.Fatal(err)
	}

	// In place, in the order netsetup's plan writes it: targets and
	// validation first, then arp_interval (the kernel stops miimon).
	for _, cmd := range []string{
		"ip link set bond0 type bond arp_ip_target 10.99.1.2",
		"ip link set bond0 type bond arp_validate all",
		"ip link set bond0 type bond arp_interval 100",
	} {
		mustTB(t, r.bonded, ctx, cmd)
	}
	if got := strings.Fields(mustTB(t, r.bonded, ctx, "cat /sys/class/net/bond0/bonding/miimon /sys/class/net/bond0/bonding/arp_interval /sys/class/net/bond0/bonding/arp_validate")); !slices.Equal(got, []string{"0", "100", "all", "3"}) {
		t.Fatalf("bond0 after the switch: miimon, arp_interval, arp_validate = %v, want 0 100 all 3", got)
	}
	if err := r.settle(ctx); err != nil {
		t.Fatal(err)
	}
	var outages, switches []time.Duration
	for i := 1; i <= deadPathRuns; i++ {
		arp, err := r.deadPath(ctx)
		t.Logf("ARP run %d: %s", i, arp)
		if err != nil {
			t.Fatal(err)
		}
		if arp.To == "" {
			t.Fatalf("ARP run %d: the bond did not fail over from %s within %s", i, arp.From, deadPathWindow)
		}
		if arp.Probes.Received == 0 || arp.Outage >= deadPathWindow-500*time.Millisecond {
			t.Fatalf("ARP run %d: traffic did not come back (%d of %d probes lost)", i, arp.Probes.Lost, arp.Probes.Sent)
		}
		outages, switches = append(outages, arp.Outage), append(switches, arp.Host)
		if err := r.settle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	logSegment(t, "fo")
	slices.Sort(outages)
	slices.Sort(switches)
	fmt.Printf("DEAD PATH RESULT: miimon 100: no failover, %d of %d probes lost, traffic lost for the whole %s window; ARP (100 ms, validate all) over %d runs: traffic back after min %s median %s max %s; active change seen on the host after min %s median %s max %s\n",
		mii.Probes.Lost, mii.Probes.Sent, deadPathWindow, deadPathRuns,
		outages[0], outages[len(outages)/2], outages[len(outages)-1],
		switches[0].Round(time.Millisecond), switches[len(switches)/2].Round(time.Millisecond), switches[len(switches)-1].Round(time.Millisecond))
}
