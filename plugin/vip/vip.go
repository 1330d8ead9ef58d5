// Package vip renders the keepalived (VRRP) configuration that floats the
// cluster's virtual IP between hypervisors. It is pure: spec in, text out;
// the CLI installs the file and reloads keepalived.
//
// Choices an operator would expect, written down here:
//   - the VIP lives on the infrastructure bridge (where the management IP
//     is, untagged), as VIP/prefix of the management subnet;
//   - unicast VRRP between the management IPs, so no multicast is needed on
//     the infrastructure network;
//   - the virtual router id is a stable hash of the cluster name (1-255), so
//     every hypervisor derives the same one without coordination;
//   - priorities follow hypervisor order in the spec (first = highest);
//   - nopreempt: a recovering hypervisor does not take the VIP back, which
//     would cut management sessions twice;
//   - the instance goes to FAULT (and gives the VIP up) when the
//     infrastructure bond has no live adapter: track_interface on the bond
//     (the bond loses carrier when its last adapter does, seen at once) and
//     a lenient check script that the bond has an active adapter (three
//     failures 2 s apart, 10 s each to run: a host starved of CPU, as all
//     three lab hypervisors were once under TCG, must not drop the VIP).
package vip

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
)

// Marker is on the first line of every rendered file; `vip apply` only
// replaces a keepalived.conf that carries it (unless forced).
const Marker = "# Managed by gallium-net"

// Options tune rendering; the zero value is what `vip config` uses.
type Options struct {
	// Interface overrides the VRRP interface (default: the infrastructure
	// group's bridge).
	Interface string
	// Bond overrides the tracked bond (default: the infrastructure
	// group's bond).
	Bond string
	// CheckScript overrides the liveness check command. The default checks
	// that the bond has an active adapter in sysfs; a test on a kernel
	// without bonding passes a carrier check instead.
	CheckScript string
	// Advert is the VRRP advertisement interval (default DefaultAdvert),
	// in steps of 10 ms (VRRPv3 counts centiseconds). A backup takes over
	// after 3 intervals without adverts plus a skew of at most one, or at
	// once when the holder stops cleanly.
	Advert time.Duration
	// SpecRevision, when set, is noted in the header.
	SpecRevision int64
}

// DefaultAdvert is the advertisement interval: a holder that dies (no
// goodbye) is replaced after 3 adverts and a skew, 0.6-0.8 s, under the
// second an operator's SSH session and the store's clients ride out.
// VRRPv3 carries intervals below a second (v2 cannot), and keepalived's
// VRRP process runs at a real-time priority so that VMs that hog every
// core of a hypervisor do not delay its adverts into a false takeover.
const DefaultAdvert = 200 * time.Millisecond

// RTPriority is keepalived's VRRP process' real-time (SCHED_RR) priority:
// above every ordinary process, below the kernel's own threads (50 for
// interrupt threads on PREEMPT_RT kernels).
const RTPriority = 40

// RTTimeLimit is the CPU time keepalived's real-time VRRP process may use
// without blocking before the kernel kills it (RLIMIT_RTTIME). keepalived's
// default, 10 ms, was exceeded by the burst of gratuitous ARPs of a new
// holder in the namespace tests, and each kill respawned the VRRP process
// and started a new election; a runaway is still stopped in half a second.
const RTTimeLimit = 500 * time.Millisecond

// RouterID derives the VRRP virtual router id (1-255) from the cluster name:
// FNV-1a, so it is stable across versions and hosts.
func RouterID(cluster string) int {
	h := fnv.New32a()
	h.Write([]byte(cluster))
	return int(h.Sum32()%255) + 1
}

// Priority is hypervisor number i's (0-based, spec order) VRRP priority
// among n: 200, 150, 100 for three, closer for more, never below 1; 255 is
// reserved by VRRP for an address owner. The steps are wide because the
// priority also sets each backup's skew after a goodbye: with 200 ms
// adverts, steps of 10 put the two backups' takeovers 8 ms apart, and both
// took the VIP for up to 0.9 s before the lower one yielded.
func Priority(i, n int) int {
	step := 50
	if n > 1 && 199/(n-1) < step {
		step = 199 / (n - 1)
	}
	if step < 1 {
		step = 1
	}
	p := 200 - i*step
	if p < 1 {
		p = 1
	}
	return p
}

// Config is the data of one hypervisor's keepalived.conf.
type Config struct {
	Cluster      string
	Hypervisor   string
	SpecRevision int64
	RouterID     int
	Instance     string
	Priority     int
	Interface    string
	Bond         string
	CheckScript  string
	// AdvertInt is Advert in seconds as keepalived reads it ("0.2").
	AdvertInt  string
	RTPriority int
	// RTTimeLimitUsec is vrrp_rlimit_rttime (RTTimeLimit).
	RTTimeLimitUsec int64
	SourceIP        string
	Peers           []string
	VIP             string // address/prefix
}

// Build computes hypervisor hv's keepalived settings from the spec.
func Build(s *model.Spec, hv string, opts Options) (*Config, error) {
	idx := -1
	for i, h := range s.Hypervisors {
		if h.Name == hv {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("keepalived config: hypervisor %q is not in the cluster spec (known: %s); pass --hypervisor", hv, strings.Join(s.HypervisorNames(), ", "))
	}
	infra := s.InfrastructureGroup()
	if infra == nil {
		return nil, fmt.Errorf("keepalived config: the spec has no infrastructure adapter group (infrastructure: true); the VIP lives on it")
	}
	subnet, err := netip.ParsePrefix(s.Cluster.Subnet)
	if err != nil {
		return nil, fmt.Errorf("keepalived config: cluster.subnet %q: %w", s.Cluster.Subnet, err)
	}
	vip, err := netip.ParseAddr(s.Cluster.VIP)
	if err != nil {
		return nil, fmt.Errorf("keepalived config: cluster.vip %q is not an IP address; set it in the spec", s.Cluster.VIP)
	}
	if !subnet.Contains(vip) {
		return nil, fmt.Errorf("keepalived config: cluster.vip %s is outside cluster.subnet %s", vip, subnet)
	}
	c := &Config{
		Cluster:         s.Cluster.Name,
		Hypervisor:      hv,
		SpecRevision:    opts.SpecRevision,
		RouterID:        RouterID(s.Cluster.Name),
		Instance:        "gallium_" + identifier(s.Cluster.Name),
		Priority:        Priority(idx, len(s.Hypervisors)),
		Interface:       opts.Interface,
		Bond:            opts.Bond,
		CheckScript:     opts.CheckScript,
		VIP:             netip.PrefixFrom(vip, subnet.Bits()).String(),
		RTPriority:      RTPriority,
		RTTimeLimitUsec: RTTimeLimit.Microseconds(),
	}
	if c.Interface == "" {
		c.Interface = model.BridgeName(infra.Name)
	}
	if c.Bond == "" {
		c.Bond = model.BondName(infra.Name)
	}
	if c.CheckScript == "" {
		c.CheckScript = "/bin/sh -c 'grep -qs . /sys/class/net/" + c.Bond + "/bonding/active_slave'"
	}
	if strings.Contains(c.CheckScript, `"`) {
		return nil, fmt.Errorf("keepalived config: check script %q must not contain double quotes (keepalived quotes it with them)", c.CheckScript)
	}
	adv := opts.Advert
	if adv == 0 {
		adv = DefaultAdvert
	}
	if adv < 10*time.Millisecond || adv > 40950*time.Millisecond || adv%(10*time.Millisecond) != 0 {
		return nil, fmt.Errorf("keepalived config: advert interval %v: want 10 ms to 40.95 s in steps of 10 ms (VRRPv3 centiseconds)", adv)
	}
	c.AdvertInt = strconv.FormatFloat(adv.Seconds(), 'f', -1, 64)
	for i, h := range s.Hypervisors {
		p, err := netip.ParsePrefix(h.ManagementIP)
		if err != nil {
			return nil, fmt.Errorf("keepalived config: hypervisors[%s].managementIP %q: want address/prefix such as 192.168.1.101/24", h.Name, h.ManagementIP)
		}
		if i == idx {
			c.SourceIP = p.Addr().String()
		} else {
			c.Peers = append(c.Peers, p.Addr().String())
		}
	}
	return c, nil
}

// identifier turns a cluster name into a keepalived-safe word.
func identifier(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

var tmpl = template.Must(template.New("keepalived").Parse(Marker + ` for hypervisor {{.Hypervisor}} of cluster {{.Cluster}}
{{- if .SpecRevision}} (spec revision {{.SpecRevision}}){{end}}.
# Do not edit: change the cluster spec and run 'gallium-net vip apply'.

global_defs {
    router_id gallium-{{.Cluster}}-{{.Hypervisor}}
    script_user root
    enable_script_security
    # VRRPv3: advert intervals below a second; a holder that dies is
    # replaced after 3 adverts and a skew.
    vrrp_version 3
    # Adverts on time on a hypervisor whose VMs take every core. The
    # kernel kills a real-time process that runs longer than the limit
    # without blocking; keepalived's 10 ms default is shorter than one
    # burst of gratuitous ARPs on a slow or busy host.
    vrrp_rt_priority {{.RTPriority}}
    vrrp_rlimit_rttime {{.RTTimeLimitUsec}}
    vrrp_no_swap
}

# The infrastructure bond must have a live adapter to hold the VIP. A bond
# that loses its last adapter loses carrier, which track_interface sees at
# once; this check is the second opinion, so it is lenient: on a starved
# host a check that cannot finish in time must not put every hypervisor in
# FAULT together and leave the cluster without its VIP.
vrrp_script gallium_infra_live {
    script "{{.CheckScript}}"
    interval 2
    timeout 10
    fall 3
    rise 2
}

vrrp_instance {{.Instance}} {
    state BACKUP
    nopreempt
    interface {{.Interface}}
    virtual_router_id {{.RouterID}}
    priority {{.Priority}}
    advert_int {{.AdvertInt}}
{{- if .Peers}}
    unicast_src_ip {{.SourceIP}}
    unicast_peer {
{{- range .Peers}}
        {{.}}
{{- end}}
    }
{{- end}}
    virtual_ipaddress {
        {{.VIP}} dev {{.Interface}}
    }
    track_interface {
        {{.Bond}}
    }
    track_script {
        gallium_infra_live
    }
}
`))

// Render returns hypervisor hv's keepalived.conf.
func Render(s *model.Spec, hv string, opts Options) ([]byte, error) {
	c, err := Build(s, hv, opts)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("keepalived config for %s: %w", hv, err)
	}
	return b.Bytes(), nil
}
