// Command clusterdemo runs the whole Gallium lab cluster (issue 7) once,
// as make demo does: three lab hypervisors with the project's .deb, etcd,
// host networking, the VIP, libvirt networks and VMs, three faults and a
// report (test/cluster/README.md). It needs root. Interrupting it (Ctrl-C,
// SIGTERM) powers the lab hypervisors off and removes their files.
//
//	go run ./test/cluster/cmd/clusterdemo [-deb dist/x.deb] [-out /tmp/gallium-cluster]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/test/cluster"
	"github.com/gallium/gallium-net/test/lab"
)

func main() {
	deb := flag.String("deb", "", "gallium-net .deb to install (default: the newest in dist/)")
	out := flag.String("out", "/tmp/gallium-cluster", "report folder")
	timeout := flag.Duration("timeout", 40*time.Minute, "give up after")
	skip := flag.String("skip", "", "comma-separated steps to leave out (only: "+strings.Join(cluster.Skippable, ", ")+"); make demo skips the reboots unless DEMO_REBOOT=1, the migrations unless DEMO_MIGRATE=1 and the rejoin unless DEMO_REJOIN=1")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "clusterdemo: run it as root (it builds a Debian image with debootstrap and boots QEMU VMs)")
		os.Exit(2)
	}
	lab.SetLogf(func(string, ...any) {}) // the scenario prints its own progress
	var skipped []string
	if *skip != "" {
		skipped = strings.Split(*skip, ",")
	}
	s, err := cluster.New(cluster.Options{Deb: *deb, Out: *out, Skip: skipped})
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterdemo:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		got := <-sig
		fmt.Fprintf(os.Stderr, "\nclusterdemo: %s: powering the lab hypervisors off and cleaning up\n", got)
		cancel()
		s.Close()
		os.Exit(130)
	}()
	for i, st := range s.Steps() {
		if err := s.RunStep(ctx, i, st); err != nil {
			fmt.Fprintf(os.Stderr, "clusterdemo: %v\n", err)
			s.Close()
			os.Exit(1)
		}
	}
	s.Close()
	fmt.Printf("\nclusterdemo: the whole cluster run took %s (report in %s)\n", s.Elapsed().Round(time.Second), *out)
}
