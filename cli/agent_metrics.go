package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gallium/gallium-net/plugin/store"
)

// agentMetrics are the agent's Prometheus metrics. A nil *agentMetrics
// (no --metrics-address) records nothing.
type agentMetrics struct {
	stored, appliedRev, drift, inSync, heartbeat prometheus.Gauge
	applyDuration, applyOK                       prometheus.Gauge
	applies                                      *prometheus.CounterVec
	failovers                                    *prometheus.CounterVec
}

// serveMetrics registers the metrics on a registry of their own (no Go
// runtime noise by default) and serves them on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string) (*agentMetrics, error) {
	reg := prometheus.NewRegistry()
	g := func(name, help string) prometheus.Gauge {
		m := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gallium_net", Name: name, Help: help})
		reg.MustRegister(m)
		return m
	}
	m := &agentMetrics{
		stored:        g("spec_revision_stored", "Spec revision in the cluster store."),
		appliedRev:    g("spec_revision_applied", "Spec revision this hypervisor is converged to."),
		drift:         g("drift_items", "Differences between this hypervisor and the stored spec (host steps, libvirt networks)."),
		inSync:        g("in_sync", "1 when this hypervisor matches the stored spec."),
		heartbeat:     g("agent_heartbeat_timestamp_seconds", "When the agent last published this host's state."),
		applyDuration: g("last_apply_duration_seconds", "Duration of the agent's last host apply."),
		applyOK:       g("last_apply_success", "1 when the agent's last host apply succeeded."),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gallium_net", Name: "applies_total",
			Help: "Host applies by the agent, by result."}, []string{"result"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gallium_net", Name: "bond_failovers_total",
			Help: "Changes of a bond's active adapter seen by the agent."}, []string{"bond"}),
	}
	reg.MustRegister(m.applies, m.failovers, collectors.NewGoCollector())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %s: %w (set --metrics-address, or empty to serve none)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics endpoint", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	slog.Info("agent metrics", "address", "http://"+ln.Addr().String()+"/metrics")
	return m, nil
}

func (m *agentMetrics) observe(hs store.HostState) {
	if m == nil {
		return
	}
	m.stored.Set(float64(hs.StoredRevision))
	m.appliedRev.Set(float64(hs.AppliedRevision))
	m.drift.Set(float64(len(hs.Drift)))
	m.inSync.Set(b2f(hs.InSync))
	m.heartbeat.Set(float64(hs.Heartbeat.Unix()))
}

func (m *agentMetrics) applied(r *store.ApplyResult) {
	if m == nil || r == nil {
		return
	}
	m.applyDuration.Set(r.Took.Seconds())
	m.applyOK.Set(b2f(r.Error == ""))
	result := "success"
	if r.Error != "" {
		result = "failure"
	}
	m.applies.WithLabelValues(result).Inc()
}

func (m *agentMetrics) failover(bond string) {
	if m != nil {
		m.failovers.WithLabelValues(bond).Inc()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func jsonRaw(v any) (json.RawMessage, error) { return json.Marshal(v) }

// holdsAddr says whether ip is configured on a local interface (the VIP
// on its holder).
func holdsAddr(ip string) bool {
	want, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == want {
			return true
		}
	}
	return false
}
