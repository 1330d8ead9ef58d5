package netsetup

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/gallium/gallium-net/plugin/model"
)

// Step is one write of a plan with the writes that undo it.
type Step struct {
	Op Op `json:"op" yaml:"op"`
	// Cmd is Op as an ip/bridge command line.
	Cmd string `json:"cmd" yaml:"cmd"`
	// Disruptive steps (re-creating or deleting a bond or bridge) cut traffic
	// and need AllowDisruptive.
	Disruptive bool `json:"disruptive,omitempty" yaml:"disruptive,omitempty"`
	// Why says what the step is for, when the command alone does not.
	Why string `json:"why,omitempty" yaml:"why,omitempty"`
	// Undo restores what Op changed, in order.
	Undo []Op `json:"-" yaml:"-"`
}

func (s Step) String() string {
	line := s.Cmd
	if s.Disruptive {
		line += "  # DISRUPTIVE"
		if s.Why != "" {
			line += ": " + s.Why
		}
	}
	return line
}

// Plan is the ordered list of steps that takes a host from its observed state
// to the desired one.
type Plan struct {
	Steps []Step `json:"steps" yaml:"steps"`
	// Touched lists the links the plan changes, sorted.
	Touched []string `json:"touched,omitempty" yaml:"touched,omitempty"`
	// Route reports whether the plan changes the default route.
	Route bool `json:"route,omitempty" yaml:"route,omitempty"`
	// Refused says why apply refuses the plan (the running kernel lacks a
	// feature it needs), "" when it can run it. Only Preview returns such
	// a plan: it shows what apply would do on a kernel that has them.
	Refused string `json:"refused,omitempty" yaml:"refused,omitempty"`
}

// Empty reports whether the host is converged.
func (p *Plan) Empty() bool { return len(p.Steps) == 0 }

// Disruptive reports whether any step is disruptive.
func (p *Plan) Disruptive() bool {
	for _, s := range p.Steps {
		if s.Disruptive {
			return true
		}
	}
	return false
}

// Lines returns the steps as command lines.
func (p *Plan) Lines() []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.String()
	}
	return out
}

func (p *Plan) String() string {
	if p.Empty() {
		return "# converged: nothing to do\n"
	}
	return strings.Join(p.Lines(), "\n") + "\n"
}

// Touches reports whether the plan changes any of links (or, when route is
// true, the default route).
func (p *Plan) Touches(links []string, route bool) bool {
	if route && p.Route {
		return true
	}
	for _, t := range p.Touched {
		for _, l := range links {
			if t == l {
				return true
			}
		}
	}
	return false
}

// ChangesManagement reports whether the plan changes what may cut this host
// off: the default route, the infrastructure bond, bridge and adapters of d,
// or whatever link carries the management IP now (obs). An apply of such a
// plan is what commit-confirm guards (netsetup/confirm).
func (p *Plan) ChangesManagement(d *HostState, obs *Snapshot) bool {
	links := d.ManagementLinks()
	for _, l := range obs.Links {
		for _, a := range l.Addrs {
			if a == d.ManagementIP {
				links = append(links, l.Name)
			}
		}
	}
	return p.Touches(links, true)
}

// target is what the planner converges to: a desired state from the spec,
// or a snapshot to restore.
type target struct {
	// links are the owned links (bonds first, then bridges). Index and MAC,
	// when set, are used on creation (restoring a snapshot).
	links []Link
	// macFrom pins a bridge's MAC to another link's (bridge -> bond).
	macFrom map[string]string
	// adapters are links gallium-net does not create. Master is managed;
	// Up, MTU and VLANs only when restoring; Addrs always (nil: none).
	adapters []Link
	restore  bool
	// route: managed when manageRoute; nil means no default route.
	route       *Route
	manageRoute bool
	// removeOwned deletes owned links that are not in links.
	removeOwned bool
	// keepAddrs are, per link, IPs another daemon manages there (the VIP):
	// never deleted, never added.
	keepAddrs map[string][]string
}

func (h *HostState) target() *target {
	t := &target{macFrom: map[string]string{}, removeOwned: true}
	for _, g := range h.Groups {
		cfg := g.BondConfig
		t.links = append(t.links, Link{Name: g.Bond, Kind: "bond", MTU: g.MTU, Up: true, Master: g.Bridge, Bond: &cfg, VLANs: g.PortVLANs})
		for _, a := range g.Adapters {
			t.adapters = append(t.adapters, Link{Name: a, Master: g.Bond})
		}
	}
	for _, g := range h.Groups {
		t.links = append(t.links, Link{Name: g.Bridge, Kind: "bridge", MTU: g.MTU, Up: true, VLANFiltering: true, VLANs: g.BridgeVLANs, Addrs: g.Addrs})
		t.macFrom[g.Bridge] = g.Bond
	}
	t.keepAddrs = h.KeepAddrsByLink()
	if h.DefaultRoute != nil {
		r := *h.DefaultRoute
		t.route, t.manageRoute = &r, true
	}
	return t
}

// restoreTarget converges to snap exactly: its owned links, the other links
// it holds, and its default route.
func restoreTarget(snap *Snapshot) *target {
	t := &target{restore: true, route: snap.DefaultRoute, manageRoute: true, removeOwned: true, keepAddrs: snap.KeepAddrs}
	s := snap.Clone()
	for _, kind := range []string{"bond", "bridge"} {
		for _, l := range s.Links {
			if model.Owned(l.Name) && l.Kind == kind {
				t.links = append(t.links, l)
			}
		}
	}
	for _, l := range s.Links {
		if !model.Owned(l.Name) || (l.Kind != "bond" && l.Kind != "bridge") {
			t.adapters = append(t.adapters, l)
		}
	}
	return t
}

// PlanError is a reason the host cannot be converged without the operator.
type PlanError struct{ Msg string }

func (e *PlanError) Error() string { return e.Msg }

// MakePlan diffs observed against the desired state and returns the steps.
// It runs every step on a simulated copy of the host to predict its effect.
// A plan the running kernel cannot carry out is a PlanError that says what
// the kernel lacks (Preview shows it anyway).
func MakePlan(desired *HostState, observed *Snapshot) (*Plan, error) {
	p, err := Preview(desired, observed)
	if err != nil {
		return nil, err
	}
	if p.Refused != "" {
		return nil, &PlanError{p.Refused}
	}
	return p, nil
}

// Preview is MakePlan for showing a plan: on a kernel that lacks bonding
// or bridge VLAN filtering it still plans, as if the kernel had them, and
// says in Plan.Refused why apply refuses the plan. `host plan` printed
// nothing there and `host status` counted one pending step without saying
// why.
func Preview(desired *HostState, observed *Snapshot) (*Plan, error) {
	var lacks []string
	if observed.NoBonding {
		lacks = append(lacks, "no bonding driver (CONFIG_BONDING), which the adapter groups' bonds need")
	}
	if observed.NoBridgeVLANs {
		lacks = append(lacks, "no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), which gallium-net's bridges need")
	}
	if err := checkAdapters(desired, observed); err != nil {
		return nil, err
	}
	if len(lacks) == 0 {
		return plan(desired.target(), observed)
	}
	full := observed.Clone()
	full.NoBonding, full.NoBridgeVLANs = false, false
	p, err := plan(desired.target(), full)
	if err != nil {
		return nil, err
	}
	p.Refused = fmt.Sprintf("hypervisor %s: the running kernel has %s; apply refuses this plan: boot a distribution kernel (Debian's has both)", desired.Hypervisor, strings.Join(lacks, " and "))
	return p, nil
}

// checkAdapters refuses a host whose adapters the spec cannot take over.
func checkAdapters(desired *HostState, observed *Snapshot) error {
	for _, a := range desired.Adapters() {
		l := observed.Link(a)
		if l == nil {
			return &PlanError{fmt.Sprintf("hypervisor %s: adapter %s does not exist on this host; fix the adapter name in the spec or check the NIC", desired.Hypervisor, a)}
		}
		if l.Master != "" && !model.Owned(l.Master) {
			return &PlanError{fmt.Sprintf("hypervisor %s: adapter %s is enslaved to %s, which gallium-net does not manage; release it first (ip link set %s nomaster) or remove it from the spec", desired.Hypervisor, a, l.Master, a)}
		}
		if model.Owned(a) {
			return &PlanError{fmt.Sprintf("hypervisor %s: adapter %s has a name gallium-net uses for its own links", desired.Hypervisor, a)}
		}
	}
	return nil
}

// RestorePlan returns the steps that take the host from observed back to
// snap (a commit-confirm rollback).
func RestorePlan(snap, observed *Snapshot) (*Plan, error) {
	return plan(restoreTarget(snap), observed)
}

type planner struct {
	t       *target
	sim     *SimKernel
	plan    *Plan
	touched map[string]bool
	created map[string]bool
}

func plan(t *target, observed *Snapshot) (*Plan, error) {
	p := &planner{t: t, sim: NewSimKernelFrom(observed), plan: &Plan{}, touched: map[string]bool{}, created: map[string]bool{}}
	if err := p.run(); err != nil {
		return nil, err
	}
	for l := range p.touched {
		p.plan.Touched = append(p.plan.Touched, l)
	}
	sort.Strings(p.plan.Touched)
	return p.plan, nil
}

func (p *planner) cur() *Snapshot {
	s, _ := p.sim.Observe()
	return s
}

// emit simulates op, records it as a step with its undo.
func (p *planner) emit(op Op, disruptive bool, why string) error {
	pre := p.cur()
	if err := p.sim.Do(op); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	post := p.cur()
	undo, err := undoOps(op, pre, post, p.t.keepAddrs)
	if err != nil {
		return err
	}
	p.plan.Steps = append(p.plan.Steps, Step{Op: op, Cmd: op.String(), Disruptive: disruptive, Why: why, Undo: undo})
	switch op.Kind {
	case OpRouteReplace, OpRouteDel:
		p.plan.Route = true
		if pre.DefaultRoute != nil {
			p.touched[pre.DefaultRoute.Dev] = true
		}
		p.touched[op.Route.Dev] = true
	case OpAddBond, OpAddBridge, OpDel, OpSetBond, OpSetFiltering, OpSetMTU, OpSetUp, OpSetMaster, OpSetMAC, OpVLANAdd, OpVLANDel, OpAddrAdd, OpAddrDel:
		// Every other kind, by name: TestOpKindSwitches then makes a new
		// kind choose between a link and the route here.
		p.touched[op.Link] = true
		if op.Master != "" {
			p.touched[op.Master] = true
		}
	}
	if !pre.DefaultRoute.equal(post.DefaultRoute) {
		p.plan.Route = true
	}
	return nil
}

func (p *planner) targetLink(name string) *Link {
	for i := range p.t.links {
		if p.t.links[i].Name == name {
			return &p.t.links[i]
		}
	}
	return nil
}

// needsRecreate says why an existing owned link cannot be changed in place.
func needsRecreate(want, have *Link) string {
	if want.Kind != have.Kind {
		return fmt.Sprintf("%s is a %s, gallium-net needs a %s", have.Name, orUnknown(have.Kind), want.Kind)
	}
	if want.Kind == "bond" && have.Bond != nil {
		if want.Bond.Mode != have.Bond.Mode {
			return fmt.Sprintf("bond mode %s -> %s needs the bond re-created", have.Bond.Mode, want.Bond.Mode)
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "link of unknown kind"
	}
	return s
}

// run emits the steps phase by phase. The order is what the kernel allows:
// links go before they are re-created, slaves leave a master before they
// join another, a bond exists before its slaves and a bridge before its
// ports, and addresses come last, on links that are up.
func (p *planner) run() error {
	phases := []func() error{
		p.deleteOwned,
		p.changeFailOverMAC,
		p.releaseSlaves,
		p.createOwned,
		p.enslaveAdapters,
		p.settingsInPlace,
		p.ownedIntoBridges,
		p.pinBridgeMACs,
		p.bridgeVLANs,
		p.setUp,
		p.addresses,
	}
	for _, phase := range phases {
		if err := phase(); err != nil {
			return err
		}
	}
	return nil
}

// deleteOwned deletes the owned links that must go: not wanted, or not
// changeable in place.
func (p *planner) deleteOwned() error {
	for _, l := range p.cur().Links {
		if !model.Owned(l.Name) {
			continue
		}
		want := p.targetLink(l.Name)
		why := ""
		switch {
		case want == nil && p.t.removeOwned:
			why = "not in the spec any more"
		case want != nil:
			why = needsRecreate(want, &l)
		}
		if why != "" {
			if err := p.emit(Op{Kind: OpDel, Link: l.Name}, true, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// changeFailOverMAC: fail_over_mac can only change on a bond without
// slaves, so its slaves are released (disruptive); enslaveAdapters puts
// them back.
func (p *planner) changeFailOverMAC() error {
	for _, w := range p.t.links {
		have := p.cur().Link(w.Name)
		if w.Kind != "bond" || have == nil || have.Bond == nil || have.Bond.FailOverMAC == w.Bond.FailOverMAC {
			continue
		}
		for _, s := range p.cur().Links {
			if s.Master == w.Name {
				if err := p.emit(Op{Kind: OpSetMaster, Link: s.Name}, true, "fail_over_mac can only change on a bond without slaves"); err != nil {
					return err
				}
			}
		}
		if err := p.emit(Op{Kind: OpSetBond, Link: w.Name, Option: "fail_over_mac", Value: w.Bond.FailOverMAC}, false, ""); err != nil {
			return err
		}
	}
	return nil
}

// releaseSlaves: adapters that belong elsewhere leave their current (owned)
// master, and slaves of owned bonds that the target does not put there
// leave.
func (p *planner) releaseSlaves() error {
	t := p.t
	for _, a := range t.adapters {
		have := p.cur().Link(a.Name)
		if have == nil || have.Master == "" || have.Master == a.Master || !model.Owned(have.Master) {
			continue
		}
		if err := p.emit(Op{Kind: OpSetMaster, Link: a.Name}, false, ""); err != nil {
			return err
		}
	}
	for _, s := range p.cur().Links {
		m := p.cur().Link(s.Master)
		if !t.removeOwned || m == nil || m.Kind != "bond" || !model.Owned(m.Name) || p.targetLink(s.Name) != nil {
			continue
		}
		wanted := false
		for _, a := range t.adapters {
			if a.Name == s.Name && a.Master == s.Master {
				wanted = true
			}
		}
		if !wanted {
			if err := p.emit(Op{Kind: OpSetMaster, Link: s.Name}, false, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// createOwned creates the missing owned links.
func (p *planner) createOwned() error {
	t := p.t
	for _, w := range t.links {
		if p.cur().Link(w.Name) != nil {
			continue
		}
		op := Op{Link: w.Name, MTU: w.MTU, Index: w.Index}
		if t.restore {
			op.MAC = w.MAC
		}
		if w.Kind == "bond" {
			cfg := *w.Bond
			op.Kind, op.Bond = OpAddBond, &cfg
			if t.restore {
				// A restored bond gets its MAC from its first slave, as
				// the original did (a fixed MAC would change the kernel's
				// address handling).
				op.MAC = ""
			}
		} else {
			op.Kind, op.On = OpAddBridge, w.VLANFiltering
		}
		if err := p.emit(op, false, ""); err != nil {
			return err
		}
		p.created[w.Name] = true
	}
	return nil
}

// enslaveAdapters puts adapters into their master (down first: the kernel
// refuses an up slave). When restoring, the slave whose MAC the bond had
// goes first.
func (p *planner) enslaveAdapters() error {
	adapters := append([]Link(nil), p.t.adapters...)
	if p.t.restore {
		sort.SliceStable(adapters, func(i, j int) bool {
			return p.bondMACOf(adapters[i]) && !p.bondMACOf(adapters[j])
		})
	}
	for _, a := range adapters {
		have := p.cur().Link(a.Name)
		if have == nil || a.Master == "" || have.Master == a.Master {
			continue
		}
		m := p.cur().Link(a.Master)
		if m == nil {
			continue
		}
		if m.Kind == "bond" && have.Up {
			if err := p.emit(Op{Kind: OpSetUp, Link: a.Name, On: false}, false, ""); err != nil {
				return err
			}
		}
		if err := p.emit(Op{Kind: OpSetMaster, Link: a.Name, Master: a.Master}, false, ""); err != nil {
			return err
		}
	}
	return nil
}

// settingsInPlace changes MTU, bond options and VLAN filtering of the owned
// links in place.
func (p *planner) settingsInPlace() error {
	for _, w := range p.t.links {
		have := p.cur().Link(w.Name)
		if have.MTU != w.MTU && w.MTU != 0 {
			if err := p.emit(Op{Kind: OpSetMTU, Link: w.Name, MTU: w.MTU}, false, ""); err != nil {
				return err
			}
		}
		switch w.Kind {
		case "bond":
			if err := p.convergeBond(w); err != nil {
				return err
			}
		case "bridge":
			if have.VLANFiltering != w.VLANFiltering {
				if err := p.emit(Op{Kind: OpSetFiltering, Link: w.Name, On: w.VLANFiltering}, false, ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// convergeBond writes bond w's options one at a time, each diffed against
// the bond as the previous write left it: a miimon change rescales the
// kernel's delays (it counts them in miimon intervals), so they may need
// setting again even if they were right before.
func (p *planner) convergeBond(w Link) error {
	for n := 0; ; n++ {
		ops := bondDiff(w.Bond, p.cur().Link(w.Name).Bond)
		if len(ops) == 0 {
			return nil
		}
		if n > 2*len(bondOptions) {
			return fmt.Errorf("plan: bond %s does not converge to the spec (still to change: %s); check that its delays are multiples of miimon", w.Name, ops[0])
		}
		o := ops[0]
		o.Link = w.Name
		if err := p.emit(o, false, ""); err != nil {
			return err
		}
	}
}

// bondConverge returns the writes that take bond link from its state in
// from to want, each diffed against the simulated result of the previous
// one.
func bondConverge(link string, want *BondConfig, from *Snapshot) ([]Op, error) {
	sim := NewSimKernelFrom(from)
	var out []Op
	for n := 0; ; n++ {
		s, _ := sim.Observe()
		l := s.Link(link)
		if l == nil {
			return nil, fmt.Errorf("bond %s is not on the host", link)
		}
		ops := bondDiff(want, l.Bond)
		if len(ops) == 0 {
			return out, nil
		}
		if n > 2*len(bondOptions) {
			return nil, fmt.Errorf("bond %s does not converge (still to change: %s)", link, ops[0])
		}
		o := ops[0]
		o.Link = link
		if err := sim.Do(o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
}

// ownedIntoBridges puts the owned links (the bonds) into their bridge.
func (p *planner) ownedIntoBridges() error {
	for _, w := range p.t.links {
		have := p.cur().Link(w.Name)
		if have.Master != w.Master {
			if err := p.emit(Op{Kind: OpSetMaster, Link: w.Name, Master: w.Master}, false, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// pinBridgeMACs gives each bridge the MAC of the link the target names
// (its bond), or when restoring the MAC it had.
func (p *planner) pinBridgeMACs() error {
	t := p.t
	for _, w := range t.links {
		have := p.cur().Link(w.Name)
		if from := t.macFrom[w.Name]; from != "" {
			src := p.cur().Link(from)
			// A new bridge is pinned even when it already has the bond's
			// MAC: unpinned, it would follow its lowest port MAC.
			if src != nil && (src.MAC != have.MAC || p.created[w.Name]) {
				if err := p.emit(Op{Kind: OpSetMAC, Link: w.Name, MACFrom: from, MAC: src.MAC}, false, ""); err != nil {
					return err
				}
			}
		} else if t.restore && w.MAC != "" && w.MAC != have.MAC && w.Kind == "bridge" {
			if err := p.emit(Op{Kind: OpSetMAC, Link: w.Name, MAC: w.MAC}, false, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// bridgeVLANs sets the VLANs of bridge ports, then of the bridges
// themselves.
func (p *planner) bridgeVLANs() error {
	t := p.t
	var vlanLinks []Link
	for _, w := range t.links {
		if w.Master != "" || w.Kind == "bridge" {
			vlanLinks = append(vlanLinks, w)
		}
	}
	if t.restore {
		for _, a := range t.adapters {
			if m := p.cur().Link(a.Master); m != nil && m.Kind == "bridge" {
				vlanLinks = append(vlanLinks, a)
			}
		}
	}
	for _, w := range vlanLinks {
		have := p.cur().Link(w.Name)
		if have == nil {
			continue
		}
		self := w.Kind == "bridge" && model.Owned(w.Name)
		if !self {
			if m := p.cur().Link(have.Master); m == nil || m.Kind != "bridge" {
				continue
			}
		}
		if err := p.vlans(w.Name, w.VLANs, have.VLANs, self); err != nil {
			return err
		}
	}
	return nil
}

// setUp brings the owned links up (or down); when restoring, the adapters
// outside a bond get back their MTU and state too.
func (p *planner) setUp() error {
	t := p.t
	for _, w := range t.links {
		if have := p.cur().Link(w.Name); have.Up != w.Up {
			if err := p.emit(Op{Kind: OpSetUp, Link: w.Name, On: w.Up}, false, ""); err != nil {
				return err
			}
		}
	}
	if !t.restore {
		return nil
	}
	for _, a := range t.adapters {
		have := p.cur().Link(a.Name)
		if have == nil {
			continue
		}
		if a.Master == "" && a.MTU != 0 && have.MTU != a.MTU {
			if err := p.emit(Op{Kind: OpSetMTU, Link: a.Name, MTU: a.MTU}, false, ""); err != nil {
				return err
			}
		}
		if m := p.cur().Link(a.Master); have.Up != a.Up && (m == nil || m.Kind != "bond") {
			if err := p.emit(Op{Kind: OpSetUp, Link: a.Name, On: a.Up}, false, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// addresses: on gallium's own links, old addresses go first: the kernel
// deletes secondaries with their primary, so adding the new management IP
// before deleting the old one in the same subnet would lose it. Then
// additions, the default route, and last the addresses of other links (the
// old home of the management IP).
func (p *planner) addresses() error {
	t := p.t
	if err := p.delAddrs(t.links); err != nil {
		return err
	}
	if err := p.addAddrs(); err != nil {
		return err
	}
	if err := p.defaultRoute(); err != nil {
		return err
	}
	if err := p.delAddrs(t.adapters); err != nil {
		return err
	}
	// A route lost on the way (its device went down or lost its address)
	// comes back when restoring.
	if t.manageRoute && t.route != nil && !t.route.equal(p.cur().DefaultRoute) {
		r := *t.route
		if err := p.emit(Op{Kind: OpRouteReplace, Route: &r}, false, ""); err != nil {
			return err
		}
	}
	return nil
}

// addAddrs adds the target's addresses that links and adapters lack.
func (p *planner) addAddrs() error {
	all := append(append([]Link(nil), p.t.links...), p.t.adapters...)
	for _, w := range all {
		have := p.cur().Link(w.Name)
		if have == nil {
			continue
		}
		for _, a := range w.Addrs {
			if !contains(have.Addrs, a) && !p.kept(w.Name, a) {
				if err := p.emit(Op{Kind: OpAddrAdd, Link: w.Name, Addr: a}, false, ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// defaultRoute replaces or deletes the default route when the target
// manages it.
func (p *planner) defaultRoute() error {
	t := p.t
	if !t.manageRoute {
		return nil
	}
	have := p.cur().DefaultRoute
	switch {
	case t.route == nil && have != nil:
		return p.emit(Op{Kind: OpRouteDel, Route: have}, false, "")
	case t.route != nil && !t.route.equal(have):
		r := *t.route
		return p.emit(Op{Kind: OpRouteReplace, Route: &r}, false, "")
	}
	return nil
}

// delAddrs removes the addresses of links that the target does not have.
func (p *planner) delAddrs(links []Link) error {
	for _, w := range links {
		have := p.cur().Link(w.Name)
		if have == nil {
			continue
		}
		for _, a := range have.Addrs {
			if !contains(w.Addrs, a) && !p.kept(w.Name, a) {
				if err := p.emit(Op{Kind: OpAddrDel, Link: w.Name, Addr: a}, false, ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// kept reports whether addr (CIDR) on link is another daemon's (the VIP):
// the one rule for both directions, deleting and adding.
func (p *planner) kept(link, addr string) bool {
	for _, ip := range p.t.keepAddrs[link] {
		if HasIP([]string{addr}, ip) {
			return true
		}
	}
	return false
}

// HasIP reports whether one of addrs (CIDR, as a Snapshot lists them) is
// ip, whatever its prefix length: keepalived adds the VIP as /24 or /32.
func HasIP(addrs []string, ip string) bool {
	want := net.ParseIP(ip)
	for _, a := range addrs {
		if got, _, err := net.ParseCIDR(a); err == nil && want != nil && got.Equal(want) {
			return true
		}
	}
	return false
}

// bondMACOf reports whether adapter a's MAC is the MAC its target bond had.
func (p *planner) bondMACOf(a Link) bool {
	for _, w := range p.t.links {
		if w.Name == a.Master && w.Kind == "bond" {
			return w.MAC != "" && w.MAC == a.MAC
		}
	}
	return false
}

func (p *planner) vlans(link string, want, have []VLAN, self bool) error {
	// Adds and flag changes first (a PVID moves in one write), then deletes.
	for _, w := range want {
		i := vlanIndex(have, w.VID)
		if i >= 0 && have[i] == w {
			continue
		}
		if err := p.emit(Op{Kind: OpVLANAdd, Link: link, VLAN: w, Self: self}, false, ""); err != nil {
			return err
		}
	}
	for _, h := range have {
		if vlanIndex(want, h.VID) < 0 {
			if err := p.emit(Op{Kind: OpVLANDel, Link: link, VLAN: VLAN{VID: h.VID}, Self: self}, false, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// bondOptions are the options changed in place, in the order they are
// written to a bond that is to use MII monitoring: miimon first (from ARP
// monitoring, it makes the kernel stop that monitor and reset
// arp_validate), before the delays that the kernel checks against it, and
// the ARP targets cleared once no monitor uses them.
var bondOptions = []string{"fail_over_mac", "miimon", "arp_interval", "arp_validate", "arp_ip_target", "primary", "primary_reselect", "num_grat_arp", "peer_notif_delay", "updelay", "downdelay"}

// arpBondOptions is the order for a bond that is to use ARP monitoring:
// the miimon-based delays go to 0 while miimon still runs (the kernel
// refuses them without it, and would keep them as counts that come back
// with miimon), the targets and arp_validate are in place before
// arp_interval starts the ARP monitor (which makes the kernel stop
// miimon: miimon 0 then needs no write of its own).
var arpBondOptions = []string{"fail_over_mac", "peer_notif_delay", "updelay", "downdelay", "arp_ip_target", "arp_validate", "arp_interval", "miimon", "primary", "primary_reselect", "num_grat_arp"}

// bondDiff returns the in-place option changes from have to want, in the
// order they are to be written (the first is written, then the bond is
// diffed again: one write may change other options).
func bondDiff(want, have *BondConfig) []Op {
	if have == nil {
		return nil
	}
	order := bondOptions
	if want.ArpInterval > 0 {
		order = arpBondOptions
	}
	var out []Op
	for _, opt := range order {
		w, h := bondOption(want, opt), bondOption(have, opt)
		if opt == "primary" && w == "" {
			continue // no primary wanted: leave what the kernel has
		}
		if w != h {
			out = append(out, Op{Kind: OpSetBond, Option: opt, Value: w})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// undoOps returns the writes that take the host from post back to pre after
// op. A deleted link is re-created by a restore plan of its neighbourhood.
func undoOps(op Op, pre, post *Snapshot, keep map[string][]string) ([]Op, error) {
	var out []Op
	preL, postL := pre.Link(op.Link), post.Link(op.Link)
	switch op.Kind {
	case OpAddBond, OpAddBridge:
		out = append(out, Op{Kind: OpDel, Link: op.Link})
	case OpDel:
		// Restore the link and everything attached to it.
		names := []string{op.Link}
		for _, l := range pre.Links {
			if l.Master == op.Link {
				names = append(names, l.Name)
			}
		}
		if preL.Master != "" {
			names = append(names, preL.Master)
		}
		sub := &Snapshot{DefaultRoute: pre.DefaultRoute, KeepAddrs: keep}
		for _, n := range names {
			sub.Links = append(sub.Links, *pre.Link(n))
		}
		t := restoreTarget(sub)
		t.removeOwned = false
		t.manageRoute = !pre.DefaultRoute.equal(post.DefaultRoute)
		rp, err := plan(t, post)
		if err != nil {
			return nil, fmt.Errorf("plan the undo of %q: %w", op, err)
		}
		for _, s := range rp.Steps {
			out = append(out, s.Op)
		}
		return out, nil
	case OpSetBond:
		// One option may change others (miimon scales the delays and
		// stops ARP monitoring; arp_interval stops miimon): the undo
		// converges the whole bond back, in the order the kernel needs.
		// A primary the kernel did not report stays (clearing it is
		// "primary ''" in iproute2, which netlink cannot express).
		ops, err := bondConverge(op.Link, preL.Bond, post)
		if err != nil {
			return nil, fmt.Errorf("plan the undo of %q: %w", op, err)
		}
		out = append(out, ops...)
	case OpSetFiltering:
		out = append(out, Op{Kind: OpSetFiltering, Link: op.Link, On: preL.VLANFiltering})
	case OpSetMTU:
		out = append(out, Op{Kind: OpSetMTU, Link: op.Link, MTU: preL.MTU})
	case OpSetUp:
		out = append(out, Op{Kind: OpSetUp, Link: op.Link, On: preL.Up})
	case OpSetMaster:
		switch {
		case preL.Master == "":
			out = append(out, Op{Kind: OpSetMaster, Link: op.Link})
			if m := post.Link(op.Master); m != nil && m.Kind == "bond" && preL.Up {
				// A released slave comes back closed (with its own MAC).
				out = append(out, Op{Kind: OpSetUp, Link: op.Link, On: true})
			}
		default:
			if m := pre.Link(preL.Master); m != nil && m.Kind == "bond" && postL.Up {
				out = append(out, Op{Kind: OpSetUp, Link: op.Link, On: false})
			}
			out = append(out, Op{Kind: OpSetMaster, Link: op.Link, Master: preL.Master})
			if m := pre.Link(preL.Master); m != nil && m.Kind == "bridge" {
				dflt := []VLAN{{VID: 1, PVID: true, Untagged: true}}
				if pre.NoBridgeVLANs {
					dflt = nil
				}
				out = append(out, vlanRestore(op.Link, preL.VLANs, dflt, false)...)
			}
		}
		// An unpinned bond or bridge MAC that moved with the change.
		for _, name := range []string{preL.Master, op.Master} {
			if a, b := pre.Link(name), post.Link(name); a != nil && b != nil && a.MAC != b.MAC && a.Kind == "bridge" {
				out = append(out, Op{Kind: OpSetMAC, Link: name, MAC: a.MAC})
			}
		}
	case OpSetMAC:
		out = append(out, Op{Kind: OpSetMAC, Link: op.Link, MAC: preL.MAC})
	case OpVLANAdd, OpVLANDel:
		out = append(out, vlanRestore(op.Link, preL.VLANs, postL.VLANs, op.Self)...)
	case OpAddrAdd:
		out = append(out, Op{Kind: OpAddrDel, Link: op.Link, Addr: op.Addr})
	case OpAddrDel:
		out = append(out, Op{Kind: OpAddrAdd, Link: op.Link, Addr: op.Addr})
	case OpRouteReplace, OpRouteDel:
		if pre.DefaultRoute == nil {
			out = append(out, Op{Kind: OpRouteDel, Route: post.DefaultRoute})
		} else {
			r := *pre.DefaultRoute
			out = append(out, Op{Kind: OpRouteReplace, Route: &r})
		}
		return out, nil
	}
	// A default route that the op took away comes back.
	if pre.DefaultRoute != nil && post.DefaultRoute == nil {
		r := *pre.DefaultRoute
		out = append(out, Op{Kind: OpRouteReplace, Route: &r})
	}
	return out, nil
}

// vlanRestore returns the writes that turn have into want on link.
func vlanRestore(link string, want, have []VLAN, self bool) []Op {
	var out []Op
	for _, w := range want {
		if i := vlanIndex(have, w.VID); i < 0 || have[i] != w {
			out = append(out, Op{Kind: OpVLANAdd, Link: link, VLAN: w, Self: self})
		}
	}
	for _, h := range have {
		if vlanIndex(want, h.VID) < 0 {
			out = append(out, Op{Kind: OpVLANDel, Link: link, VLAN: VLAN{VID: h.VID}, Self: self})
		}
	}
	return out
}

func bondOption(b *BondConfig, opt string) string {
	if b == nil {
		return ""
	}
	switch opt {
	case "mode":
		return b.Mode
	case "fail_over_mac":
		return b.FailOverMAC
	case "miimon":
		return strconv.Itoa(b.Miimon)
	case "primary":
		return b.Primary
	case "primary_reselect":
		return b.PrimaryReselect
	case "num_grat_arp":
		return strconv.Itoa(b.NumGratARP)
	case "peer_notif_delay":
		return strconv.Itoa(b.PeerNotifyDelay)
	case "updelay":
		return strconv.Itoa(b.Updelay)
	case "downdelay":
		return strconv.Itoa(b.Downdelay)
	case "arp_interval":
		return strconv.Itoa(b.ArpInterval)
	case "arp_validate":
		if b.ArpValidate == "" {
			return "none"
		}
		return b.ArpValidate
	case "arp_ip_target":
		return joinTargets(b.ArpIPTargets)
	}
	return ""
}

// arpValidateModes are the kernel's arp_validate values by name.
var arpValidateModes = map[string]uint32{"none": 0, "active": 1, "backup": 2, "all": 3, "filter": 4, "filter_active": 5, "filter_backup": 6}

// arpValidateName returns the name of arp_validate value v.
func arpValidateName(v uint32) string {
	for name, n := range arpValidateModes {
		if n == v {
			return name
		}
	}
	return strconv.Itoa(int(v))
}

// joinTargets writes ARP targets as the arp_ip_target value: sorted by
// address (the kernel's order carries no meaning), comma-separated as
// iproute2 takes them.
func joinTargets(ts []string) string {
	sorted := append([]string(nil), ts...)
	sort.Slice(sorted, func(i, j int) bool {
		a, errA := netip.ParseAddr(sorted[i])
		b, errB := netip.ParseAddr(sorted[j])
		if errA != nil || errB != nil {
			return sorted[i] < sorted[j]
		}
		return a.Less(b)
	})
	return strings.Join(sorted, ",")
}

// splitTargets reads an arp_ip_target value ("" is none).
func splitTargets(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	out := strings.Split(v, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}
