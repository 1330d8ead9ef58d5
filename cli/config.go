package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/store"
	"github.com/gallium/gallium-net/plugin/store/boltstore"
	"github.com/gallium/gallium-net/plugin/store/etcdstore"
)

// DefaultConfigPath holds this hypervisor's own settings (not the cluster
// spec): which store backend, etcd endpoints and TLS files, snapshot path.
const DefaultConfigPath = "/etc/gallium-net/config.yaml"

// hostConfig is /etc/gallium-net/config.yaml (packaging/etc/config.yaml
// documents it for operators). Flags win over it.
type hostConfig struct {
	Spec       string `yaml:"spec,omitempty"`
	Hypervisor string `yaml:"hypervisor,omitempty"`
	// Snapshot is the host snapshot the hook reads.
	Snapshot string      `yaml:"snapshot,omitempty"`
	Store    storeConfig `yaml:"store,omitempty"`
	// Cluster is this hypervisor's membership of the cluster store.
	Cluster clusterConfig `yaml:"cluster,omitempty"`
}

type clusterConfig struct {
	// Dir is the membership directory (plugin/clusterhome).
	Dir string `yaml:"dir,omitempty"`
}

type storeConfig struct {
	// Backend is bolt (default) or etcd.
	Backend string     `yaml:"backend,omitempty"`
	Path    string     `yaml:"path,omitempty"`
	Etcd    etcdConfig `yaml:"etcd,omitempty"`
}

type etcdConfig struct {
	Endpoints   []string `yaml:"endpoints,omitempty"`
	Prefix      string   `yaml:"prefix,omitempty"`
	CAFile      string   `yaml:"caFile,omitempty"`
	CertFile    string   `yaml:"certFile,omitempty"`
	KeyFile     string   `yaml:"keyFile,omitempty"`
	DialTimeout string   `yaml:"dialTimeout,omitempty"`
}

// readHostConfig reads the config file. A missing file at the default path
// means "all defaults"; a missing file named by --config is an error.
func readHostConfig(path string, explicit bool) (*hostConfig, error) {
	var cfg hostConfig
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return &cfg, nil
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)                                               // a typo must not silently fall back to a default
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return nil, fmt.Errorf("config %s: %w (see the comments in the packaged config.yaml)", path, err)
	}
	return &cfg, nil
}

// configFlag is --config: this host's settings file.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Value: DefaultConfigPath, EnvVars: []string{"GALLIUM_NET_CONFIG"}, Usage: "this host's gallium-net settings `FILE`"}
}

// storeFlags are the flags of every command that reads or writes the
// cluster state.
func storeFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "store", Usage: "state backend: bolt (a local file) or etcd (default: store.backend in the config, else bolt)"},
		&cli.StringFlag{Name: "state-file", Usage: "bolt state `FILE` (default: store.path in the config, else " + boltstore.DefaultPath + ")"},
		&cli.StringSliceFlag{Name: "etcd-endpoints", Usage: "etcd `URL`s, comma-separated (default: store.etcd.endpoints in the config)"},
		&cli.StringFlag{Name: "etcd-ca", Usage: "CA `FILE` that signs the etcd servers' certificates"},
		&cli.StringFlag{Name: "etcd-cert", Usage: "client certificate `FILE` for etcd"},
		&cli.StringFlag{Name: "etcd-key", Usage: "client key `FILE` for etcd"},
		&cli.StringFlag{Name: "etcd-prefix", Usage: "etcd key `PREFIX` of gallium-net's state (default " + etcdstore.DefaultPrefix + ")"},
	}
}

// hostConfigOf reads the config file --config names.
func hostConfigOf(c *cli.Context) (*hostConfig, error) {
	return readHostConfig(configPath(c), c.IsSet("config"))
}

// configPath is --config, else $GALLIUM_NET_CONFIG, else the default: a
// command without a --config flag still honours this host's settings.
func configPath(c *cli.Context) string {
	return firstNonEmpty(c.String("config"), os.Getenv("GALLIUM_NET_CONFIG"), DefaultConfigPath)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// openStore opens the cluster state the flags and the config file name.
func openStore(c *cli.Context) (*store.Store, error) {
	cfg, err := hostConfigOf(c)
	if err != nil {
		return nil, err
	}
	backend := storeBackend(c, cfg)
	switch backend {
	case "bolt", "bbolt", "file":
		path := firstNonEmpty(c.String("state-file"), cfg.Store.Path, boltstore.DefaultPath)
		b, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			return nil, err
		}
		return store.New(b), nil
	case "etcd":
		e := cfg.Store.Etcd
		if len(e.Endpoints) == 0 && len(c.StringSlice("etcd-endpoints")) == 0 {
			// A member of the cluster store: its own client settings.
			if m, err := homeOf(c).Load(); err == nil {
				mc := m.Client(homeOf(c))
				e.Endpoints = mc.Endpoints
				e.CAFile = firstNonEmpty(e.CAFile, mc.CAFile)
				e.CertFile = firstNonEmpty(e.CertFile, mc.CertFile)
				e.KeyFile = firstNonEmpty(e.KeyFile, mc.KeyFile)
			}
		}
		ecfg := etcdstore.Config{
			Endpoints: e.Endpoints,
			Prefix:    firstNonEmpty(c.String("etcd-prefix"), e.Prefix),
			CAFile:    firstNonEmpty(c.String("etcd-ca"), e.CAFile),
			CertFile:  firstNonEmpty(c.String("etcd-cert"), e.CertFile),
			KeyFile:   firstNonEmpty(c.String("etcd-key"), e.KeyFile),
		}
		if eps := c.StringSlice("etcd-endpoints"); len(eps) > 0 {
			ecfg.Endpoints = nil
			for _, ep := range eps {
				ecfg.Endpoints = append(ecfg.Endpoints, strings.Split(ep, ",")...)
			}
		}
		if e.DialTimeout != "" {
			d, err := time.ParseDuration(e.DialTimeout)
			if err != nil {
				return nil, fmt.Errorf("config %s: store.etcd.dialTimeout %q: want a duration such as 5s", c.String("config"), e.DialTimeout)
			}
			ecfg.DialTimeout = d
		}
		b, err := etcdstore.Open(ecfg)
		if err != nil {
			return nil, err
		}
		return store.New(b), nil
	default:
		return nil, fmt.Errorf("store backend %q: use bolt or etcd (--store, or store.backend in %s)", backend, c.String("config"))
	}
}

// storeBackend is --store, else the config's store.backend, else etcd on
// a member of the cluster store (cluster init or join made it one), else
// the local bolt file.
func storeBackend(c *cli.Context, cfg *hostConfig) string {
	if b := firstNonEmpty(c.String("store"), cfg.Store.Backend); b != "" {
		return b
	}
	if complete, _, err := homeOf(c).Exists(); err == nil && complete {
		return "etcd"
	}
	return "bolt"
}

// snapshotPath is --snapshot when set, else the config's, else the default:
// the file the hook reads.
func snapshotPath(c *cli.Context) string {
	if c.IsSet("snapshot") {
		return c.String("snapshot")
	}
	if cfg, err := hostConfigOf(c); err == nil && cfg.Snapshot != "" {
		return cfg.Snapshot
	}
	return firstNonEmpty(c.String("snapshot"), snapshot.DefaultPath)
}

// storedSpec reads the cluster spec the store holds, parsed.
func storedSpec(ctx context.Context, st *store.Store) (*store.SpecRecord, *model.Spec, error) {
	rec, err := st.Spec(ctx)
	if err != nil {
		return nil, nil, err
	}
	spec, err := rec.Spec()
	if err != nil {
		return nil, nil, err
	}
	return rec, spec, nil
}

// syncHostSnapshot rewrites this hypervisor's host snapshot after a change
// of the cluster state, so the hook sees it. A host that is not (yet) a
// hypervisor of the stored spec is told so and skipped: pushing a spec from
// an admin machine is fine.
func syncHostSnapshot(c *cli.Context, st *store.Store) error {
	_, spec, err := storedSpec(c.Context, st)
	if err != nil {
		return err
	}
	hv, err := thisHypervisor(c, spec)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "note: host snapshot not written: %v\n", err)
		return nil
	}
	path := snapshotPath(c)
	changed, err := st.SyncSnapshot(c.Context, hv, path)
	if err != nil {
		return fmt.Errorf("update the host snapshot for the hook: %w", err)
	}
	if changed {
		fmt.Fprintf(c.App.ErrWriter, "host snapshot %s updated for %s\n", path, hv)
	}
	return nil
}

// refreshSnapshotAfter is syncHostSnapshot after a store write that has
// landed (what names it): a refresh that fails then is a warning, not a
// failure, since exiting non-zero would tell a script that the write did
// not happen (and a retry only finds it done). The hook never refuses a
// domain because of a stale NIC list, and the next refresh catches up.
func refreshSnapshotAfter(c *cli.Context, st *store.Store, what string) {
	if err := syncHostSnapshot(c, st); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s is stored, but the hook's host snapshot %s is stale: %v; run 'gallium-net state sync' on this hypervisor\n", what, snapshotPath(c), err)
	}
}
