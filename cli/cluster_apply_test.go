package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
	"github.com/gallium/gallium-net/plugin/store/storetest"
)

// fakeAgents answer roll-out requests the way gallium-net agents do,
// without touching a host: answer[hv] is the final phase (confirmed when
// unset); silent ones never publish.
type fakeAgents struct {
	st     *store.Store
	mu     sync.Mutex
	answer map[string]string
	asked  map[string][]string // roll-out IDs each hypervisor was asked
	silent map[string]bool
}

// fakeObserved is a host with its four adapters and nothing of gallium-net.
var fakeObserved = json.RawMessage(`{"links":[` +
	`{"name":"eno1","index":2,"kind":"device","mtu":1500,"up":true,"carrier":true},` +
	`{"name":"eno2","index":3,"kind":"device","mtu":1500,"up":true,"carrier":true},` +
	`{"name":"eno3","index":4,"kind":"device","mtu":1500,"up":true,"carrier":true},` +
	`{"name":"eno4","index":5,"kind":"device","mtu":1500,"up":true,"carrier":true}]}`)

func (f *fakeAgents) beat(ctx context.Context, hv string, ro *store.RolloutStatus) error {
	return f.st.PublishHost(ctx, store.HostState{Hypervisor: hv, Heartbeat: time.Now().UTC(), Interval: time.Second,
		StoredRevision: 1, AppliedRevision: 1, InSync: true, Rollout: ro, Observed: fakeObserved}, 0)
}

func (f *fakeAgents) run(ctx context.Context, hvs []string) {
	for ctx.Err() == nil {
		for _, hv := range hvs {
			f.mu.Lock()
			silent, answer := f.silent[hv], f.answer[hv]
			f.mu.Unlock()
			if silent {
				continue
			}
			var ro *store.RolloutStatus
			req, _ := f.st.Rollout(ctx, hv)
			if req != nil {
				f.mu.Lock()
				seen := strings.Contains(strings.Join(f.asked[hv], " "), req.ID)
				if !seen {
					f.asked[hv] = append(f.asked[hv], req.ID)
				}
				f.mu.Unlock()
				ro = &store.RolloutStatus{ID: req.ID, Revision: req.Revision, Phase: store.PhaseApplying, Steps: 2, Started: time.Now()}
				if !seen {
					_ = f.beat(ctx, hv, ro)
					time.Sleep(50 * time.Millisecond)
				}
				ro.Phase = store.PhaseConfirmed
				if answer != "" {
					ro.Phase, ro.Detail = answer, "after the apply hv1 (10.77.0.11) did not answer within 20s; rolled back"
				}
			}
			_ = f.beat(ctx, hv, ro)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestClusterApplyRollsOneAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an etcd member")
	}
	l := newStoreLab(t)
	hv1 := l.hosts["hv1"]
	l.initFirst(hv1)
	h := clusterhome.New(hv1.dir)
	m, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	b, err := etcdstore.Open(m.Client(h))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fa := &fakeAgents{st: store.New(b), answer: map[string]string{}, asked: map[string][]string{}, silent: map[string]bool{}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go fa.run(ctx, []string{"hv1", "hv2", "hv3"})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if hosts, _ := fa.st.Hosts(t.Context()); len(hosts) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake agents did not publish")
		}
	}

	specPath := filepath.Join(l.root, "spec.yaml")
	if err := os.WriteFile(specPath, []byte(storetest.SpecYAML("lab", "52:54:00")), 0o644); err != nil {
		t.Fatal(err)
	}
	apply := func(extra ...string) (string, error) {
		out, errOut, err := l.gn(t.Context(), append(hv1.args("cluster", "apply", "-f", specPath), extra...)...)
		return out + errOut, err
	}

	// --dry-run plans against what each agent published, stores nothing.
	out, err := apply("--dry-run")
	if err != nil || strings.Count(out, "# hypervisor ") != 3 || !strings.Contains(out, "gb-infra") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if _, err := fa.st.Spec(t.Context()); err == nil {
		t.Fatal("--dry-run stored the spec")
	}

	out, err = apply()
	if err != nil {
		t.Fatalf("cluster apply: %v\n%s", err, out)
	}
	for _, want := range []string{"stored spec revision 1", "[1/3] hv1: confirmed", "[2/3] hv2: confirmed", "[3/3] hv3: confirmed", "revision 1 applied on 3 hypervisors"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// hv2 rolls back: the roll-out stops there and hv3 is never asked.
	fa.mu.Lock()
	fa.answer["hv2"] = store.PhaseRolledBack
	asked3 := len(fa.asked["hv3"])
	fa.mu.Unlock()
	changed := strings.Replace(storetest.SpecYAML("lab", "52:54:00"), "vlan: 100", "vlan: 101", 1)
	if err := os.WriteFile(specPath, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = apply()
	if err == nil || exitCode(err) != exitFailure {
		t.Fatalf("cluster apply with hv2 rolling back: %v\n%s", err, out)
	}
	for _, want := range []string{"[2/3] hv2: rolled-back", "stopped at hv2", "hv3 not touched", "run 'gallium-net cluster apply -f"} {
		if !strings.Contains(out+err.Error(), want) {
			t.Errorf("output lacks %q:\n%s\n%v", want, out, err)
		}
	}
	fa.mu.Lock()
	if len(fa.asked["hv3"]) != asked3 {
		t.Errorf("hv3 was asked after hv2 rolled back: %v", fa.asked["hv3"])
	}
	fa.answer["hv2"] = ""
	fa.silent["hv3"] = true
	fa.mu.Unlock()

	// A hypervisor whose agent is silent stops the roll-out before it is
	// asked, with the fix.
	time.Sleep(3500 * time.Millisecond) // three intervals of 1 s: hv3 is stale
	if err := os.WriteFile(specPath, []byte(strings.Replace(changed, "vlan: 101", "vlan: 102", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = apply()
	if err == nil || !strings.Contains(err.Error(), "no heartbeat from hv3's agent") || !strings.Contains(out, "[2/3] hv2: confirmed") {
		t.Fatalf("cluster apply with hv3's agent down: %v\n%s", err, out)
	}

	// cluster status names the silent hypervisor and fails.
	out, _, err = l.gn(t.Context(), hv1.args("cluster", "status", "-o", "json")...)
	var st clusterStatus
	if jerr := json.Unmarshal([]byte(out), &st); jerr != nil || err == nil || st.OK {
		t.Fatalf("status with hv3 down: ok %v, err %v, %v\n%s", st.OK, err, jerr, out)
	}
	if len(st.Hypervisors) != 3 || st.Hypervisors[2].Reachable || !st.Hypervisors[0].Reachable {
		t.Errorf("hypervisors in the status: %+v", st.Hypervisors)
	}
	if !strings.Contains(strings.Join(st.Issues, "\n"), "hypervisor hv3: no heartbeat") {
		t.Errorf("issues: %v", st.Issues)
	}
}

// On a member, commands take the stored spec; -f still wins, and says so.
func TestStoredSpecIsTheSource(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an etcd member")
	}
	l := newStoreLab(t)
	hv1 := l.hosts["hv1"]
	l.initFirst(hv1)
	cfg := []string{"--config", filepath.Join(filepath.Dir(hv1.dir), "none.yaml")}
	// list has no --config: the environment names this host's settings.
	t.Setenv("GALLIUM_NET_CONFIG", cfg[1])
	file := filepath.Join(l.root, "spec.yaml")
	if err := os.WriteFile(file, []byte(storetest.SpecYAML("lab", "52:54:00")), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(l.root, "other.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(storetest.SpecYAML("lab", "52:54:00"), "name: prod", "name: other", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.must(append([]string{"spec", "push", "-f", file}, cfg...)...)
	// No -f: the stored spec, even with no file at the default path.
	out, errOut, err := l.gn(t.Context(), "list", "networks", "-o", "json")
	if err != nil || !strings.Contains(out, `"prod"`) || errOut != "" {
		t.Fatalf("list networks from the store: %v\n%s\n%s", err, out, errOut)
	}
	// -f: the file, and a note naming the stored revision.
	out, errOut, err = l.gn(t.Context(), "list", "networks", "-o", "json", "-f", other)
	if err != nil || !strings.Contains(out, `"other"`) || !strings.Contains(errOut, "not the store's spec revision 1") {
		t.Fatalf("list networks -f: %v\n%s\n%s", err, out, errOut)
	}
	// The store out of reach: the file, with a note.
	l.halt(hv1)
	start := time.Now()
	_, errOut, _ = l.gn(t.Context(), "list", "networks", "-o", "json")
	if !strings.Contains(errOut, "out of reach") {
		t.Fatalf("list networks with the store down: %s", errOut)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("falling back to the file took %v", d)
	}
}
