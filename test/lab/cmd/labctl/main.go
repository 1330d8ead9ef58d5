// Command labctl drives gallium-net's kernel lab from scripts
// (test/lab/run.sh, fetch-kernel.sh) and by hand:
//
//	labctl prepare                      fetch the kernel, build the initramfs, print what is cached
//	labctl fetch-kernel                 only the kernel
//	labctl test [-list FILE] [-run RE] [PKG...]
//	                                    run Go test binaries of packages inside lab VMs
//	labctl sh [-nics SEG,SEG] [CMD...]  boot a VM and run commands (stdin, one per line, if no CMD)
//	labctl boottime [-n N]              boot N times and print the boot times
//
// Run it from the repository (it finds go.mod upward).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/test/lab"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	code := 0
	switch os.Args[1] {
	case "prepare":
		err = prepare(ctx, true)
	case "fetch-kernel":
		err = prepare(ctx, false)
	case "test":
		code, err = runTests(ctx, os.Args[2:])
	case "sh":
		code, err = shell(ctx, os.Args[2:])
	case "boottime":
		err = bootTime(ctx, os.Args[2:])
	default:
		usage()
	}
	lab.CloseAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "labctl %s: %v\n", os.Args[1], err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: labctl prepare|fetch-kernel|test|sh|boottime [flags]")
	os.Exit(2)
}

func prepare(ctx context.Context, full bool) error {
	if !full {
		root, err := lab.RepoRoot()
		if err != nil {
			return err
		}
		cache := os.Getenv("GALLIUM_LAB_CACHE")
		if cache == "" {
			cache = root + "/test/lab/cache"
		}
		k, err := lab.FetchKernel(ctx, cache)
		if err != nil {
			return err
		}
		fmt.Printf("kernel %s %s (%s) in %s\n", k.Package, k.Version, k.Release, k.Dir)
		return nil
	}
	a, err := lab.Prepare(ctx)
	if err != nil {
		return err
	}
	k := a.Kernel
	fmt.Printf("kernel    %s %s (%s), image %s\n", k.Package, k.Version, k.Release, k.Image)
	var mods []string
	for _, m := range k.Modules {
		mods = append(mods, m.Name)
	}
	fmt.Printf("modules   %s (built in: %s)\n", strings.Join(mods, " "), strings.Join(k.Builtin, " "))
	fmt.Printf("initramfs %s (%.1f MB)\n", a.Initramfs.Path, float64(a.Initramfs.Size)/1e6)
	return nil
}

func nicsFlag(spec, prefix string) []lab.NIC {
	var nics []lab.NIC
	for i, s := range strings.Split(spec, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		nics = append(nics, lab.NIC{ID: fmt.Sprintf("%snic%d", prefix, i), Segment: s})
	}
	return nics
}

func shell(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("sh", flag.ExitOnError)
	name := fs.String("name", "lab", "VM name")
	nics := fs.String("nics", "lan0,lan0,lan1,lan1", "segments of the NICs eth0.. (comma-separated)")
	share := fs.String("share", "", "host folder to mount at /host")
	fs.Parse(args)
	vm, err := lab.Boot(ctx, lab.Config{Name: *name, NICs: nicsFlag(*nics, ""), Share: *share})
	if err != nil {
		return 1, err
	}
	defer vm.Close()
	fmt.Fprintf(os.Stderr, "labctl: %s booted in %s\n", vm.Name, vm.BootTime.Round(time.Millisecond))
	run := func(c string) int {
		code, err := vm.Exec(ctx, c, lab.ExecOptions{Out: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return code
	}
	if fs.NArg() > 0 {
		return run(strings.Join(fs.Args(), " ")), nil
	}
	sc := bufio.NewScanner(os.Stdin)
	code := 0
	fmt.Fprint(os.Stderr, "lab# ")
	for sc.Scan() {
		code = run(sc.Text())
		fmt.Fprint(os.Stderr, "lab# ")
	}
	return code, nil
}

func bootTime(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boottime", flag.ExitOnError)
	n := fs.Int("n", 3, "boots")
	fs.Parse(args)
	if _, err := lab.Prepare(ctx); err != nil {
		return err
	}
	var total time.Duration
	for i := 0; i < *n; i++ {
		start := time.Now()
		vm, err := lab.Boot(ctx, lab.Config{Name: "boottime", NICs: nicsFlag("lan0,lan0", "")})
		if err != nil {
			return err
		}
		ready := time.Since(start)
		out, _, _ := vm.Run(ctx, "cut -d' ' -f1 /proc/uptime")
		vm.Close()
		total += ready
		fmt.Printf("boot %d: agent answered after %s, ready (NICs named) after %s, guest uptime %ss\n", i+1, vm.BootTime.Round(time.Millisecond), ready.Round(time.Millisecond), strings.TrimSpace(out))
	}
	fmt.Printf("mean ready time: %s\n", (total / time.Duration(*n)).Round(time.Millisecond))
	return nil
}
