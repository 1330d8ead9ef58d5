// Command clustertool measures the lab cluster's store while faults happen:
// a static binary shared into each lab hypervisor. The store itself is the
// product's (gallium-net-store.service, from `gallium-net cluster init` and
// `cluster join`); clustertool reaches it with the hypervisor's own member
// certificate from /etc/gallium-net/cluster.
//
//	clustertool leader -endpoints https://192.168.1.101:2379,...  (prints NAME of the leader, or fails)
//	clustertool health -endpoints ... [-want 3] [-timeout 60s]    (waits until -want members answer and agree on a leader)
//	clustertool probe -endpoints ... [-interval 20ms] [-duration 10s]
//	                                    (writes a key every interval; one JSON line: writes, failures, longest gap)
//	clustertool refused -endpoints ...  (exits 0 when a client with the CA but no certificate is refused)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "refused":
		err = refused(os.Args[2:])
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
	fmt.Fprintln(os.Stderr, "usage: clustertool leader|health|probe|refused [flags]")
	os.Exit(2)
}

// certDir is where `gallium-net cluster init/join` put this hypervisor's
// member certificate, which is a client certificate too.
const certDir = "/etc/gallium-net/cluster/"

func client(endpoints string) (*clientv3.Client, error) {
	return newClient(endpoints, true)
}

func newClient(endpoints string, withCert bool) (*clientv3.Client, error) {
	info := transport.TLSInfo{TrustedCAFile: certDir + "ca.pem"}
	if withCert {
		info.CertFile, info.KeyFile = certDir+"member.pem", certDir+"member-key.pem"
	}
	tlsCfg, err := info.ClientConfig()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(endpoints, ","),
		DialTimeout: 2 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
	})
}

// refused checks that the store refuses a client that trusts the cluster
// CA but has no certificate of its own.
func refused(args []string) error {
	fs := flag.NewFlagSet("refused", flag.ExitOnError)
	eps := fs.String("endpoints", "https://127.0.0.1:2379", "client URLs, comma-separated")
	fs.Parse(args)
	c, err := newClient(*eps, false)
	if err != nil {
		return err
	}
	defer c.Close()
	// The handshake fails at once; gRPC retries until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = c.Get(ctx, "/gallium-net/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		return errors.New("a client without a certificate read the store")
	}
	fmt.Printf("refused: %v\n", err)
	return nil
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
	eps := fs.String("endpoints", "https://127.0.0.1:2379", "client URLs, comma-separated")
	// Right after a leader is lost the members may have none yet, and on
	// a slow lab hypervisor a status answer can take longer than one
	// attempt waits: ask again until a leader is named or this is up.
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	fs.Parse(args)
	c, err := client(*eps)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(*timeout)
	for {
		name, _, err := leaderName(context.Background(), c)
		if err == nil {
			fmt.Println(name)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		fmt.Fprintf(os.Stderr, "clustertool leader: %v; asking again\n", err)
		time.Sleep(time.Second)
	}
}

// health waits until -want members answer and agree on one leader.
func health(args []string) error {
	fs := flag.NewFlagSet("health", flag.ExitOnError)
	eps := fs.String("endpoints", "https://127.0.0.1:2379", "client URLs, comma-separated")
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
	eps := fs.String("endpoints", "https://127.0.0.1:2379", "client URLs, comma-separated")
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
