package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/atomicfile"
	"github.com/gallium/gallium-net/plugin/vip"
)

// DefaultKeepalivedConf is where `vip apply` installs the rendered file.
const DefaultKeepalivedConf = "/etc/keepalived/keepalived.conf"

// vipCommand is `vip config|apply|status`: the floating cluster IP.
func vipCommand() *cli.Command {
	return &cli.Command{
		Name:  "vip",
		Usage: "the cluster's floating virtual IP (keepalived/VRRP)",
		Subcommands: []*cli.Command{
			{
				Name:  "config",
				Usage: "print the keepalived.conf of this hypervisor (or --hypervisor NAME, or --all)",
				Description: `Unicast VRRP between the management IPs on the infrastructure bridge; the
virtual router id is derived from the cluster name; priorities follow the
hypervisor order; the VIP is given up when the infrastructure bond has no
live adapter.

Example:
   gallium-net vip config -f cluster.yaml --hypervisor hv2`,
				Flags: []cli.Flag{specFlag(), hypervisorFlag(),
					&cli.BoolFlag{Name: "all", Usage: "print every hypervisor's file, each after a '### NAME' line"}},
				Action: vipConfig,
			},
			{
				Name:  "apply",
				Usage: "install this hypervisor's keepalived.conf and reload keepalived",
				Description: `Refuses to replace a keepalived.conf that gallium-net did not write unless
--force (the old file is then kept as FILE.gallium-net-backup). The new
file is checked with 'keepalived -t' first when keepalived is installed.

Example:
   gallium-net vip apply -f /etc/gallium-net/cluster.yaml`,
				Flags: []cli.Flag{specFlag(), hypervisorFlag(),
					&cli.StringFlag{Name: "file", Value: DefaultKeepalivedConf, Usage: "keepalived config `FILE` to write"},
					&cli.BoolFlag{Name: "force", Usage: "replace a keepalived.conf that gallium-net did not write"},
					&cli.BoolFlag{Name: "no-reload", Usage: "install only; do not signal keepalived"},
				},
				Action: vipApply,
			},
			{
				Name:  "status",
				Usage: "say whether this hypervisor holds the VIP, and who answers for it otherwise",
				Description: `Looks for the VIP on this host's interfaces; otherwise asks by ARP on the
infrastructure bridge which MAC answers for it.

Example:
   gallium-net vip status -o json`,
				Flags:  []cli.Flag{specFlag(), hypervisorFlag(), outputFlag()},
				Action: vipStatus,
			},
		},
	}
}

func vipConfig(c *cli.Context) error {
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	if c.Bool("all") {
		for _, h := range s.Hypervisors {
			out, err := vip.Render(s, h.Name, vip.Options{})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "### %s\n%s", h.Name, out)
		}
		return nil
	}
	hv, err := thisHypervisor(c, s)
	if err != nil {
		return err
	}
	out, err := vip.Render(s, hv, vip.Options{})
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(out)
	return err
}

func vipApply(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	conf, err := vip.Render(s, hv, vip.Options{})
	if err != nil {
		return err
	}
	path := c.String("file")
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case bytes.Equal(old, conf):
		fmt.Fprintf(c.App.Writer, "%s is up to date for %s\n", path, hv)
		return nil
	case !bytes.HasPrefix(old, []byte(vip.Marker)):
		if !c.Bool("force") {
			return fmt.Errorf("%s was not written by gallium-net; move it away (or merge it into the cluster's setup) and run again, or pass --force to replace it (a backup is kept)", path)
		}
		backup := path + ".gallium-net-backup"
		if err := atomicfile.Write(backup, old, 0o600); err != nil {
			return fmt.Errorf("back up %s: %w", path, err)
		}
		fmt.Fprintf(c.App.ErrWriter, "kept the previous %s as %s\n", path, backup)
	}
	if err := checkKeepalivedConf(conf); err != nil {
		return err
	}
	if err := atomicfile.Write(path, conf, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "installed %s for %s (virtual router id %d, VIP %s)\n", path, hv, vip.RouterID(s.Cluster.Name), s.Cluster.VIP)
	if c.Bool("no-reload") {
		return nil
	}
	return reloadKeepalived(c)
}

// checkKeepalivedConf runs `keepalived -t` on the new file when keepalived
// is installed. Missing interfaces are only warnings: apply may run before
// the host's network is up.
func checkKeepalivedConf(conf []byte) error {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		return nil
	}
	f, err := os.CreateTemp("", "gallium-keepalived-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(conf); err != nil {
		f.Close()
		return err
	}
	f.Close()
	out, err := exec.Command(bin, "-t", "-f", f.Name()).CombinedOutput()
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	// keepalived -t exits 5 when a named interface does not exist yet; the
	// host networking (gallium-net host apply) creates it.
	if errors.As(err, &ee) && ee.ExitCode() == 5 && strings.Contains(string(out), "interface") {
		return nil
	}
	return fmt.Errorf("keepalived rejects the rendered config (a gallium-net bug; please report it): %v\n%s", err, out)
}

// reloadKeepalived makes a running keepalived re-read its config (SIGHUP);
// under systemd it reloads or starts the unit.
func reloadKeepalived(c *cli.Context) error {
	if data, err := os.ReadFile("/run/keepalived.pid"); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			if err := syscall.Kill(pid, syscall.SIGHUP); err == nil {
				fmt.Fprintf(c.App.Writer, "keepalived (pid %d) reloaded\n", pid)
				return nil
			}
		}
	}
	if _, err := exec.LookPath("systemctl"); err == nil {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			out, err := exec.Command("systemctl", "reload-or-restart", "keepalived").CombinedOutput()
			if err != nil {
				return fmt.Errorf("systemctl reload-or-restart keepalived: %v: %s", err, out)
			}
			fmt.Fprintln(c.App.Writer, "keepalived reloaded (systemd)")
			return nil
		}
	}
	fmt.Fprintln(c.App.ErrWriter, "keepalived is not running: start it (systemctl enable --now keepalived) to float the VIP")
	return nil
}

// vipState is what `vip status` reports.
type vipState struct {
	Hypervisor string `json:"hypervisor" yaml:"hypervisor"`
	VIP        string `json:"vip" yaml:"vip"`
	HeldHere   bool   `json:"heldHere" yaml:"heldHere"`
	Interface  string `json:"interface,omitempty" yaml:"interface,omitempty"`
	// AnsweredBy is the MAC that answered an ARP for the VIP when it is not
	// held here, and Holder the hypervisor that MAC belongs to when known.
	AnsweredBy string `json:"answeredBy,omitempty" yaml:"answeredBy,omitempty"`
	Keepalived string `json:"keepalived" yaml:"keepalived"`
}

var arpReplyRE = regexp.MustCompile(`(?i)reply from [0-9.]+ \[([0-9a-f:]+)\]`)

func vipStatus(c *cli.Context) error {
	s, hv, err := loadSpecHere(c)
	if err != nil {
		return err
	}
	cfg, err := vip.Build(s, hv, vip.Options{})
	if err != nil {
		return err
	}
	st := vipState{Hypervisor: hv, VIP: s.Cluster.VIP, Keepalived: keepalivedRunning()}
	want := net.ParseIP(s.Cluster.VIP)
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(want) {
				st.HeldHere, st.Interface = true, ifc.Name
			}
		}
	}
	if !st.HeldHere {
		if _, err := exec.LookPath("arping"); err == nil {
			out, _ := exec.Command("arping", "-c", "1", "-w", "2", "-I", cfg.Interface, s.Cluster.VIP).CombinedOutput()
			if m := arpReplyRE.FindStringSubmatch(string(out)); m != nil {
				st.AnsweredBy = strings.ToLower(m[1])
			}
		}
	}
	return printOut(c, st, func(w *tabwriter.Writer) {
		switch {
		case st.HeldHere:
			fmt.Fprintf(w, "%s holds the VIP %s (on %s)\n", hv, st.VIP, st.Interface)
		case st.AnsweredBy != "":
			fmt.Fprintf(w, "another hypervisor holds the VIP %s: it answers from MAC %s\n", st.VIP, st.AnsweredBy)
		default:
			fmt.Fprintf(w, "nobody answers for the VIP %s: check keepalived on the hypervisors ('gallium-net vip apply', 'systemctl status keepalived')\n", st.VIP)
		}
		fmt.Fprintf(w, "keepalived here: %s\n", st.Keepalived)
	})
}

// keepalivedRunning says whether keepalived runs here, from its pid file.
func keepalivedRunning() string {
	data, err := os.ReadFile("/run/keepalived.pid")
	if err != nil {
		return "not running"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return "not running (stale pid file)"
	}
	st, _ := os.Stat("/run/keepalived.pid")
	return fmt.Sprintf("running (pid %d, since %s)", pid, st.ModTime().Format(time.RFC3339))
}
