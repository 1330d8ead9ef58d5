package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultSnapshotPath is where gallium-net writes this host's snapshot and
// where the hook reads it.
const DefaultSnapshotPath = "/var/lib/gallium-net/host-snapshot.json"

// SnapshotVersion is the format version of HostSnapshot; the hook refuses a
// newer one rather than guess.
const SnapshotVersion = 1

// maxSnapshotBytes caps what the hook reads: it runs on every VM start.
const maxSnapshotBytes = 16 << 20

// HostSnapshot is everything the libvirt hook needs on one hypervisor, so it
// never has to reach the cluster store or libvirt: VMs still start when the
// store is unreachable.
type HostSnapshot struct {
	Version      int       `json:"version"`
	Cluster      string    `json:"cluster"`
	Hypervisor   string    `json:"hypervisor"`
	SpecRevision int64     `json:"specRevision,omitempty"`
	Generated    time.Time `json:"generated"`
	// Networks of this hypervisor, by libvirt network name.
	Networks map[string]SnapshotNetwork `json:"networks"`
	// NICs recorded in the cluster ledger for domains of this hypervisor.
	NICs []SnapshotNIC `json:"nics,omitempty"`
}

// SnapshotNetwork is one network as realised on this hypervisor.
type SnapshotNetwork struct {
	Group  string `json:"group"`
	Bridge string `json:"bridge"`
	Bond   string `json:"bond"`
	VLAN   int    `json:"vlan,omitempty"` // 0: untagged
	MTU    int    `json:"mtu"`
}

// SnapshotNIC is one VM NIC known to the cluster ledger.
type SnapshotNIC struct {
	DomainUUID string `json:"domainUUID"`
	Domain     string `json:"domain,omitempty"`
	MAC        string `json:"mac"`
	Network    string `json:"network"`
	Model      string `json:"model,omitempty"`
}

// BuildSnapshot derives hypervisor hv's snapshot from a validated spec and
// the ledger's NICs for that hypervisor.
func BuildSnapshot(s *Spec, hv string, nics []SnapshotNIC, specRevision int64, now time.Time) (*HostSnapshot, error) {
	if s.Hypervisor(hv) == nil {
		return nil, fmt.Errorf("snapshot: hypervisor %q is not in the cluster spec (known: %s)", hv, strings.Join(s.HypervisorNames(), ", "))
	}
	snap := &HostSnapshot{
		Version:      SnapshotVersion,
		Cluster:      s.Cluster.Name,
		Hypervisor:   hv,
		SpecRevision: specRevision,
		Generated:    now.UTC(),
		Networks:     map[string]SnapshotNetwork{},
		NICs:         append([]SnapshotNIC(nil), nics...),
	}
	for _, g := range s.GroupsOn(hv) {
		for _, n := range s.NetworksOn(g.Name) {
			snap.Networks[n.Name] = SnapshotNetwork{
				Group:  g.Name,
				Bridge: BridgeName(g.Name),
				Bond:   BondName(g.Name),
				VLAN:   n.VLAN,
				MTU:    s.NetworkMTU(n),
			}
		}
	}
	sort.Slice(snap.NICs, func(i, j int) bool { return snap.NICs[i].MAC < snap.NICs[j].MAC })
	return snap, nil
}

// WriteSnapshot replaces the snapshot at path atomically: write a temporary
// file in the same directory, fsync it, rename it over the old one, fsync the
// directory. A reader (the hook) sees the old or the new file, never a mix,
// even across a crash.
func WriteSnapshot(path string, snap *HostSnapshot) error {
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to path with write, fsync, rename, fsync dir.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	cleanup := func() { _ = os.Remove(tmp.Name()) }
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		cleanup()
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open dir: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}

// ErrNoSnapshot is returned by ReadSnapshot when the file does not exist:
// gallium-net has not configured this host yet.
var ErrNoSnapshot = errors.New("no host snapshot: run 'gallium-net network define' (or 'gallium-net host apply') on this hypervisor first")

// ReadSnapshot reads the snapshot at path.
func ReadSnapshot(path string) (*HostSnapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrNoSnapshot)
		}
		return nil, fmt.Errorf("read host snapshot: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSnapshotBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read host snapshot %s: %w", path, err)
	}
	if len(data) > maxSnapshotBytes {
		return nil, fmt.Errorf("host snapshot %s is larger than 16 MiB; rewrite it with 'gallium-net network define'", path)
	}
	var snap HostSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("host snapshot %s is corrupt (%v); rewrite it with 'gallium-net network define'", path, err)
	}
	if snap.Version > SnapshotVersion {
		return nil, fmt.Errorf("host snapshot %s has format version %d, newer than this gallium-net (%d); upgrade gallium-net on this host", path, snap.Version, SnapshotVersion)
	}
	return &snap, nil
}
