package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
)

// specFlag is -f/--spec, which every command that reads the spec takes after
// its own name.
func specFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "spec",
		Aliases: []string{"f"},
		Value:   DefaultSpecPath,
		EnvVars: []string{"GALLIUM_NET_SPEC"},
		Usage:   "cluster spec `FILE` (- reads stdin)",
	}
}

// hypervisorFlag is --hypervisor: which hypervisor of the spec this is.
func hypervisorFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "hypervisor",
		Usage: "hypervisor `NAME` from the spec (default: the one whose name is this host's name or whose management IP is configured here)",
	}
}

// readSpec loads the spec -f names, without validating it.
func readSpec(c *cli.Context) (*model.Spec, error) {
	path := specPath(c)
	s, err := specfile.Load(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no cluster spec at %s: pass -f FILE, or write one there (see %s)", path, specfile.ExampleSpec)
		}
		return nil, err
	}
	return s, nil
}

// specPath is -f/--spec when given, else the config's spec:, else the
// default.
func specPath(c *cli.Context) string {
	if !c.IsSet("spec") {
		if cfg, err := hostConfigOf(c); err == nil && cfg.Spec != "" {
			return cfg.Spec
		}
	}
	return c.String("spec")
}

// loadSpec loads and validates the spec: on a member of a cluster store
// that holds one, the stored spec, unless -f names a file; else the file
// (-f, the config's, the default). Warnings go to stderr; an invalid spec
// is an error that lists what to fix.
func loadSpec(c *cli.Context) (*model.Spec, error) {
	s, err := specFromStoreOrFile(c)
	if err != nil {
		return nil, err
	}
	findings := model.Validate(s)
	warnSummary(c, findings)
	if err := findings.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w\nrun 'gallium-net validate -f %s' for details", specPath(c), err, specPath(c))
	}
	return s, nil
}

// warnSummary prints one line for the spec's warnings: every command that
// reads the spec repeated each in full (20 three-line warnings on 'list
// profiles' for 5 hypervisors without speeds); validate shows them.
func warnSummary(c *cli.Context, findings model.Findings) {
	warns := findings.Warnings()
	if len(warns) == 0 {
		return
	}
	var paths []string
	seen := map[string]bool{}
	for _, f := range warns {
		if !seen[f.Path] {
			seen[f.Path] = true
			paths = append(paths, f.Path)
		}
	}
	about := strings.Join(paths[:min(len(paths), 3)], ", ")
	if len(paths) > 3 {
		about += fmt.Sprintf(" and %d more", len(paths)-3)
	}
	fmt.Fprintf(c.App.ErrWriter, "warning: %s: %d warning(s) (%s); 'gallium-net validate -f %s' shows them\n", specPath(c), len(warns), about, specPath(c))
}

// loadSpecHere loads and validates the spec and says which of its
// hypervisors this host is: what every command that acts on this host needs.
func loadSpecHere(c *cli.Context) (*model.Spec, string, error) {
	s, err := loadSpec(c)
	if err != nil {
		return nil, "", err
	}
	hv, err := thisHypervisor(c, s)
	if err != nil {
		return nil, "", err
	}
	return s, hv, nil
}

// thisHypervisor says which hypervisor of the spec this host is: --hypervisor
// when given, else hypervisor: in this host's config, else the one named like
// this host, else the one whose
// management IP is configured on a local interface.
func thisHypervisor(c *cli.Context, s *model.Spec) (string, error) {
	names := s.HypervisorNames()
	if hv := c.String("hypervisor"); hv != "" {
		if s.Hypervisor(hv) == nil {
			return "", fmt.Errorf("--hypervisor %s: not in the cluster spec; use one of: %s", hv, strings.Join(names, ", "))
		}
		return hv, nil
	}
	cfg, err := hostConfigOf(c)
	if err != nil {
		return "", err
	}
	if cfg.Hypervisor != "" {
		if s.Hypervisor(cfg.Hypervisor) == nil {
			return "", fmt.Errorf("hypervisor %q (set in %s) is not in the cluster spec; use one of: %s", cfg.Hypervisor, configPath(c), strings.Join(names, ", "))
		}
		return cfg.Hypervisor, nil
	}
	host, _ := os.Hostname()
	if hv := hypervisorNamed(s, host); hv != "" {
		return hv, nil
	}
	addrs, _ := net.InterfaceAddrs()
	return matchHypervisor(s, host, addrs, names)
}

// hypervisorNamed is the hypervisor of the spec that host (this host's
// name) names, or "": the full name first, then its first label, both
// without regard to case. validate accepts (and suggests) names like
// hv1.example.com, and DNS names do not depend on case; validate refuses two
// hypervisors whose names differ only in case, so at most one matches.
func hypervisorNamed(s *model.Spec, host string) string {
	short, _, _ := strings.Cut(host, ".")
	for _, name := range []string{host, short} {
		if name == "" {
			continue
		}
		for _, h := range s.Hypervisors {
			if strings.EqualFold(h.Name, name) {
				return h.Name
			}
		}
	}
	return ""
}

func matchHypervisor(s *model.Spec, host string, addrs []net.Addr, names []string) (string, error) {
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		for _, h := range s.Hypervisors {
			ip, _, err := net.ParseCIDR(h.ManagementIP)
			if err == nil && ip.Equal(ipn.IP) {
				return h.Name, nil
			}
		}
	}
	return "", fmt.Errorf("cannot tell which hypervisor this host is: its name %q is none of %s and none of their management IPs is configured here; pass --hypervisor NAME",
		host, strings.Join(names, ", "))
}

// specFromStoreOrFile is the one source rule: once the store holds a spec,
// commands take it from there. -f FILE (or $GALLIUM_NET_SPEC) still wins,
// and the command says that the store holds another source. A store that
// cannot be reached at once (a host booting before its network, a member
// cut off) falls back to the file, which the agent keeps at the revision
// this host applied, and says so.
func specFromStoreOrFile(c *cli.Context) (*model.Spec, error) {
	h := homeOf(c)
	if complete, _, err := h.Exists(); err != nil || !complete {
		return readSpec(c)
	}
	rec, stored, err := quickStoredSpec(c, h)
	explicit := c.IsSet("spec")
	switch {
	case explicit && err == nil:
		fmt.Fprintf(c.App.ErrWriter, "note: using %s (-f), not the store's spec revision %d that the agents apply\n", specPath(c), rec.Version)
		return readSpec(c)
	case explicit:
		return readSpec(c)
	case err == nil:
		return stored, nil
	case errors.Is(err, store.ErrNotFound):
		return readSpec(c)
	default:
		fmt.Fprintf(c.App.ErrWriter, "note: the cluster store is out of reach (%v): using %s\n", err, specPath(c))
		return readSpec(c)
	}
}

// quickStoredSpec reads the stored spec within a couple of seconds, with
// no retries: the file is the fallback.
func quickStoredSpec(c *cli.Context, h clusterhome.Home) (*store.SpecRecord, *model.Spec, error) {
	m, err := h.Load()
	if err != nil {
		return nil, nil, err
	}
	cfg := m.Client(h)
	cfg.DialTimeout, cfg.OpTimeout = 2*time.Second, 2*time.Second
	b, err := etcdstore.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	st := store.New(b)
	st.SetReadRetry(0)
	return storedSpec(c.Context, st)
}
