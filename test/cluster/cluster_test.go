//go:build cluster

package cluster

import (
	"testing"
)

// TestCluster is issue 7's story as a test: every step of the run checks
// what it did (see scenario.go), and the figures of the faults must have
// been measured. It is the cluster tier of make test.
func TestCluster(t *testing.T) {
	ctx := begin(t)
	s, err := New(Options{Logf: t.Logf, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closeOnSignal(s.Close)
	t.Cleanup(s.Close)
	for i, st := range s.Steps() {
		if !t.Run(st.Name, func(t *testing.T) {
			if err := s.RunStep(ctx, i, st); err != nil {
				t.Fatal(err)
			}
		}) {
			t.FailNow()
		}
	}
	r := s.Report
	t.Run("figures", func(t *testing.T) {
		if r.Failover.Sent == 0 || r.Failover.To == "" || r.Failover.To == r.Failover.From {
			t.Errorf("bond failover not measured: %+v", r.Failover)
		}
		if r.Failover.BackTo != r.Failover.From || r.Failover.BackSent == 0 {
			t.Errorf("bond failback not measured: %+v", r.Failover)
		}
		if r.Etcd.NewLeader == "" || r.Etcd.NewLeader == r.Etcd.Killed || r.Etcd.Writes == 0 {
			t.Errorf("etcd leader loss not measured: %+v", r.Etcd)
		}
		if r.VIP.NewHolder == "" || r.VIP.NewHolder == r.VIP.Stopped || r.VIP.Sent == 0 {
			t.Errorf("VIP takeover not measured: %+v", r.VIP)
		}
		if len(r.NICs) != 6 || r.MACs.Burst != 3*burstPerHV {
			t.Errorf("want 6 VM NICs and %d burst MACs, got %d and %d", 3*burstPerHV, len(r.NICs), r.MACs.Burst)
		}
		if len(r.Hypervisors) != 3 {
			t.Errorf("the report covers %d hypervisors, want 3", len(r.Hypervisors))
		}
		t.Logf("failover %s, failback %s (%d probes lost), etcd write gap %s, VIP gap ~%s (VIP seen on the new holder after %s)",
			r.Failover.Switch, r.Failover.Back, r.Failover.BackLost, r.Etcd.WriteGap, r.VIP.Outage, r.VIP.SeenAfter)
	})
}
