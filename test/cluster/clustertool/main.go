// Command clustertool is the etcd side of the lab cluster (issue 7): a
// static binary shared into each lab hypervisor that runs one etcd member
// there (the Debian 12 image has no etcd server, and this one is built from
// the same etcd release as gallium-net's client) and measures the store
// while faults happen.
//
//	clustertool serve -name hv1 -ip 192.168.1.101 -cluster hv1=http://192.168.1.101:2380,... -dir /var/lib/etcd [-existing]
//	clustertool leader -endpoints http://192.168.1.101:2379,...   (prints NAME of the leader, or fails)
//	clustertool health -endpoints ... [-want 3] [-timeout 60s]    (waits until -want members answer and agree on a leader)
//	clustertool probe -endpoints ... [-interval 20ms] [-duration 10s]
//	                                    (writes a key every interval; one JSON line: writes, failures, longest gap)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "leader":
		err = leader(os.Args[2:])
	case "health":
		err = health(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "clustertool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clustertool serve|leader|health|probe [flags]")
	os.Exit(2)
}

func mustURL(s string) (url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, err
	}
	return *u, nil
}

// serve runs one member until SIGTERM/SIGINT.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", "", "member name")
	ip := fs.String("ip", "", "address to listen on (the management IP)")
	initial := fs.String("cluster", "", "initial cluster: NAME=PEERURL,...")
	dir := fs.String("dir", "/var/lib/gallium-etcd", "data directory")
	existing := fs.Bool("existing", false, "rejoin an existing cluster (restart after a stop)")
	tick := fs.Uint("tick-ms", 100, "heartbeat interval (etcd's default)")
	election := fs.Uint("election-ms", 1000, "election timeout (etcd's default)")
	fs.Parse(args)
	if *name == "" || *ip == "" || *initial == "" {
		return errors.New("-name, -ip and -cluster are required")
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	curl, err := mustURL("http://" + *ip + ":2379")
	if err != nil {
		return err
	}
	purl, err := mustURL("http://" + *ip + ":2380")
	if err != nil {
		return err
	}
	cfg.ListenClientUrls = []url.URL{curl}
	if *ip != "127.0.0.1" {
		local, _ := mustURL("http://127.0.0.1:2379")
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, local)
	}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = *initial
	cfg.InitialClusterToken = "gallium-lab"
	cfg.ClusterState = embed.ClusterStateFlagNew
	if *existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.TickMs, cfg.ElectionMs = *tick, *election
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", *name, err)
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "clustertool: member %s ready\n", *name)
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}

func client(endpoints string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(endpoints, ","),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// leaderName asks each endpoint for its status and returns the leader's
// member name and how many members answered.
func leaderName(ctx context.Context, c *clientv3.Client) (string, int, error) {
	answered := 0
	var lead uint64
	var lastErr error
	for _, ep := range c.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		st, err := c.Status(sctx, ep)
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", ep, err)
			continue
		}
		answered++
		if st.Leader == 0 {
			continue
		}
		if lead != 0 && lead != st.Leader {
			return "", answered, fmt.Errorf("members disagree on the leader (%x, %x)", lead, st.Leader)
		}
		lead = st.Leader
	}
	if lead == 0 {
		if lastErr == nil {
			lastErr = errors.New("no leader")
		}
		return "", answered, lastErr
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ms, err := c.MemberList(mctx)
	if err != nil {
		return "", answered, err
	}
	for _, m := range ms.Members {
		if m.ID == lead {
			return m.Name, answered, nil
		}
	}
	return "", answered, fmt.Errorf("leader %x is not a member", lead)
}

func leader(args []string) error {
	fs := flag.NewFlagSet("leader", flag.ExitOnError)
	eps := fs.String("endpoints", "http://127.0.0.1:2379", "client URLs, comma-separated")
	fs.Parse(args)
	c, err := client(*eps)
	if err != nil {
		return err
	}
	defer c.Close()
	name, _, err := leaderName(context.Background(), c)
	if err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

// health waits until -want members answer and agree on one leader.
func health(args []string) error {
	fs := flag.NewFlagSet("health", flag.ExitOnError)
	eps := fs.String("endpoints", "http://127.0.0.1:2379", "client URLs, comma-separated")
	want := fs.Int("want", 3, "members that must answer")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	fs.Parse(args)
	c, err := client(*eps)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(*timeout)
	for {
		name, n, err := leaderName(context.Background(), c)
		if err == nil && n >= *want {
			fmt.Printf("%s %d\n", name, n)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %d of %d members answer, leader %q: %v", *timeout, n, *want, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// probeStats is probe's JSON line.
type probeStats struct {
	Writes   int     `json:"writes"`
	Failed   int     `json:"failed"`
	MaxGapMs float64 `json:"maxGapMs"` // longest time between two successful writes
	GapAtMs  float64 `json:"gapAtMs"`  // when that gap started, from the probe's start
	MaxLatMs float64 `json:"maxLatMs"` // slowest successful write
}

// probe writes one key every interval for duration, each write bounded by
// a timeout, and reports the longest time without a successful write: what
// a client of the store sees while a leader is lost and a new one elected.
func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	eps := fs.String("endpoints", "http://127.0.0.1:2379", "client URLs, comma-separated")
	interval := fs.Duration("interval", 20*time.Millisecond, "between writes")
	duration := fs.Duration("duration", 10*time.Second, "how long")
	key := fs.String("key", "/gallium-lab/probe", "key to write")
	fs.Parse(args)
	c, err := client(*eps)
	if err != nil {
		return err
	}
	defer c.Close()
	var st probeStats
	start := time.Now()
	last := start
	for i := 0; time.Since(start) < *duration; i++ {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Put(ctx, *key, fmt.Sprint(i))
		cancel()
		st.Writes++
		now := time.Now()
		if err != nil {
			st.Failed++
		} else {
			if gap := now.Sub(last); float64(gap.Microseconds())/1000 > st.MaxGapMs {
				st.MaxGapMs = float64(gap.Microseconds()) / 1000
				st.GapAtMs = float64(last.Sub(start).Microseconds()) / 1000
			}
			if lat := float64(now.Sub(t0).Microseconds()) / 1000; lat > st.MaxLatMs {
				st.MaxLatMs = lat
			}
			last = now
		}
		if d := *interval - time.Since(t0); d > 0 {
			time.Sleep(d)
		}
	}
	if gap := time.Since(last); float64(gap.Microseconds())/1000 > st.MaxGapMs {
		st.MaxGapMs = float64(gap.Microseconds()) / 1000
		st.GapAtMs = float64(last.Sub(start).Microseconds()) / 1000
	}
	return json.NewEncoder(os.Stdout).Encode(st)
}
