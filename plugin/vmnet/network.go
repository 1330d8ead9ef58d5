package vmnet

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gallium/gallium-net/domains"
	"github.com/gallium/gallium-net/plugin/model"
)

// NetworksOn returns the spec networks of hypervisor hv, sorted by name:
// those on an adapter group with adapters there.
func NetworksOn(s *model.Spec, hv string) []string {
	var out []string
	for _, g := range s.GroupsOn(hv) {
		for _, n := range s.NetworksOn(g.Name) {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// NetworkOptions are the options of this connection's libvirt for network
// XML (whether it carries VLANs natively), and its version.
func NetworkOptions(conn Conn) (domains.NetworkOptions, uint32, error) {
	ver, err := conn.LibVersion()
	if err != nil {
		return domains.NetworkOptions{}, 0, fmt.Errorf("libvirt version: %w", err)
	}
	return domains.NetworkOptionsFor(ver), ver, nil
}

// NetworkResult is what DefineNetwork did to one network.
type NetworkResult struct {
	Name string `json:"name" yaml:"name"`
	// Action is defined, updated, fixed (run state only) or unchanged.
	Action  string   `json:"action" yaml:"action"`
	Bridge  string   `json:"bridge" yaml:"bridge"`
	VLAN    int      `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	Details []string `json:"details,omitempty" yaml:"details,omitempty"`
}

// NetworksToDefine is the networks `network define` works on: name alone
// when given (it must be a spec network on hv), else every network of hv.
func NetworksToDefine(s *model.Spec, hv, name string) ([]string, error) {
	names := NetworksOn(s, hv)
	if name == "" {
		return names, nil
	}
	n := s.Network(name)
	if n == nil {
		return nil, fmt.Errorf("network %s is not in the cluster spec; see 'gallium-net list networks'", name)
	}
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("network %s is on adapter group %s, which has no adapters on hypervisor %s; nothing to define here", name, n.AdapterGroup, hv)
	}
	return []string{name}, nil
}

// DefineNetworks brings each named network in line with the spec (see
// DefineNetwork). One network's failure does not stop the others: the
// results are those that succeeded, the error joins the failures.
func DefineNetworks(conn Conn, s *model.Spec, hv string, names []string, opt domains.NetworkOptions) ([]NetworkResult, error) {
	var results []NetworkResult
	var errs []error
	for _, name := range names {
		r, err := DefineNetwork(conn, s, hv, name, opt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

// DefineNetwork brings one libvirt network in line with the spec: defined
// when missing, redefined (same UUID) when it drifted, started and
// autostarted. A network of that name that gallium-net does not own is
// never touched: it is an error.
func DefineNetwork(conn Conn, s *model.Spec, hv, name string, opt domains.NetworkOptions) (NetworkResult, error) {
	n := s.Network(name)
	if n == nil {
		return NetworkResult{Name: name}, fmt.Errorf("network %s is not in the cluster spec; see 'gallium-net list networks'", name)
	}
	r := NetworkResult{Name: name, Bridge: model.BridgeName(n.AdapterGroup), VLAN: n.VLAN}
	want, err := domains.NetworkXML(s, name, hv, opt)
	if err != nil {
		return r, err
	}
	have, err := conn.NetworkXML(name)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := conn.DefineNetwork(want); err != nil {
			return r, fmt.Errorf("network %s: define: %w", name, err)
		}
		r.Action = "defined"
	case err != nil:
		return r, fmt.Errorf("network %s: read definition: %w", name, err)
	default:
		if err := redefineIfDrifted(conn, &r, want, have); err != nil {
			return r, err
		}
	}
	st, err := conn.NetworkState(name)
	if err != nil {
		return r, fmt.Errorf("network %s: %w", name, err)
	}
	if !st.Active {
		if err := conn.StartNetwork(name); err != nil {
			return r, fmt.Errorf("network %s: start: %w; does bridge %s exist? create it with 'gallium-net host apply'", name, err, r.Bridge)
		}
		r.Details = append(r.Details, "started")
	}
	if !st.Autostart {
		if err := conn.SetNetworkAutostart(name, true); err != nil {
			return r, fmt.Errorf("network %s: autostart: %w", name, err)
		}
		r.Details = append(r.Details, "autostart on")
	}
	if r.Action == "unchanged" && len(r.Details) > 0 {
		r.Action = "fixed"
	}
	return r, nil
}

// redefineIfDrifted compares an existing network with the spec's XML and
// redefines it when they differ, keeping its UUID.
func redefineIfDrifted(conn Conn, r *NetworkResult, want, have string) error {
	def, err := domains.ParseNetworkXML(have)
	if err != nil {
		return fmt.Errorf("network %s: %w", r.Name, err)
	}
	if !def.Owned() {
		return fmt.Errorf("libvirt network %s exists and is not gallium-net's (forward %s, bridge %s); gallium-net never touches it: rename the network in the spec or remove the libvirt network by hand ('virsh net-undefine %s')", r.Name, orDash(def.ForwardMode), orDash(def.Bridge), r.Name)
	}
	drifted, diffs, err := domains.NetworkDrift(want, have)
	if err != nil {
		return fmt.Errorf("network %s: %w", r.Name, err)
	}
	r.Action = "unchanged"
	if !drifted {
		return nil
	}
	r.Details = diffs
	withUUID, err := domains.WithNetworkUUID(want, def.UUID)
	if err != nil {
		return fmt.Errorf("network %s: %w", r.Name, err)
	}
	if err := conn.DefineNetwork(withUUID); err != nil {
		return fmt.Errorf("network %s: redefine: %w", r.Name, err)
	}
	r.Action = "updated"
	return restartIfIdle(conn, r)
}

// restartIfIdle applies a redefinition to a running network with no ports
// in use (restarting it then disturbs nobody). A network with ports keeps
// running on its old definition until restarted; its NICs are brought in line
// by 'gallium-net nic sync'.
func restartIfIdle(conn Conn, r *NetworkResult) error {
	st, err := conn.NetworkState(r.Name)
	if err != nil || !st.Active {
		return err
	}
	ports, err := conn.NetworkPorts(r.Name)
	if err != nil {
		return fmt.Errorf("network %s: list ports: %w", r.Name, err)
	}
	if ports > 0 {
		r.Details = append(r.Details, fmt.Sprintf("%d NICs in use: new definition applies when the network restarts; run 'gallium-net nic sync --all' to update them now", ports))
		return nil
	}
	if err := conn.StopNetwork(r.Name); err != nil {
		return fmt.Errorf("network %s: stop to apply the new definition: %w", r.Name, err)
	}
	if err := conn.StartNetwork(r.Name); err != nil {
		return fmt.Errorf("network %s: start with the new definition: %w", r.Name, err)
	}
	r.Details = append(r.Details, "restarted")
	return nil
}

// NetworkRow is one libvirt network of this host against the spec.
type NetworkRow struct {
	Name      string `json:"name" yaml:"name"`
	Owned     bool   `json:"owned" yaml:"owned"`
	Active    bool   `json:"active" yaml:"active"`
	Autostart bool   `json:"autostart" yaml:"autostart"`
	Bridge    string `json:"bridge" yaml:"bridge"`
	VLAN      int    `json:"vlan,omitempty" yaml:"vlan,omitempty"`
	// Spec is "in line", "drifted: ...", "not in spec", "missing: ...",
	// "not on this hypervisor" or "name clash: ...".
	Spec string `json:"spec" yaml:"spec"`
}

// ListNetworks describes every libvirt network of the connection and every
// spec network of hv that libvirt lacks, sorted by name.
func ListNetworks(conn Conn, s *model.Spec, hv string, opt domains.NetworkOptions) ([]NetworkRow, error) {
	names, err := conn.NetworkNames()
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	rows := []NetworkRow{}
	seen := map[string]bool{}
	for _, name := range names {
		row, err := describeNetwork(conn, name, s, hv, opt)
		if err != nil {
			return nil, err
		}
		seen[name] = true
		rows = append(rows, row)
	}
	for _, name := range NetworksOn(s, hv) {
		if !seen[name] {
			n := s.Network(name)
			rows = append(rows, NetworkRow{Name: name, Owned: true, Bridge: model.BridgeName(n.AdapterGroup), VLAN: n.VLAN, Spec: "missing: run 'gallium-net network define " + name + "'"})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

func describeNetwork(conn Conn, name string, s *model.Spec, hv string, opt domains.NetworkOptions) (NetworkRow, error) {
	row := NetworkRow{Name: name}
	have, err := conn.NetworkXML(name)
	if err != nil {
		return row, fmt.Errorf("network %s: %w", name, err)
	}
	def, err := domains.ParseNetworkXML(have)
	if err != nil {
		return row, fmt.Errorf("network %s: %w", name, err)
	}
	row.Owned, row.Bridge = def.Owned(), def.Bridge
	// The run state is decoration of a listing: a network that stops while
	// it is listed shows as stopped rather than failing the listing.
	st, _ := conn.NetworkState(name)
	row.Active, row.Autostart = st.Active, st.Autostart
	row.Spec = "not in spec"
	if sn := s.Network(name); sn != nil {
		row.VLAN = sn.VLAN
		want, err := domains.NetworkXML(s, name, hv, opt)
		if err != nil {
			row.Spec = "not on this hypervisor"
		} else if drifted, diffs, err := domains.NetworkDrift(want, have); err == nil && drifted {
			row.Spec = "drifted: " + strings.Join(diffs, "; ") + "; run 'gallium-net network define " + name + "'"
		} else if err == nil {
			row.Spec = "in line"
		}
	}
	if !row.Owned && row.Spec != "not in spec" {
		row.Spec = "name clash: a network gallium-net does not own"
	}
	return row, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
