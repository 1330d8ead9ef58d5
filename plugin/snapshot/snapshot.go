// Package snapshot is the libvirt hook's view of its hypervisor: the host
// snapshot, a JSON file that gallium-net writes (network define, state sync,
// the agent) and the hook reads on every VM start, so that the hook never
// reaches the cluster store or libvirt.
//
// Build derives a snapshot from a cluster spec (a *model.Spec). The model
// package links no YAML parser (strict YAML loading lives in
// plugin/specfile), so the hook, which reads a snapshot and links the model
// through domains and netsetup anyway, links none either; hooks'
// TestHookImportGraph holds it to that.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/model"
)

// DefaultPath is where gallium-net writes this host's snapshot and
// where the hook reads it.
const DefaultPath = "/var/lib/gallium-net/host-snapshot.json"

// Version is the format version of Host; the hook refuses a
// newer one rather than guess.
const Version = 1

// maxBytes caps what the hook reads: it runs on every VM start.
const maxBytes = 16 << 20

// Host is everything the libvirt hook needs on one hypervisor, so it
// never has to reach the cluster store or libvirt: VMs still start when the
// store is unreachable.
type Host struct {
	Version      int       `json:"version"`
	Cluster      string    `json:"cluster"`
	Hypervisor   string    `json:"hypervisor"`
	SpecRevision int64     `json:"specRevision,omitempty"`
	Generated    time.Time `json:"generated"`
	// Networks of this hypervisor, by libvirt network name.
	Networks map[string]Network `json:"networks"`
	// NICs recorded in the cluster ledger for domains of this hypervisor.
	NICs []NIC `json:"nics,omitempty"`
}

// Network is one network as realised on this hypervisor.
type Network struct {
	Group  string `json:"group"`
	Bridge string `json:"bridge"`
	Bond   string `json:"bond"`
	VLAN   int    `json:"vlan,omitempty"` // 0: untagged
	MTU    int    `json:"mtu"`
}

// NIC is one VM NIC known to the cluster ledger.
type NIC struct {
	DomainUUID string `json:"domainUUID"`
	Domain     string `json:"domain,omitempty"`
	MAC        string `json:"mac"`
	Network    string `json:"network"`
	Model      string `json:"model,omitempty"`
}

// Build derives hypervisor hv's snapshot from a validated spec and
// the ledger's NICs for that hypervisor.
func Build(s *model.Spec, hv string, nics []NIC, specRevision int64, now time.Time) (*Host, error) {
	if s.Hypervisor(hv) == nil {
		return nil, fmt.Errorf("snapshot: hypervisor %q is not in the cluster spec (known: %s)", hv, strings.Join(s.HypervisorNames(), ", "))
	}
	snap := &Host{
		Version:      Version,
		Cluster:      s.Cluster.Name,
		Hypervisor:   hv,
		SpecRevision: specRevision,
		Generated:    now.UTC(),
		Networks:     map[string]Network{},
		NICs:         append([]NIC(nil), nics...),
	}
	for _, g := range s.GroupsOn(hv) {
		for _, n := range s.NetworksOn(g.Name) {
			snap.Networks[n.Name] = Network{
				Group:  g.Name,
				Bridge: model.BridgeName(g.Name),
				Bond:   model.BondName(g.Name),
				VLAN:   n.VLAN,
				MTU:    s.NetworkMTU(n),
			}
		}
	}
	sort.Slice(snap.NICs, func(i, j int) bool { return snap.NICs[i].MAC < snap.NICs[j].MAC })
	return snap, nil
}

// Write replaces the snapshot at path atomically: write a temporary
// file in the same directory, fsync it, rename it over the old one, fsync the
// directory. A reader (the hook) sees the old or the new file, never a mix,
// even across a crash.
func Write(path string, snap *Host) error {
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// ErrNotFound is returned by Read when the file does not exist:
// gallium-net has not configured this host yet.
var ErrNotFound = errors.New("no host snapshot: run 'gallium-net network define' (or 'gallium-net host apply') on this hypervisor first")

// Read reads the snapshot at path.
func Read(path string) (*Host, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		return nil, fmt.Errorf("read host snapshot: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read host snapshot %s: %w", path, err)
	}
	if len(data) > maxBytes {
		return nil, fmt.Errorf("host snapshot %s is larger than 16 MiB; rewrite it with 'gallium-net network define'", path)
	}
	var snap Host
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("host snapshot %s is corrupt (%v); rewrite it with 'gallium-net network define'", path, err)
	}
	if snap.Version > Version {
		return nil, fmt.Errorf("host snapshot %s has format version %d, newer than this gallium-net (%d); upgrade gallium-net on this host", path, snap.Version, Version)
	}
	return &snap, nil
}
