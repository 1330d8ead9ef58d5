package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/clusterjoin"
	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/storemember"
)

// storeUnit runs `gallium-net cluster serve`.
const storeUnit = "gallium-net-store.service"

// agentUnit runs `gallium-net agent`.
const agentUnit = "gallium-net-agent.service"

// clusterCommand is `cluster init|join|token|serve|status|remove|backup`:
// the cluster store that every hypervisor of a production cluster runs a
// member of.
func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the cluster store: create it, join hypervisors, see its health, back it up",
		Description: `A production cluster keeps its state (the spec, the VM MAC ledger) in a
store that every hypervisor runs a member of (etcd, embedded in gallium-net,
as gallium-net-store.service), with mutual TLS from the cluster's own CA.

   hv1# gallium-net cluster init            # creates the CA and the store, prints a join token
   hv2# gallium-net cluster join --server 192.168.1.101 TOKEN
   hv3# gallium-net cluster join --server 192.168.1.101 TOKEN
   any# gallium-net cluster status

A single-hypervisor evaluation cluster needs none of this: its state stays
in the local file /var/lib/gallium-net/state.db.`,
		Subcommands: []*cli.Command{
			clusterInitCommand(),
			clusterJoinCommand(),
			clusterTokenCommand(),
			clusterServeCommand(),
			clusterApplyCommand(),
			clusterStatusCommand(),
			clusterRemoveCommand(),
			clusterBackupCommand(),
		},
	}
}

// clusterDirFlag is --cluster-dir: where this hypervisor keeps its
// membership (plugin/clusterhome).
func clusterDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "cluster-dir", Usage: "this hypervisor's store membership `DIR` (default: cluster.dir in the config, else " + clusterhome.DefaultDir + ")"}
}

// homeOf is the membership directory --cluster-dir or the config names.
func homeOf(c *cli.Context) clusterhome.Home {
	if d := c.String("cluster-dir"); d != "" {
		return clusterhome.New(d)
	}
	if cfg, err := hostConfigOf(c); err == nil && cfg.Cluster.Dir != "" {
		return clusterhome.New(cfg.Cluster.Dir)
	}
	return clusterhome.New("")
}

// memberFlags are the flags of init and join: who this hypervisor is when
// there is no spec to say it, and where its member keeps its data.
func memberFlags() []cli.Flag {
	return []cli.Flag{
		specFlag(), hypervisorFlag(), clusterDirFlag(),
		configFlag(),
		&cli.StringFlag{Name: "address", Usage: "this hypervisor's management `IP` (default: its managementIP in the spec)"},
		&cli.StringFlag{Name: "data-dir", Value: storemember.DefaultDataDir, Usage: "the store member's data `DIR`"},
		&cli.BoolFlag{Name: "no-start", Usage: "write the membership but do not start " + storeUnit + " (start it yourself, or run 'gallium-net cluster serve')"},
		&cli.DurationFlag{Name: "timeout", Value: 3 * time.Minute, Usage: "how long to wait for the member to be ready"},
	}
}

// identity is who this hypervisor is in the cluster.
type identity struct {
	cluster, name string
	address       netip.Addr
	spec          *model.Spec
}

// memberIdentity takes the cluster's name, this hypervisor's name and its
// management IP from the spec, or from --cluster, --hypervisor and
// --address when there is no spec yet (it comes with 'cluster apply').
func memberIdentity(c *cli.Context, clusterFlag string) (identity, error) {
	var id identity
	spec, err := readSpec(c)
	switch {
	case err == nil:
		id.spec = spec
		id.cluster = spec.Cluster.Name
		if id.name, err = thisHypervisor(c, spec); err != nil {
			return id, err
		}
		mgmt := spec.Hypervisor(id.name).ManagementIP
		if id.address, err = managementAddr(mgmt); err != nil {
			return id, fmt.Errorf("hypervisor %s: management IP %q in %s: run 'gallium-net validate -f %s'", id.name, mgmt, specPath(c), specPath(c))
		}
		if a := c.String("address"); a != "" && a != id.address.String() {
			return id, fmt.Errorf("--address %s: the spec gives %s the management IP %s: fix one of them", a, id.name, id.address)
		}
	case !specMissing(c):
		return id, err
	default:
		id.name = c.String("hypervisor")
		id.cluster = c.String(clusterFlag)
		a := c.String("address")
		if id.name == "" || a == "" || (clusterFlag != "" && id.cluster == "") {
			need := "--hypervisor NAME --address IP"
			if clusterFlag != "" {
				need = "--" + clusterFlag + " NAME " + need
			}
			return id, fmt.Errorf("%w\nwithout a spec, say who this hypervisor is: %s", err, need)
		}
		if err := model.IsHostname(id.name); err != nil {
			return id, fmt.Errorf("--hypervisor: %w", err)
		}
		if id.address, err = netip.ParseAddr(a); err != nil {
			return id, fmt.Errorf("--address %q: want this hypervisor's management IP, such as 192.168.1.101", a)
		}
	}
	return id, nil
}

// refuseExistingHome stops init and join on a hypervisor that is a member
// already, or holds the remains of an interrupted attempt.
func refuseExistingHome(h clusterhome.Home) error {
	complete, partial, err := h.Exists()
	switch {
	case err != nil:
		return err
	case complete:
		m, err := h.Load()
		if err != nil {
			return err
		}
		return fmt.Errorf("this hypervisor is already %s, a member of cluster %s (%s): 'gallium-net cluster status' shows it; to start over, stop %s and move %s and %s aside",
			m.Name, m.Cluster, h.Path(clusterhome.MemberFile), storeUnit, h.Dir, m.DataDir)
	case partial:
		return fmt.Errorf("%s holds files of an interrupted init or join but no %s: move it aside (mv %s %s.old) and run the command again",
			h.Dir, clusterhome.MemberFile, h.Dir, h.Dir)
	}
	return nil
}

func clusterInitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the cluster store on the first hypervisor: its CA, its first member, a join token",
		Description: `Run once, on the first hypervisor. It creates the cluster's CA (the store
talks mutual TLS only), this hypervisor's member certificate (for its
management IP and 127.0.0.1), the join token, and starts
gallium-net-store.service; then it prints the token for 'cluster join'.

The cluster's name, this hypervisor's name and its management IP come from
the spec (-f, default /etc/gallium-net/cluster.yaml); without one, give
--cluster, --hypervisor and --address. The spec itself goes into the store
with 'gallium-net cluster apply'.

An evaluation cluster of one hypervisor needs no store member: init says so
and does nothing (its state stays in the local bolt file).

The token holds a secret: it lets a host join. 'gallium-net cluster token'
prints it again on any member.

Example:
   gallium-net cluster init -f /etc/gallium-net/cluster.yaml`,
		Flags: append(memberFlags(),
			&cli.StringFlag{Name: "cluster", Usage: "the cluster's `NAME` (default: cluster.name in the spec)"},
			&cli.IntFlag{Name: "client-port", Value: storemember.DefaultClientPort, Usage: "store client `PORT` of every member"},
			&cli.IntFlag{Name: "peer-port", Value: storemember.DefaultPeerPort, Usage: "store peer `PORT` of every member"},
			&cli.IntFlag{Name: "join-port", Value: clusterjoin.JoinPort, Usage: "`PORT` on which members admit joining hypervisors"},
		),
		Action: clusterInit,
	}
}

func clusterInit(c *cli.Context) error {
	h := homeOf(c)
	if err := refuseExistingHome(h); err != nil {
		return err
	}
	id, err := memberIdentity(c, "cluster")
	if err != nil {
		return err
	}
	if id.spec != nil && id.spec.Cluster.Evaluation && len(id.spec.Hypervisors) == 1 {
		fmt.Fprintf(c.App.Writer, "cluster %s is an evaluation cluster of one hypervisor: it needs no store member, and its state stays in the local file (%s). Nothing to do.\n", id.cluster, "/var/lib/gallium-net/state.db")
		return nil
	}
	ca, err := clusterpki.NewCA(id.cluster, time.Now())
	if err != nil {
		return err
	}
	tok, err := clusterpki.NewToken(ca)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	cert, key, err := ca.Issue(clusterpki.IssueRequest{Name: id.name, IPs: memberIPs(id.address), Usage: clusterpki.Peer})
	if err != nil {
		return err
	}
	m := clusterhome.Member{
		Cluster: id.cluster, Name: id.name, Address: id.address.String(),
		ClientPort: portOrZero(c.Int("client-port"), storemember.DefaultClientPort),
		PeerPort:   portOrZero(c.Int("peer-port"), storemember.DefaultPeerPort),
		JoinPort:   portOrZero(c.Int("join-port"), clusterjoin.JoinPort),
		DataDir:    c.String("data-dir"), State: storemember.StateNew,
	}
	m.InitialCluster = map[string]string{id.name: m.PeerURL()}
	if err := checkDataDirFree(m.DataDir); err != nil {
		return err
	}
	if err := h.Save(m, clusterhome.Files{CA: ca.CertPEM(), CAKey: caKey, Cert: cert, Key: key, Token: tok}); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "cluster %s: CA and member certificate for %s (%s) written to %s\n", id.cluster, id.name, id.address, h.Dir)
	if err := startAndWait(c, h, m); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, `
Join the other hypervisors with (the token is a secret; 'gallium-net cluster token' prints it again):

   gallium-net cluster join --server %s %s

Then put the spec into the store and roll it out: gallium-net cluster apply -f SPEC
`, joinServerArg(m), tok)
	return nil
}

// joinServerArg is what `cluster join --server` takes for m.
func joinServerArg(m clusterhome.Member) string {
	if m.JoinPort == 0 || m.JoinPort == clusterjoin.JoinPort {
		return m.Address
	}
	return strings.TrimPrefix(m.JoinURL(), "https://")
}

// portOrZero stores a default port as zero, so member.yaml names only
// what differs from the defaults.
func portOrZero(p, def int) int {
	if p == def {
		return 0
	}
	return p
}

// memberIPs are the addresses a member's certificate holds: the
// management IP, and 127.0.0.1 for this hypervisor's own commands.
func memberIPs(addr netip.Addr) []netip.Addr {
	ips := []netip.Addr{addr}
	if lo := netip.MustParseAddr("127.0.0.1"); addr != lo {
		ips = append(ips, lo)
	}
	return ips
}

// checkDataDirFree refuses a data directory with etcd data in it before
// anything is written: storemember would refuse it at start, after init
// or join had changed the cluster.
func checkDataDirFree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("store data directory %s is not empty: it holds an earlier member's data; move it aside (mv %s %s.old) and run the command again", dir, dir, dir)
	}
	return nil
}

// startAndWait starts the store unit (unless --no-start) and waits until
// this hypervisor's member is a healthy voting member.
func startAndWait(c *cli.Context, h clusterhome.Home, m clusterhome.Member) error {
	if c.Bool("no-start") {
		fmt.Fprintf(c.App.Writer, "not started (--no-start): start the member with 'systemctl enable --now %s' or 'gallium-net cluster serve'\n", storeUnit)
		return nil
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return fmt.Errorf("systemd is not running on this host, so %s cannot be started: run 'gallium-net cluster serve' under your service manager (membership is written to %s)", storeUnit, h.Dir)
	}
	out, err := exec.CommandContext(c.Context, "systemctl", "enable", "--now", storeUnit).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl enable --now %s: %v: %s\nsee 'journalctl -u %s'", storeUnit, err, strings.TrimSpace(string(out)), storeUnit)
	}
	fmt.Fprintf(c.App.Writer, "%s enabled and started; waiting for member %s to be ready\n", storeUnit, m.Name)
	if err := waitMember(c, h, m, c.Duration("timeout")); err != nil {
		return err
	}
	// The agent follows the stored spec from now on.
	if out, err := exec.CommandContext(c.Context, "systemctl", "enable", "--now", agentUnit).CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl enable --now %s: %v: %s\nsee 'journalctl -u %s'", agentUnit, err, strings.TrimSpace(string(out)), agentUnit)
	}
	fmt.Fprintf(c.App.Writer, "%s enabled and started\n", agentUnit)
	return nil
}

// waitMember waits until m is a reachable voting member, saying every few
// seconds what it is waiting for.
func waitMember(c *cli.Context, h clusterhome.Home, m clusterhome.Member, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	started := time.Now()
	var last string
	lastSaid := time.Now()
	for {
		state, err := memberState(ctx, h, m)
		if err == nil && state == "" {
			fmt.Fprintf(c.App.Writer, "member %s ready after %v\n", m.Name, time.Since(started).Round(100*time.Millisecond))
			return nil
		}
		if err != nil {
			state = err.Error()
		}
		if state != last || time.Since(lastSaid) > 10*time.Second {
			fmt.Fprintf(c.App.ErrWriter, "  %v: %s\n", time.Since(started).Round(time.Second), state)
			last, lastSaid = state, time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s not ready after %v (%s): see 'journalctl -u %s'", m.Name, timeout, state, storeUnit)
		case <-time.After(time.Second):
		}
	}
}

// memberState is "" when m is a reachable voting member, else what it is.
func memberState(ctx context.Context, h clusterhome.Home, m clusterhome.Member) (string, error) {
	members, err := storeHealth(ctx, h, m)
	if err != nil {
		return "", err
	}
	for _, mh := range members {
		if mh.Name != m.Name {
			continue
		}
		switch {
		case !mh.Reachable:
			return fmt.Sprintf("member %s does not answer: %v", m.Name, mh.Err), nil
		case mh.Learner:
			return fmt.Sprintf("member %s is a learner, catching up before its promotion", m.Name), nil
		}
		return "", nil
	}
	return fmt.Sprintf("member %s is not in the cluster's member list yet", m.Name), nil
}

// specMissing says whether there is no spec file at all (as opposed to
// one that does not load).
func specMissing(c *cli.Context) bool {
	_, err := os.Stat(specPath(c))
	return errors.Is(err, fs.ErrNotExist)
}

// managementAddr is a spec's managementIP (CIDR or bare) without its
// prefix length.
func managementAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(strings.TrimSpace(s))
}
