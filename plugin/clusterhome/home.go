// Package clusterhome is where a hypervisor keeps its membership of the
// cluster store: one directory (DefaultDir) that `gallium-net cluster init`
// or `cluster join` fills, `gallium-net-store.service` runs from, and every
// command opens the store with.
//
//	member.yaml     who this member is: cluster, name, addresses, data dir,
//	                the initial cluster it started with
//	ca.pem          the cluster CA's certificate
//	ca-key.pem      its key (every member admits joiners; mode 0600)
//	member.pem      this member's certificate: server and client, for the
//	                management IP and 127.0.0.1
//	member-key.pem  its key (0600)
//	token           the join token (0600)
//	endpoints       every member's client URL, kept by the running member
//
// member.yaml is written last, each file atomically: a directory without
// it is an interrupted init or join, which Load reports as such, and no
// reader ever sees half a file.
package clusterhome

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/clusterjoin"
	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
	"github.com/gallium/gallium-net/plugin/storemember"
)

// DefaultDir is the home of a hypervisor's store membership.
const DefaultDir = "/etc/gallium-net/cluster"

// File names inside the home.
const (
	MemberFile = "member.yaml"
	CAFile     = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	CertFile   = "member.pem"
	KeyFile    = "member-key.pem"
	TokenFile  = "token"
	// EndpointsFile lists every member's client URL, one per line: the
	// running member rewrites it when the membership changes, so that this
	// hypervisor's commands reach the store through the others while its
	// own member is down (the first hypervisor started alone).
	EndpointsFile = "endpoints"
)

// ErrNoHome: this host is not a member of a cluster store (never
// initialised or joined).
var ErrNoHome = errors.New("this hypervisor is not a member of a cluster store")

// Member is member.yaml.
type Member struct {
	Cluster string `yaml:"cluster"`
	Name    string `yaml:"name"`
	// Address is the management IP (no prefix length).
	Address string `yaml:"address"`
	// Ports; zero means etcd's 2379/2380 and clusterjoin.JoinPort.
	ClientPort int `yaml:"clientPort,omitempty"`
	PeerPort   int `yaml:"peerPort,omitempty"`
	JoinPort   int `yaml:"joinPort,omitempty"`
	// DataDir is etcd's data directory.
	DataDir string `yaml:"dataDir"`
	// State is new on the hypervisor that ran init, existing on those that
	// joined; InitialCluster is what the member first started with.
	State          storemember.State `yaml:"state"`
	InitialCluster map[string]string `yaml:"initialCluster"`
}

// Home is a membership directory.
type Home struct {
	Dir string
}

// New is the home at dir, or DefaultDir.
func New(dir string) Home {
	if dir == "" {
		dir = DefaultDir
	}
	return Home{Dir: dir}
}

// Path is the path of one of the home's files.
func (h Home) Path(name string) string { return filepath.Join(h.Dir, name) }

// Exists says whether the home holds a membership (member.yaml), or a
// partial one (some file but member.yaml).
func (h Home) Exists() (complete, partial bool, err error) {
	if _, err := os.Stat(h.Path(MemberFile)); err == nil {
		return true, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, false, err
	}
	for _, f := range []string{CAFile, CAKeyFile, CertFile, KeyFile, TokenFile} {
		if _, err := os.Stat(h.Path(f)); err == nil {
			return false, true, nil
		}
	}
	return false, false, nil
}

// Load reads member.yaml.
func (h Home) Load() (*Member, error) {
	data, err := os.ReadFile(h.Path(MemberFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s): run 'gallium-net cluster init' on the first hypervisor, 'gallium-net cluster join' on the others", ErrNoHome, h.Path(MemberFile))
	}
	if err != nil {
		return nil, err
	}
	var m Member
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Path(MemberFile), err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Path(MemberFile), err)
	}
	return &m, nil
}

func (m Member) check() error {
	switch {
	case m.Cluster == "" || m.Name == "":
		return errors.New("cluster and name must be set")
	case m.DataDir == "":
		return errors.New("dataDir must be set")
	case m.State != storemember.StateNew && m.State != storemember.StateExisting:
		return fmt.Errorf("state %q: want new or existing", m.State)
	case len(m.InitialCluster) == 0:
		return errors.New("initialCluster is empty")
	}
	if _, err := netip.ParseAddr(m.Address); err != nil {
		return fmt.Errorf("address %q: want the management IP", m.Address)
	}
	return nil
}

// Files are the PEM files and the token of a membership.
type Files struct {
	CA, CAKey, Cert, Key []byte
	Token                clusterpki.Token
}

// Save writes a membership: the keys and certificates first, member.yaml
// last. It refuses a home that already holds one: the caller decides to
// move it aside (a rejoin after a reinstall starts from an empty home).
func (h Home) Save(m Member, f Files) error {
	if err := m.check(); err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	if complete, _, err := h.Exists(); err != nil {
		return err
	} else if complete {
		return fmt.Errorf("%s already holds a membership: move it aside first", h.Dir)
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return err
	}
	for _, w := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, f.CA, 0o644},
		{CAKeyFile, f.CAKey, 0o600},
		{CertFile, f.Cert, 0o644},
		{KeyFile, f.Key, 0o600},
		{TokenFile, []byte(f.Token.String() + "\n"), 0o600},
	} {
		if err := atomicfile.Write(h.Path(w.name), w.data, w.mode); err != nil {
			return fmt.Errorf("cluster home: %w", err)
		}
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	head := "# Written by gallium-net cluster init/join: this hypervisor's member of the\n# cluster store. gallium-net-store.service runs it; do not edit.\n"
	return atomicfile.Write(h.Path(MemberFile), append([]byte(head), data...), 0o644)
}

// Token reads the join token.
func (h Home) Token() (clusterpki.Token, error) {
	data, err := os.ReadFile(h.Path(TokenFile))
	if err != nil {
		return clusterpki.Token{}, fmt.Errorf("join token: %w", err)
	}
	return clusterpki.ParseToken(string(data))
}

// Read reads one of the home's files.
func (h Home) Read(name string) ([]byte, error) { return os.ReadFile(h.Path(name)) }

func port(p, def int) string { return strconv.Itoa(cmpOr(p, def)) }

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func (m Member) url(p, def int) string {
	return "https://" + net.JoinHostPort(m.Address, port(p, def))
}

// PeerURL, ClientURL and JoinURL are where the member serves.
func (m Member) PeerURL() string   { return m.url(m.PeerPort, storemember.DefaultPeerPort) }
func (m Member) ClientURL() string { return m.url(m.ClientPort, storemember.DefaultClientPort) }
func (m Member) JoinURL() string   { return m.url(m.JoinPort, clusterjoin.JoinPort) }

// StoreMember is the member's storemember configuration.
func (m Member) StoreMember(h Home) storemember.Config {
	return storemember.Config{
		ClusterName: m.Cluster, Name: m.Name, DataDir: m.DataDir,
		PeerURL: m.PeerURL(), ClientURL: m.ClientURL(),
		CAFile: h.Path(CAFile), CertFile: h.Path(CertFile), KeyFile: h.Path(KeyFile),
		InitialCluster: m.InitialCluster, State: m.State,
		// A loopback management IP (tests) serves on it already.
		NoLoopbackClient: isLoopback(m.Address),
	}
}

func isLoopback(a string) bool {
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.IsLoopback()
}

// Client is how this hypervisor's commands reach the store: its own member
// on 127.0.0.1 first, then the other members (from the endpoints file the
// running member keeps, else the initial cluster), with the member
// certificate (it is a client certificate too).
func (m Member) Client(h Home) etcdstore.Config {
	own := "https://" + net.JoinHostPort("127.0.0.1", port(m.ClientPort, storemember.DefaultClientPort))
	if isLoopback(m.Address) {
		own = m.ClientURL()
	}
	eps := []string{own}
	others := h.Endpoints()
	if len(others) == 0 {
		for _, peer := range m.InitialCluster {
			if host := hostOf(peer); host != "" {
				others = append(others, "https://"+net.JoinHostPort(host, port(m.ClientPort, storemember.DefaultClientPort)))
			}
		}
	}
	slices.Sort(others)
	for _, ep := range others {
		if ep != m.ClientURL() && !slices.Contains(eps, ep) {
			eps = append(eps, ep)
		}
	}
	return etcdstore.Config{Endpoints: eps, CAFile: h.Path(CAFile), CertFile: h.Path(CertFile), KeyFile: h.Path(KeyFile)}
}

// Endpoints reads the endpoints file; nil when there is none.
func (h Home) Endpoints() []string {
	data, err := os.ReadFile(h.Path(EndpointsFile))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "https://") {
			out = append(out, l)
		}
	}
	return out
}

// SaveEndpoints rewrites the endpoints file when eps differ from it.
func (h Home) SaveEndpoints(eps []string) (changed bool, err error) {
	eps = slices.Clone(eps)
	slices.Sort(eps)
	if slices.Equal(eps, h.Endpoints()) {
		return false, nil
	}
	data := "# every store member's client URL, kept by gallium-net-store.service\n" + strings.Join(eps, "\n") + "\n"
	return true, atomicfile.Write(h.Path(EndpointsFile), []byte(data), 0o644)
}

func hostOf(u string) string {
	u = strings.TrimPrefix(u, "https://")
	host, _, err := net.SplitHostPort(strings.TrimSuffix(u, "/"))
	if err != nil {
		return ""
	}
	return host
}
