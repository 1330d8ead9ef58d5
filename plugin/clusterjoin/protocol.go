package clusterjoin

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
)

// JoinPort is where a store member listens for joining hypervisors: next to
// etcd's 2379 (clients) and 2380 (peers), so one firewall rule for
// 2379-2381 on the infrastructure network covers the store.
const JoinPort = 2381

// NonceTTL is how long a nonce may be used after it was handed out.
const NonceTTL = 2 * time.Minute

// MACHeader carries the hex HMAC of a join request's body.
const MACHeader = "X-Gallium-Join-Mac"

// Paths of the two requests.
const (
	noncePath = "/v1/join/nonce"
	joinPath  = "/v1/join"
)

// maxBody bounds what either side reads: a CSR, a few certificates and a
// member list fit in a few kilobytes.
const maxBody = 64 << 10

// Request is what a joining hypervisor asks for.
type Request struct {
	Nonce string `json:"nonce"`
	// Name is the hypervisor's name in the cluster spec.
	Name string `json:"name"`
	// Address is its management IP, without prefix length.
	Address string `json:"address"`
	// CSR is a PEM certificate request for the key the joiner made.
	CSR string `json:"csr"`
	// Replace asks to remove a member of the same name first: the
	// hypervisor was reinstalled and its old member is dead.
	Replace bool `json:"replace,omitempty"`
}

// Check validates the fields a member can judge alone.
func (r Request) Check() (netip.Addr, error) {
	if err := model.IsHostname(r.Name); err != nil {
		return netip.Addr{}, fmt.Errorf("the joining hypervisor %v", err)
	}
	addr, err := netip.ParseAddr(r.Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("hypervisor %s: management IP %q: want an IP address such as 192.168.1.102", r.Name, r.Address)
	}
	if addr.IsLoopback() || addr.IsUnspecified() || addr.IsMulticast() {
		if !addr.IsLoopback() || !AllowLoopback {
			return netip.Addr{}, fmt.Errorf("hypervisor %s: management IP %s is not an address other hypervisors can reach", r.Name, addr)
		}
	}
	if r.CSR == "" {
		return netip.Addr{}, fmt.Errorf("hypervisor %s: the request holds no CSR", r.Name)
	}
	return addr.Unmap(), nil
}

// AllowLoopback lets a management IP be a loopback address: tests run a
// whole cluster on 127.0.0.x. Nothing in the product sets it.
var AllowLoopback = false

// Admission is what the Admitter decided for a joiner.
type Admission struct {
	// InitialCluster maps every member's name to its peer URL, the joiner
	// included: what its member starts with.
	InitialCluster map[string]string
	// Warnings are shown to the operator who runs the join (a two-member
	// cluster, for example).
	Warnings []string
	// Ports are the cluster's: every member serves on the same ones.
	Ports Ports
}

// Ports a member serves on; zero means the default (2379, 2380, JoinPort).
type Ports struct {
	Client int `json:"client,omitempty"`
	Peer   int `json:"peer,omitempty"`
	Join   int `json:"join,omitempty"`
}

// Answer is a member's reply to an admitted joiner.
type Answer struct {
	Cluster string `json:"cluster"`
	// CA and CAKey are the cluster CA's certificate and key (PEM).
	CA    string `json:"ca"`
	CAKey string `json:"caKey"`
	// Cert is the joiner's member certificate (PEM), for the key of its
	// CSR.
	Cert           string            `json:"cert"`
	InitialCluster map[string]string `json:"initialCluster"`
	Warnings       []string          `json:"warnings,omitempty"`
	Ports          Ports             `json:"ports"`
	// AdmittedBy names the member that answered.
	AdmittedBy string `json:"admittedBy"`
}

// errorBody is every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
}

// ErrRefused marks an answer in which the member refused the join (as
// opposed to failing to reach it).
var ErrRefused = errors.New("join refused")
