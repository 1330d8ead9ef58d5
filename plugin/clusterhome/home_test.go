package clusterhome

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/storemember"
)

func testFiles(t *testing.T) Files {
	t.Helper()
	ca, err := clusterpki.NewCA("lab", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := clusterpki.NewToken(ca)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.KeyPEM()
	return Files{CA: ca.CertPEM(), CAKey: key, Cert: []byte("cert"), Key: []byte("key"), Token: tok}
}

func testMember() Member {
	return Member{Cluster: "lab", Name: "hv2", Address: "192.168.1.102", DataDir: "/var/lib/gallium-net/store",
		State: storemember.StateExisting, InitialCluster: map[string]string{
			"hv1": "https://192.168.1.101:2380", "hv2": "https://192.168.1.102:2380", "hv3": "https://192.168.1.103:2380"}}
}

func TestSaveLoad(t *testing.T) {
	h := New(filepath.Join(t.TempDir(), "cluster"))
	if c, p, err := h.Exists(); c || p || err != nil {
		t.Fatalf("empty home: complete %v partial %v %v", c, p, err)
	}
	if _, err := h.Load(); err == nil || !strings.Contains(err.Error(), "cluster init") {
		t.Fatalf("Load of an empty home: %v, want the way in", err)
	}
	m, f := testMember(), testFiles(t)
	if err := h.Save(m, f); err != nil {
		t.Fatal(err)
	}
	got, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, *got); diff != "" {
		t.Errorf("member.yaml round trip (-want +got):\n%s", diff)
	}
	tok, err := h.Token()
	if err != nil || tok != f.Token {
		t.Errorf("token read back %v, %v", tok, err)
	}
	for name, mode := range map[string]os.FileMode{CAKeyFile: 0o600, KeyFile: 0o600, TokenFile: 0o600, CAFile: 0o644, CertFile: 0o644, MemberFile: 0o644} {
		fi, err := os.Stat(h.Path(name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", name, fi.Mode(), err, mode)
		}
	}
	if err := h.Save(m, f); err == nil || !strings.Contains(err.Error(), "already holds a membership") {
		t.Errorf("second Save: %v", err)
	}
}

// Keys written but no member.yaml: an interrupted init or join.
func TestPartialHome(t *testing.T) {
	h := New(t.TempDir())
	if err := os.WriteFile(h.Path(CAFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, p, err := h.Exists(); c || !p || err != nil {
		t.Fatalf("complete %v partial %v %v; want partial", c, p, err)
	}
}

func TestLoadRefusesBadMember(t *testing.T) {
	h := New(t.TempDir())
	for _, tc := range []struct{ yaml, want string }{
		{"cluster: lab\nname: hv1\naddress: 192.168.1.101\ndataDir: /d\nstate: new\ninitialCluster: {hv1: x}\ntypo: 1\n", "typo"},
		{"cluster: lab\nname: hv1\naddress: nope\ndataDir: /d\nstate: new\ninitialCluster: {hv1: x}\n", "address"},
		{"cluster: lab\nname: hv1\naddress: 192.168.1.101\ndataDir: /d\nstate: maybe\ninitialCluster: {hv1: x}\n", "state"},
		{"cluster: lab\nname: hv1\naddress: 192.168.1.101\ndataDir: /d\nstate: new\n", "initialCluster"},
	} {
		if err := os.WriteFile(h.Path(MemberFile), []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error about %s", tc.yaml, err, tc.want)
		}
	}
}

// The client tries this hypervisor's own member first (127.0.0.1), then
// the others: from the initial cluster until the running member has
// written the endpoints file, from the file after.
func TestClientEndpoints(t *testing.T) {
	h := New(t.TempDir())
	m := testMember()
	got := m.Client(h)
	want := []string{"https://127.0.0.1:2379", "https://192.168.1.101:2379", "https://192.168.1.103:2379"}
	if diff := cmp.Diff(want, got.Endpoints); diff != "" {
		t.Errorf("from the initial cluster (-want +got):\n%s", diff)
	}
	if got.CertFile != h.Path(CertFile) || got.CAFile != h.Path(CAFile) || got.KeyFile != h.Path(KeyFile) {
		t.Errorf("TLS files %+v", got)
	}
	eps := []string{"https://192.168.1.104:2379", "https://192.168.1.102:2379", "https://192.168.1.101:2379"}
	if changed, err := h.SaveEndpoints(eps); !changed || err != nil {
		t.Fatalf("SaveEndpoints: %v %v", changed, err)
	}
	if changed, err := h.SaveEndpoints(eps); changed || err != nil {
		t.Errorf("SaveEndpoints of the same list: changed %v %v", changed, err)
	}
	want = []string{"https://127.0.0.1:2379", "https://192.168.1.101:2379", "https://192.168.1.104:2379"}
	if diff := cmp.Diff(want, m.Client(h).Endpoints); diff != "" {
		t.Errorf("from the endpoints file (-want +got):\n%s", diff)
	}
	// Ports other than etcd's defaults, and a member on loopback (tests).
	m.ClientPort, m.Address = 12379, "127.0.0.22"
	os.Remove(h.Path(EndpointsFile))
	if got := m.Client(h).Endpoints[0]; got != "https://127.0.0.22:12379" {
		t.Errorf("own endpoint on loopback: %s", got)
	}
	if m.PeerURL() != "https://127.0.0.22:2380" || m.JoinURL() != "https://127.0.0.22:2381" {
		t.Errorf("URLs %s %s", m.PeerURL(), m.JoinURL())
	}
}
