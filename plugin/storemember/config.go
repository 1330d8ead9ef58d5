package storemember

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/model"
)

// Defaults an operator of a small LAN cluster would pick.
const (
	DefaultDataDir    = "/var/lib/gallium-net/store"
	DefaultPeerPort   = 2380
	DefaultClientPort = 2379
	// etcd's own defaults; a LAN's round trip is well under a millisecond,
	// and the cluster lab measures its leader failover with these.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = time.Second
	// DefaultSnapshotCount is etcd 3.6's default: the store holds little, so
	// a snapshot is cheap and a short WAL replays fast after a reboot.
	DefaultSnapshotCount = 10000
	// DefaultQuotaBackendBytes: specs, MAC ledger and host states take a
	// few megabytes; a modest quota keeps a runaway writer from filling
	// /var on a hypervisor whose disks belong to its VMs.
	DefaultQuotaBackendBytes = 512 << 20
	// DefaultCompactionRetention keeps an hour of history: the store's
	// watchers re-read everything when they fall further behind.
	DefaultCompactionRetention = time.Hour
	// DefaultStartTimeout: a member waits for a quorum of its cluster, and
	// the other hypervisors of a cluster powered on together may take
	// minutes to boot; systemd restarts the service after a timeout.
	DefaultStartTimeout = 90 * time.Second
)

// Limits etcd enforces or that make no sense below or above.
const (
	minQuotaBackendBytes = 16 << 20
	maxQuotaBackendBytes = 8 << 30 // etcd's documented upper bound
	maxElectionTimeout   = 50 * time.Second
	loopbackHost         = "127.0.0.1"
)

// State says whether a member creates the cluster or joins one; etcd
// ignores it once the data directory holds the member's data, so a
// restarted member keeps the State it was first started with.
type State string

const (
	// StateNew: this hypervisor creates the cluster (`cluster init`).
	StateNew State = "new"
	// StateExisting: this hypervisor joins a running cluster, after a
	// member added it with AddLearner (`cluster join`).
	StateExisting State = "existing"
)

// Config is one hypervisor's store member.
type Config struct {
	// ClusterName is the spec's cluster.name. With the CA it makes etcd's
	// cluster token, and the data directory's marker records it, so that
	// data from another cluster is refused before etcd starts.
	ClusterName string
	// Name is the hypervisor's name in the spec; it is the member's name.
	Name string
	// DataDir holds etcd's data and this package's marker file; default
	// DefaultDataDir.
	DataDir string
	// PeerURL (other members) and ClientURL (the store's clients) are
	// https URLs on the management IP; a URL without a port gets
	// DefaultPeerPort or DefaultClientPort.
	PeerURL, ClientURL string
	// NoLoopbackClient turns off the listener on 127.0.0.1 at ClientURL's
	// port that local commands use. It is on by default, and then the
	// certificate must hold 127.0.0.1; a ClientURL on 127.0.0.1 needs none.
	NoLoopbackClient bool
	// CAFile holds the cluster CA's certificate (more than one during a CA
	// rotation); CertFile and KeyFile the member's certificate and key. The
	// certificate serves clients and peers and dials peers, so it must be
	// valid for TLS servers and clients alike (clusterpki.Peer) and hold the
	// IPs of PeerURL and ClientURL.
	CAFile, CertFile, KeyFile string
	// InitialCluster maps each member's name to its peer URL: this member
	// alone for StateNew on the first hypervisor, what AddLearner returned
	// for StateExisting. etcd reads it only when the data directory is
	// empty.
	InitialCluster map[string]string
	// State is StateNew or StateExisting; no default, since a wrong guess
	// either splits the cluster or fails to start.
	State State

	// Tuning; zero means the default above.
	HeartbeatInterval   time.Duration
	ElectionTimeout     time.Duration
	SnapshotCount       uint64
	QuotaBackendBytes   int64
	CompactionRetention time.Duration
	// StartTimeout bounds Start's wait for the member to be ready, when
	// Start's context has no earlier deadline.
	StartTimeout time.Duration

	// Logger gets etcd's warnings and errors and this package's own
	// messages; default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field that has a default filled
// in, and ports added to URLs that have none.
func (c Config) WithDefaults() Config {
	c.DataDir = cmp.Or(c.DataDir, DefaultDataDir)
	c.PeerURL = withPort(c.PeerURL, DefaultPeerPort)
	c.ClientURL = withPort(c.ClientURL, DefaultClientPort)
	if len(c.InitialCluster) > 0 {
		ic := make(map[string]string, len(c.InitialCluster))
		for name, u := range c.InitialCluster {
			ic[name] = withPort(u, DefaultPeerPort)
		}
		c.InitialCluster = ic
	}
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.ElectionTimeout = cmp.Or(c.ElectionTimeout, DefaultElectionTimeout)
	c.SnapshotCount = cmp.Or(c.SnapshotCount, DefaultSnapshotCount)
	c.QuotaBackendBytes = cmp.Or(c.QuotaBackendBytes, DefaultQuotaBackendBytes)
	c.CompactionRetention = cmp.Or(c.CompactionRetention, DefaultCompactionRetention)
	c.StartTimeout = cmp.Or(c.StartTimeout, DefaultStartTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// withPort adds port to an https URL that names no port; anything else is
// left for Validate to judge.
func withPort(raw string, port int) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Port() != "" {
		return raw
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	return u.String()
}

// Validate checks c with its defaults filled in, the TLS files included:
// a certificate that etcd would load but another member would refuse
// fails here, at this hypervisor, rather than as a handshake error on
// another one. Each error names the field (or file) and the fix.
func (c Config) Validate() error {
	_, err := c.WithDefaults().check()
	return err
}

// tlsFacts is what check learns from the TLS files and Start needs.
type tlsFacts struct {
	// caHashes are the hex SHA-256 of every CA certificate in CAFile.
	caHashes []string
	// issuerHash is the hash of the CA that issued CertFile.
	issuerHash string
}

// check validates a Config whose defaults are filled in.
func (c Config) check() (tlsFacts, error) {
	if err := c.checkFields(); err != nil {
		return tlsFacts{}, err
	}
	facts, err := c.checkTLS(time.Now())
	if err != nil {
		return tlsFacts{}, fmt.Errorf("%s: %w", c.what(), err)
	}
	return facts, nil
}

// what names the member in errors: its name once it has a usable one.
func (c Config) what() string {
	if c.Name == "" {
		return "store member"
	}
	return "store member " + c.Name
}

func (c Config) checkFields() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", c.what(), fmt.Sprintf(format, args...))
	}
	if err := model.IsClusterName(c.ClusterName); err != nil {
		return fail("ClusterName: %v", err)
	}
	if err := model.IsHostname(c.Name); err != nil {
		return fail("Name: the hypervisor %v", err)
	}
	if !strings.HasPrefix(c.DataDir, "/") {
		return fail("DataDir %q is not an absolute path: use %s or another absolute path", c.DataDir, DefaultDataDir)
	}
	peer, err := parseURL(c.PeerURL, DefaultPeerPort)
	if err != nil {
		return fail("PeerURL: %v", err)
	}
	client, err := parseURL(c.ClientURL, DefaultClientPort)
	if err != nil {
		return fail("ClientURL: %v", err)
	}
	if peer.Host == client.Host {
		return fail("PeerURL and ClientURL are both %s: give them different ports (%d for peers, %d for clients)", peer.Host, DefaultPeerPort, DefaultClientPort)
	}
	if peer.Hostname() != client.Hostname() {
		return fail("PeerURL (%s) and ClientURL (%s) are on different IPs: put both on the hypervisor's management IP", peer.Hostname(), client.Hostname())
	}
	if err := c.checkInitialCluster(peer); err != nil {
		return fail("%v", err)
	}
	switch c.State {
	case StateNew, StateExisting:
	case "":
		return fail("State is empty: set %q on the hypervisor that creates the cluster, %q on one that joins it", StateNew, StateExisting)
	default:
		return fail("State %q is neither %q (create the cluster) nor %q (join it)", c.State, StateNew, StateExisting)
	}
	return c.checkTuning(fail)
}

func (c Config) checkInitialCluster(peer *url.URL) error {
	if len(c.InitialCluster) == 0 {
		return fmt.Errorf("InitialCluster is empty: give {%q: %q} to create a cluster, or the map AddLearner returned to join one", c.Name, c.PeerURL)
	}
	if _, ok := c.InitialCluster[c.Name]; !ok {
		return fmt.Errorf("InitialCluster has no member %q (this hypervisor): add %q: %q", c.Name, c.Name, c.PeerURL)
	}
	owner := map[string]string{}
	for _, name := range sortedKeys(c.InitialCluster) {
		if err := model.IsHostname(name); err != nil {
			return fmt.Errorf("InitialCluster: member %v", err)
		}
		u, err := parseURL(c.InitialCluster[name], DefaultPeerPort)
		if err != nil {
			return fmt.Errorf("InitialCluster: member %s: %v", name, err)
		}
		if other, dup := owner[u.Host]; dup {
			return fmt.Errorf("InitialCluster gives members %s and %s the same peer address %s: each hypervisor has its own management IP", other, name, u.Host)
		}
		owner[u.Host] = name
		if name == c.Name && u.Host != peer.Host {
			return fmt.Errorf("InitialCluster gives this member (%s) the peer URL %s, but PeerURL is %s: make them the same", name, u, peer)
		}
	}
	if c.State == StateExisting && len(c.InitialCluster) == 1 {
		return fmt.Errorf("InitialCluster names only this member, but State is %q: a joining hypervisor starts with the map AddLearner returned, which holds the running members too", StateExisting)
	}
	return nil
}

func (c Config) checkTuning(fail func(string, ...any) error) error {
	hb, el := c.HeartbeatInterval, c.ElectionTimeout
	switch {
	case hb < 10*time.Millisecond || hb%time.Millisecond != 0:
		return fail("HeartbeatInterval %v: use whole milliseconds, at least 10ms (default %v)", hb, DefaultHeartbeatInterval)
	case el%time.Millisecond != 0:
		return fail("ElectionTimeout %v: use whole milliseconds (default %v)", el, DefaultElectionTimeout)
	case el < 5*hb:
		return fail("ElectionTimeout %v is less than 5 heartbeats (HeartbeatInterval %v): etcd refuses it; use 10 heartbeats or more", el, hb)
	case el > maxElectionTimeout:
		return fail("ElectionTimeout %v is longer than etcd's limit of %v", el, maxElectionTimeout)
	case c.QuotaBackendBytes < minQuotaBackendBytes || c.QuotaBackendBytes > maxQuotaBackendBytes:
		return fail("QuotaBackendBytes %d is outside %d MiB-%d GiB (default %d MiB)", c.QuotaBackendBytes, minQuotaBackendBytes>>20, maxQuotaBackendBytes>>30, DefaultQuotaBackendBytes>>20)
	case c.CompactionRetention < time.Minute:
		return fail("CompactionRetention %v is shorter than a minute: the store's watchers would keep starting over (default %v)", c.CompactionRetention, DefaultCompactionRetention)
	case c.StartTimeout < time.Second:
		return fail("StartTimeout %v is shorter than a second (default %v)", c.StartTimeout, DefaultStartTimeout)
	}
	return nil
}

// parseURL accepts https://IP:PORT and nothing else: the store talks TLS
// only, and a member's certificate holds IPs, not host names.
func parseURL(raw string, defPort int) (*url.URL, error) {
	form := fmt.Sprintf("want https://MANAGEMENT-IP:%d", defPort)
	if raw == "" {
		return nil, fmt.Errorf("empty: %s", form)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL (%v): %s", raw, err, form)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%q: the store talks mutual TLS only, so the scheme must be https: %s", raw, form)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q has a user, path, query or fragment: %s", raw, form)
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || ip.Zone() != "" {
		return nil, fmt.Errorf("%q: the host must be an IP address (the member's certificate holds IPs): %s", raw, form)
	}
	if ip.IsUnspecified() {
		return nil, fmt.Errorf("%q: %s is no address other members can reach: %s", raw, ip, form)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("%q has no valid port: %s", raw, form)
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(ip.String(), strconv.Itoa(port))}, nil
}

// listenURLs are the URLs etcd listens on for clients: ClientURL, and the
// loopback one for local commands unless ClientURL is on loopback already.
func (c Config) listenClientURLs() []url.URL {
	client, err := parseURL(c.ClientURL, DefaultClientPort)
	if err != nil {
		return nil
	}
	out := []url.URL{*client}
	if lb, ok := c.loopbackClientURL(client); ok {
		out = append(out, *lb)
	}
	return out
}

func (c Config) loopbackClientURL(client *url.URL) (*url.URL, bool) {
	if c.NoLoopbackClient {
		return nil, false
	}
	if ip, err := netip.ParseAddr(client.Hostname()); err == nil && ip.IsLoopback() {
		return nil, false
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(loopbackHost, client.Port())}, true
}

// checkTLS reads the three files and says which one is wrong: etcd itself
// would load most of these mistakes and fail only in a handshake, on the
// other side of the connection.
func (c Config) checkTLS(now time.Time) (tlsFacts, error) {
	var facts tlsFacts
	caPEM, err := readFile("CAFile", c.CAFile)
	if err != nil {
		return facts, err
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return facts, fmt.Errorf("CAFile %s: %v: want the cluster CA's certificate (ca.pem)", c.CAFile, err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return facts, fmt.Errorf("CAFile %s: %q is not a CA certificate: is this a member's certificate? Want the cluster CA's", c.CAFile, ca.Subject.CommonName)
		}
		roots.AddCert(ca)
		sum := sha256.Sum256(ca.Raw)
		facts.caHashes = append(facts.caHashes, hex.EncodeToString(sum[:]))
	}
	certPEM, err := readFile("CertFile", c.CertFile)
	if err != nil {
		return facts, err
	}
	leaves, err := parseCerts(certPEM)
	if err != nil {
		return facts, fmt.Errorf("CertFile %s: %v: want this member's certificate", c.CertFile, err)
	}
	leaf := leaves[0]
	if leaf.IsCA {
		return facts, fmt.Errorf("CertFile %s is a CA certificate (%q): want this member's certificate", c.CertFile, leaf.Subject.CommonName)
	}
	keyPEM, err := readFile("KeyFile", c.KeyFile)
	if err != nil {
		return facts, err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return facts, fmt.Errorf("KeyFile %s is not the key of CertFile %s, or not a PEM private key (%v): give the key that was issued with the certificate", c.KeyFile, c.CertFile, err)
	}
	if leaf.Subject.CommonName != c.Name {
		return facts, fmt.Errorf("CertFile %s is the certificate of %q, not of this member %q: give %s's own certificate", c.CertFile, leaf.Subject.CommonName, c.Name, c.Name)
	}
	if now.Before(leaf.NotBefore) {
		return facts, fmt.Errorf("CertFile %s is not valid before %s: check this hypervisor's clock", c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return facts, fmt.Errorf("CertFile %s expired on %s: issue a new certificate for %s from the cluster CA", c.CertFile, leaf.NotAfter.UTC().Format(time.DateOnly), c.Name)
	}
	var issuer *x509.Certificate
	for _, u := range []struct {
		eku  x509.ExtKeyUsage
		what string
	}{{x509.ExtKeyUsageServerAuth, "server"}, {x509.ExtKeyUsageClientAuth, "client"}} {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u.eku}})
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &unknown):
			return facts, fmt.Errorf("CertFile %s was not issued by the CA in CAFile %s (%q): give the certificate the cluster CA issued for %s, or the CA that issued it", c.CertFile, c.CAFile, cas[0].Subject.CommonName, c.Name)
		case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
			return facts, fmt.Errorf("CertFile %s is not valid for a TLS %s: a member's peer TLS both listens and dials, so issue it with usage Peer (server and client)", c.CertFile, u.what)
		case err != nil:
			return facts, fmt.Errorf("CertFile %s does not verify against CAFile %s: %v", c.CertFile, c.CAFile, err)
		}
		issuer = chains[0][len(chains[0])-1]
	}
	sum := sha256.Sum256(issuer.Raw)
	facts.issuerHash = hex.EncodeToString(sum[:])
	// clusterpki's own loaders are what the store's clients use: passing
	// them here means a client will accept what this member presents.
	if _, err := clusterpki.ServerTLS(caPEM, certPEM, keyPEM); err != nil {
		return facts, fmt.Errorf("CertFile %s: %v", c.CertFile, err)
	}
	if _, err := clusterpki.ClientTLS(caPEM, certPEM, keyPEM); err != nil {
		return facts, fmt.Errorf("CertFile %s: %v", c.CertFile, err)
	}
	peer, _ := parseURL(c.PeerURL, DefaultPeerPort)
	client, _ := parseURL(c.ClientURL, DefaultClientPort)
	need := []struct{ ip, why string }{
		{peer.Hostname(), "PeerURL's"},
		{client.Hostname(), "ClientURL's"},
	}
	if lb, ok := c.loopbackClientURL(client); ok {
		need = append(need, struct{ ip, why string }{lb.Hostname(), "loopback client listener's (local commands)"})
	}
	for _, n := range need {
		if err := leaf.VerifyHostname(n.ip); err != nil {
			return facts, fmt.Errorf("CertFile %s does not hold IP %s, the %s, so clients and members dialling it would refuse it: issue %s's certificate with IPs %s", c.CertFile, n.ip, n.why, c.Name, wantIPs(need))
		}
	}
	return facts, nil
}

func wantIPs(need []struct{ ip, why string }) string {
	var ips []string
	for _, n := range need {
		if !slices.Contains(ips, n.ip) {
			ips = append(ips, n.ip)
		}
	}
	return strings.Join(ips, " and ")
}

func readFile(field, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s is empty: give the path of the PEM file", field)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return data, nil
}

// parseCerts returns every CERTIFICATE block of data, refusing other
// blocks: a key in a certificate file is a mix-up worth hearing about.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("it holds a %q PEM block (a key?), not only certificates", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
