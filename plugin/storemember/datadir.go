package storemember

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/gallium/gallium-net/plugin/atomicfile"
)

// MarkerFile is the file, inside the data directory next to etcd's member
// directory, that says whose data this is. It lives inside so that moving
// the data directory aside moves it too.
const MarkerFile = "gallium-net-member.json"

// ErrStaleDataDir is what every refusal of a data directory left by another
// cluster or an earlier member wraps.
var ErrStaleDataDir = errors.New("stale data directory")

// marker records whose data a data directory holds. etcd keeps the cluster
// and member IDs in its WAL, but an ID says nothing to an operator and
// etcd only finds out that it is wrong once the other members refuse it,
// which it reports as a log line while it waits forever.
type marker struct {
	Cluster string `json:"cluster"`
	Member  string `json:"member"`
	// CAHashes are the CA certificates (SHA-256, hex) of CAFile when the
	// member last started: a re-initialised cluster of the same name has a
	// new CA. More than one during a CA rotation, which therefore keeps
	// an overlap with the next start.
	CAHashes []string `json:"caHashes"`
	// ClusterID and MemberID (etcd's, hex) are recorded after a start,
	// for an operator reading the file.
	ClusterID string `json:"clusterID,omitempty"`
	MemberID  string `json:"memberID,omitempty"`
}

func markerPath(dataDir string) string { return filepath.Join(dataDir, MarkerFile) }

// hasEtcdData says whether dataDir holds a member's WAL: only then does
// etcd start from it and ignore InitialCluster and State. A member
// directory without a WAL is what an aborted first start leaves, and etcd
// starts afresh over it.
func hasEtcdData(dataDir string) (bool, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "member", "wal"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(entries) > 0, nil
}

func readMarker(dataDir string) (*marker, error) {
	data, err := os.ReadFile(markerPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", markerPath(dataDir), err)
	}
	return &m, nil
}

func writeMarker(dataDir string, m marker) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(markerPath(dataDir), append(data, '\n'), 0o600)
}

// checkDataDir refuses, before etcd starts, a data directory whose data is
// not this member's of this cluster. etcd would start on it and then
// either wait forever (its cluster ID is not the others') or join under
// an identity the cluster removed. fresh says there is no data yet.
func (c Config) checkDataDir(facts tlsFacts) (fresh bool, err error) {
	dir := c.DataDir
	stale := func(why string) error {
		return fmt.Errorf("%s: %w: %s; data directory %s belongs to another cluster or an earlier member; move it aside (mv %s %s.old) and join again", c.what(), ErrStaleDataDir, why, dir, dir, dir)
	}
	has, err := hasEtcdData(dir)
	if err != nil {
		return false, fmt.Errorf("%s: data directory %s: %w", c.what(), dir, err)
	}
	m, err := readMarker(dir)
	if err != nil {
		if !has {
			// Nothing to protect: the marker is rewritten before etcd starts.
			return true, nil
		}
		return false, stale(fmt.Sprintf("its marker file is unreadable (%v)", err))
	}
	if !has {
		return true, nil
	}
	switch {
	case m == nil:
		return false, stale(fmt.Sprintf("it holds etcd data without gallium-net's marker file %s (another etcd's data?)", MarkerFile))
	case m.Cluster != c.ClusterName:
		return false, stale(fmt.Sprintf("it holds the data of cluster %q, not %q", m.Cluster, c.ClusterName))
	case m.Member != c.Name:
		return false, stale(fmt.Sprintf("it holds the data of member %q, not %q", m.Member, c.Name))
	case !slices.ContainsFunc(m.CAHashes, func(h string) bool { return slices.Contains(facts.caHashes, h) }):
		return false, stale(fmt.Sprintf("it was last started with another CA than the one in CAFile %s (was cluster %q initialised again?)", c.CAFile, c.ClusterName))
	}
	return false, nil
}
