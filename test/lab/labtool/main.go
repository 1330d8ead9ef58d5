// Command labtool is a small static helper that the kernel lab puts into
// every lab VM (as /usr/local/bin/labtool). Host-side lab tests drive it
// through the guest agent:
//
//	labtool bond -name bond0 -slaves eth0,eth1 [-mode active-backup] [-miimon 100] [-primary eth0] [-addr 10.99.1.1/24]
//	labtool echo -listen :7777 [-duration 60s]
//	labtool probe -to 10.99.1.1:7777 [-interval 10ms] [-duration 5s]   (prints one JSON line of statistics)
//	labtool watch-bond -bond bond0 [-changes 1] [-timeout 30s] [-poll 2ms] (prints one JSON line per event;
//	                                    exits after -changes changes to a non-empty active slave)
//
// The bond is created through netlink (github.com/vishvananda/netlink), the
// way netsetup does it.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gallium/gallium-net/test/lab/labwire"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "bond":
		err = bond(os.Args[2:])
	case "echo":
		err = echo(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "watch-bond":
		err = watchBond(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: labtool bond|echo|probe|watch-bond [flags]")
	os.Exit(2)
}

func bond(args []string) error {
	fs := flag.NewFlagSet("bond", flag.ExitOnError)
	name := fs.String("name", "bond0", "bond name")
	mode := fs.String("mode", "active-backup", "bond mode")
	miimon := fs.Int("miimon", 100, "MII monitoring interval (ms)")
	primary := fs.String("primary", "", "primary slave")
	slaves := fs.String("slaves", "", "comma-separated slaves")
	addr := fs.String("addr", "", "address to add, CIDR")
	grat := fs.Int("num-grat-arp", 1, "gratuitous ARPs after a failover")
	fs.Parse(args)

	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: *name})
	b.Mode = netlink.StringToBondMode(*mode)
	b.Miimon = *miimon
	b.NumPeerNotif = *grat
	if err := netlink.LinkAdd(b); err != nil {
		return fmt.Errorf("add bond %s: %w", *name, err)
	}
	master, err := netlink.LinkByName(*name)
	if err != nil {
		return err
	}
	for _, s := range strings.Split(*slaves, ",") {
		if s == "" {
			continue
		}
		l, err := netlink.LinkByName(s)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return fmt.Errorf("down %s: %w", s, err)
		}
		if err := netlink.LinkSetMasterByIndex(l, master.Attrs().Index); err != nil {
			return fmt.Errorf("enslave %s: %w", s, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", s, err)
		}
	}
	if *primary != "" {
		if err := os.WriteFile("/sys/class/net/"+*name+"/bonding/primary", []byte(*primary), 0); err != nil {
			return fmt.Errorf("primary: %w", err)
		}
	}
	if err := netlink.LinkSetUp(master); err != nil {
		return err
	}
	if *addr != "" {
		a, err := netlink.ParseAddr(*addr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(master, a); err != nil {
			return fmt.Errorf("address: %w", err)
		}
	}
	return nil
}

func echo(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	listen := fs.String("listen", ":7777", "UDP address")
	dur := fs.Duration("duration", 60*time.Second, "stop after")
	fs.Parse(args)
	c, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(*dur))
	buf := make([]byte, 2048)
	n := 0
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Printf("echoed %d\n", n)
			return nil
		}
		c.WriteTo(buf[:k], from)
		n++
	}
}

func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	to := fs.String("to", "", "UDP echo address")
	interval := fs.Duration("interval", 10*time.Millisecond, "probe interval")
	dur := fs.Duration("duration", 5*time.Second, "send for")
	grace := fs.Duration("grace", time.Second, "wait for late echoes")
	fs.Parse(args)
	c, err := net.Dial("udp", *to)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	got := map[uint64]bool{}
	var maxRTT time.Duration
	start := time.Now()
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return
				}
				// ICMP unreachable while the path is down: keep reading.
				if strings.Contains(err.Error(), "refused") {
					continue
				}
				return
			}
			if n < 16 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			rtt := time.Since(start) - time.Duration(binary.BigEndian.Uint64(buf[8:]))
			mu.Lock()
			got[seq] = true
			if rtt > maxRTT {
				maxRTT = rtt
			}
			mu.Unlock()
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	t := time.NewTicker(*interval)
	end := time.After(*dur)
	var sent uint64
	pkt := make([]byte, 16)
loop:
	for {
		select {
		case <-t.C:
			binary.BigEndian.PutUint64(pkt, sent)
			binary.BigEndian.PutUint64(pkt[8:], uint64(time.Since(start)))
			c.Write(pkt)
			sent++
		case <-end:
			break loop
		case <-stop:
			break loop
		}
	}
	t.Stop()
	sendDur := time.Since(start)
	time.Sleep(*grace)
	c.SetReadDeadline(time.Now())
	mu.Lock()
	defer mu.Unlock()
	st := labwire.ProbeStats{Sent: int(sent), Received: len(got), IntervalMs: ms(*interval), DurationMs: ms(sendDur), MaxRTTms: ms(maxRTT)}
	run := 0
	for i := uint64(0); i < sent; i++ {
		if got[i] {
			run = 0
			continue
		}
		st.Lost++
		run++
		if run > st.MaxBurst {
			st.MaxBurst = run
		}
		if run == 1 && len(st.LostRanges) < 10 {
			j := i
			for j+1 < sent && !got[j+1] {
				j++
			}
			st.LostRanges = append(st.LostRanges, fmt.Sprintf("%d-%d", i, j))
		}
	}
	b, _ := json.Marshal(st)
	fmt.Println(string(b))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func watchBond(args []string) error {
	fs := flag.NewFlagSet("watch-bond", flag.ExitOnError)
	name := fs.String("bond", "bond0", "bond")
	changes := fs.Int("changes", 1, "exit after this many active-slave changes")
	timeout := fs.Duration("timeout", 30*time.Second, "exit after")
	poll := fs.Duration("poll", 2*time.Millisecond, "poll interval")
	fs.Parse(args)
	dir := "/sys/class/net/" + *name + "/bonding/"
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	start := time.Now()
	emit := func(e labwire.BondEvent) {
		e.Ms = ms(time.Since(start))
		b, _ := json.Marshal(e)
		os.Stdout.Write(append(b, '\n'))
	}
	slaves := strings.Fields(read(dir + "slaves"))
	sort.Strings(slaves)
	carrier := map[string]string{}
	for _, s := range slaves {
		carrier[s] = read("/sys/class/net/" + s + "/carrier")
		emit(labwire.BondEvent{Event: "carrier", Dev: s, Up: carrier[s] == "1"})
	}
	active := read(dir + "active_slave")
	emit(labwire.BondEvent{Event: "active", Dev: *name, Active: active})
	n := 0
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		// The active slave first, then the carriers: a carrier change that
		// caused the switch is then always reported, and before it.
		a := read(dir + "active_slave")
		for _, s := range slaves {
			if c := read("/sys/class/net/" + s + "/carrier"); c != carrier[s] {
				carrier[s] = c
				emit(labwire.BondEvent{Event: "carrier", Dev: s, Up: c == "1"})
			}
		}
		if a != active {
			active = a
			emit(labwire.BondEvent{Event: "active", Dev: *name, Active: a})
			if a == "" {
				continue // no active slave for a while: not a change yet
			}
			n++
			if n >= *changes {
				return nil
			}
		}
		time.Sleep(*poll)
	}
	return fmt.Errorf("timeout after %s with %d active-slave changes", *timeout, n)
}
