package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
)

// An operator who points a command at the store without the cluster's
// client certificate (or with the wrong CA) is told so at once, not after
// the store's retries as "context deadline exceeded".
func TestStoreTLSMistakesAreNamed(t *testing.T) {
	files := etcdtest.NewTLSFiles(t, t.TempDir())
	other := etcdtest.NewTLSFiles(t, t.TempDir())
	c := etcdtest.StartTLS(t, files)
	// A config of its own: no member settings from this host's.
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("store: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"no client certificate", []string{"--etcd-ca", files.CA}, "refuses this client's certificate"},
		{"another CA", []string{"--etcd-ca", other.CA, "--etcd-cert", files.ClientCert, "--etcd-key", files.ClientKey}, "not signed by the CA this client trusts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"spec", "history", "--config", cfg, "--store", "etcd", "--etcd-endpoints", c.Endpoints[0]}, tc.flags...)
			t0 := time.Now()
			_, errOut, code := run(t, args...)
			took := time.Since(t0)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant an error saying %q", code, errOut, tc.want)
			}
			// Not retried: the store's read retry would say how many
			// attempts it made, and would tell the operator to check
			// that the members are up, which is not the fault.
			if strings.Contains(errOut, "attempts over") {
				t.Errorf("the configuration error was retried: %s", errOut)
			}
			t.Logf("%s: %s", took.Round(100*time.Millisecond), strings.TrimSpace(errOut))
		})
	}
}
