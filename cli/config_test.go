package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadHostConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name     string
		path     string
		explicit bool
		wantErr  string
		check    func(c *hostConfig) bool
	}{
		{"missing default", filepath.Join(dir, "nope.yaml"), false, "", func(c *hostConfig) bool { return c.Store.Backend == "" }},
		{"missing explicit", filepath.Join(dir, "nope.yaml"), true, "no such file", nil},
		{"empty", write("empty.yaml", ""), true, "", func(c *hostConfig) bool { return c.Store.Backend == "" }},
		{"packaged default (all commented)", "../packaging/etc/config.yaml", true, "", func(c *hostConfig) bool { return c.Store.Backend == "" }},
		{"etcd", write("etcd.yaml", "store:\n  backend: etcd\n  etcd:\n    endpoints: [https://10.0.0.1:2379]\n    caFile: /ca.pem\nhypervisor: hv2\n"), true, "",
			func(c *hostConfig) bool {
				return c.Store.Backend == "etcd" && c.Store.Etcd.Endpoints[0] == "https://10.0.0.1:2379" && c.Store.Etcd.CAFile == "/ca.pem" && c.Hypervisor == "hv2"
			}},
		{"typo", write("typo.yaml", "store:\n  backnd: etcd\n"), true, "backnd", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := readHostConfig(c.path, c.explicit)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(cfg) {
				t.Errorf("config = %+v", cfg)
			}
		})
	}
}

func TestStoreBackendFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, nil, 0o600)
	_, errOut, code := run(t, "spec", "history", "--store", "zookeeper", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "use bolt or etcd") {
		t.Errorf("unknown backend: exit %d, %s", code, errOut)
	}
}
