// Command gallium-net is the operator's tool for a Gallium cluster's network:
// it validates the cluster spec, plans and applies host networking, renders
// and defines libvirt networks and VM NICs, and manages the cluster state.
// It is virsh-adjacent: `--connect URI` works as in virsh.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/lsm"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// DefaultSpecPath is where every command looks for the cluster spec unless
// -f/--spec says otherwise.
const DefaultSpecPath = "/etc/gallium-net/cluster.yaml"

func main() {
	// hook status probes the hook's exec under libvirt's AppArmor profile
	// by running this program in two more stages (plugin/lsm).
	lsm.RunProbeStage(os.Args)
	app := newApp()
	if len(os.Args) > 1 && os.Args[1] == completeCommand {
		// Before parsing: the words are a command line being typed.
		for _, w := range complete(app, os.Args[2:]) {
			fmt.Println(w)
		}
		return
	}
	if err := app.Run(interspersedArgs(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "gallium-net:", err)
		os.Exit(exitCode(err))
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "gallium-net",
		Usage:   "networking for a Gallium hypervisor cluster: bonds, VLAN bridges, libvirt networks and VM NICs",
		Version: version,
		Description: `gallium-net turns one cluster spec (YAML) into host networking (bonds,
VLAN-filtering bridges, the management IP) and libvirt objects (networks,
VM <interface> devices), and keeps every VM NIC in sync through its libvirt hook.

Every command that reads the spec takes -f/--spec FILE after its own name
(default ` + DefaultSpecPath + `). Start with:

   gallium-net validate -f ` + specfile.ExampleSpec + `
   gallium-net diagram -f ` + specfile.ExampleSpec + ` --hypervisor hv1`,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages to stderr"},
		},
		Before: func(c *cli.Context) error {
			level := slog.LevelInfo
			if c.Bool("debug") {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands: commands(),
	}
	guardUsage(app)
	return app
}

// commands lists every top-level command, in the order --help shows them.
// Each area adds its command here with one line.
func commands() []*cli.Command {
	return []*cli.Command{
		validateCommand(),
		xmlCommand(),
		diagramCommand(),
		listCommand(),
		networkCommand(),
		nicCommand(),
		vmCommand(),
		hookCommand(),
		hostCommand(),
		clusterCommand(),
		agentCommand(),
		specCommand(),
		stateCommand(),
		macCommand(),
		vipCommand(),
		completionCommand(),
		manCommand(),
	}
}

// exitError carries a specific exit code (for example 1 for an invalid spec
// from validate, where the output already said why).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isMissingRequiredFlag(err) {
		return exitUsage
	}
	var ce cli.ExitCoder
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return exitFailure
}
