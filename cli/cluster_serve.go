package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/clusterjoin"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
	"github.com/gallium/gallium-net/plugin/storemember"
)

func clusterServeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run this hypervisor's store member and admit joining hypervisors (" + storeUnit + ")",
		Description: `What gallium-net-store.service runs: this hypervisor's etcd member on its
management IP (and 127.0.0.1 for local commands), with mutual TLS, and the
join endpoint on which it admits hypervisors that hold the join token. A
member that joined as a learner promotes itself once it has caught up.
It runs until stopped (SIGTERM); it tells systemd when it is ready.

Example:
   gallium-net cluster serve`,
		Flags:  []cli.Flag{clusterDirFlag(), configFlag()},
		Action: clusterServe,
	}
}

func clusterServe(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h := homeOf(c)
	m, err := h.Load()
	if err != nil {
		return err
	}
	log := slog.Default().With("cluster", m.Cluster, "member", m.Name)
	cfg := m.StoreMember(h)
	cfg.Logger = slog.Default()
	member, err := storemember.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer member.Stop()

	backend, err := etcdstore.Open(m.Client(h))
	if err != nil {
		return err
	}
	defer backend.Close()

	joinSrv, err := newJoinServer(h, m, backend, log)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", strings.TrimPrefix(m.JoinURL(), "https://"), joinSrv.TLSConfig())
	if err != nil {
		return fmt.Errorf("join endpoint %s: %w", m.JoinURL(), err)
	}
	hs := &http.Server{Handler: joinSrv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	defer hs.Close()

	go keepEndpoints(ctx, h, backend, log)
	promoted := make(chan error, 1)
	go func() { promoted <- promoteSelf(ctx, h, m, log) }()
	sdNotify("READY=1\nSTATUS=store member " + m.Name + " serving; join endpoint " + m.JoinURL())
	log.Info("store member serving", "client", m.ClientURL(), "peer", m.PeerURL(), "join", m.JoinURL())

	for {
		select {
		case <-ctx.Done():
			sdNotify("STOPPING=1")
			log.Info("store member stopping")
			return nil
		case err := <-member.Err():
			return err
		case err := <-httpErr:
			return fmt.Errorf("join endpoint %s: %w", m.JoinURL(), err)
		case err := <-promoted:
			if err != nil {
				return err
			}
			promoted = nil
		}
	}
}

// promoteSelf makes this member a voting one when it joined as a learner.
// A learner serves no client requests, so it asks the other members.
func promoteSelf(ctx context.Context, h clusterhome.Home, m *clusterhome.Member, log *slog.Logger) error {
	cfg := m.Client(h)
	cfg.Endpoints = slices.DeleteFunc(cfg.Endpoints, func(ep string) bool {
		return ep == m.ClientURL() || strings.Contains(ep, "//127.0.0.1:")
	})
	if len(cfg.Endpoints) == 0 {
		return nil // the first member: nobody to be promoted by
	}
	others, err := etcdstore.Open(cfg)
	if err != nil {
		return err
	}
	defer others.Close()
	for attempt := 1; ; attempt++ {
		err := storemember.Promote(ctx, others.Client(), m.Name)
		if err == nil {
			log.Info("store member is a voting member")
			return nil
		}
		if errors.Is(err, storemember.ErrNoMember) || ctx.Err() != nil {
			return err
		}
		log.Warn("store member not promoted yet; retrying", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// keepEndpoints keeps the home's endpoints file equal to the members'
// client URLs, so that this hypervisor's commands find the others when its
// own member is down.
func keepEndpoints(ctx context.Context, h clusterhome.Home, backend *etcdstore.Backend, log *slog.Logger) {
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := backend.Client().MemberList(lctx)
		cancel()
		if err == nil {
			var eps []string
			for _, m := range list.Members {
				eps = append(eps, m.ClientURLs...)
			}
			if len(eps) > 0 {
				if changed, err := h.SaveEndpoints(eps); err != nil {
					log.Warn("writing the store endpoints file", "error", err)
				} else if changed {
					log.Info("store endpoints updated", "endpoints", strings.Join(eps, ","))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(15 * time.Second):
		}
	}
}

// newJoinServer builds the member's join endpoint over its own store.
func newJoinServer(h clusterhome.Home, m *clusterhome.Member, backend *etcdstore.Backend, log *slog.Logger) (*clusterjoin.Server, error) {
	var files [4][]byte
	for i, name := range []string{clusterhome.CAFile, clusterhome.CAKeyFile, clusterhome.CertFile, clusterhome.KeyFile} {
		data, err := h.Read(name)
		if err != nil {
			return nil, fmt.Errorf("cluster home: %w", err)
		}
		files[i] = data
	}
	tok, err := h.Token()
	if err != nil {
		return nil, err
	}
	a := &admitter{cli: backend.Client(), st: store.New(backend), ports: clusterjoin.Ports{Client: m.ClientPort, Peer: m.PeerPort, Join: m.JoinPort}}
	return clusterjoin.NewServer(clusterjoin.ServerConfig{
		Cluster: m.Cluster, Member: m.Name,
		CACert: files[0], CAKey: files[1], CertPEM: files[2], KeyPEM: files[3],
		Token: tok, Admit: a, Logger: log,
	})
}

// admitter decides, on a member, whether a joiner may join the store.
type admitter struct {
	cli   *clientv3.Client
	st    *store.Store
	ports clusterjoin.Ports
}

func (a *admitter) Admit(ctx context.Context, req clusterjoin.Request, addr netip.Addr) (clusterjoin.Admission, error) {
	// Once a spec is stored, a joiner must be one of its hypervisors, at
	// its management IP: a typo in a name must not become a member.
	_, spec, err := storedSpec(ctx, a.st)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return clusterjoin.Admission{}, fmt.Errorf("reading the stored spec: %w", err)
	default:
		hv := spec.Hypervisor(req.Name)
		if hv == nil {
			return clusterjoin.Admission{}, fmt.Errorf("hypervisor %s is not in the cluster spec in the store (hypervisors: %s): add it with 'gallium-net cluster apply' first, or join under its name there",
				req.Name, strings.Join(spec.HypervisorNames(), ", "))
		}
		if ip, err := managementAddr(hv.ManagementIP); err != nil || ip != addr {
			return clusterjoin.Admission{}, fmt.Errorf("hypervisor %s joins from management IP %s, but the stored spec gives it %s: fix the spec or this hypervisor's address", req.Name, addr, hv.ManagementIP)
		}
	}
	if req.Replace {
		if err := storemember.RemoveByName(ctx, a.cli, req.Name); err != nil && !errors.Is(err, storemember.ErrNoMember) {
			return clusterjoin.Admission{}, err
		}
	}
	peerPort := a.ports.Peer
	if peerPort == 0 {
		peerPort = storemember.DefaultPeerPort
	}
	peer := "https://" + net.JoinHostPort(addr.String(), fmt.Sprint(peerPort))
	ic, err := storemember.AddLearner(ctx, a.cli, req.Name, peer)
	if err != nil {
		return clusterjoin.Admission{}, err
	}
	adm := clusterjoin.Admission{InitialCluster: ic, Ports: a.ports}
	if len(ic) == 2 {
		adm.Warnings = append(adm.Warnings, "the store has two members: while either is down the other cannot write (etcd needs a majority); join a third hypervisor")
	}
	return adm, nil
}

// sdNotify tells systemd (Type=notify) about the service's state; outside
// systemd it does nothing.
func sdNotify(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		slog.Warn("sd_notify", "error", err)
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
