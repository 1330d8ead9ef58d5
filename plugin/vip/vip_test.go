package vip

import (
	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
	"github.com/gallium/gallium-net/test/testenv"

	"strings"
	"testing"
	"time"
)

func loadExample(t *testing.T) *model.Spec {
	t.Helper()
	s, err := specfile.Load("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGolden pins every hypervisor's rendered file of the example cluster.
func TestGolden(t *testing.T) {
	s := loadExample(t)
	for _, h := range s.Hypervisors {
		t.Run(h.Name, func(t *testing.T) {
			got, err := Render(s, h.Name, Options{SpecRevision: 3})
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, "keepalived-"+h.Name+".conf", string(got))
		})
	}
}

func TestBuild(t *testing.T) {
	s := loadExample(t)
	c1, _ := Build(s, "hv1", Options{})
	c2, _ := Build(s, "hv2", Options{})
	c3, _ := Build(s, "hv3", Options{})
	cases := []struct {
		name string
		c    *Config
		src  string
		peer string
		prio int
	}{
		{"hv1", c1, "192.168.1.101", "192.168.1.102,192.168.1.103", 200},
		{"hv2", c2, "192.168.1.102", "192.168.1.101,192.168.1.103", 150},
		{"hv3", c3, "192.168.1.103", "192.168.1.101,192.168.1.102", 100},
	}
	for _, c := range cases {
		if c.c.SourceIP != c.src || strings.Join(c.c.Peers, ",") != c.peer || c.c.Priority != c.prio {
			t.Errorf("%s: src %s peers %v priority %d; want %s, %s, %d", c.name, c.c.SourceIP, c.c.Peers, c.c.Priority, c.src, c.peer, c.prio)
		}
		if c.c.Interface != "gbr-infra" || c.c.Bond != "gb-infra" || c.c.VIP != "192.168.1.100/24" {
			t.Errorf("%s: interface %s bond %s vip %s", c.name, c.c.Interface, c.c.Bond, c.c.VIP)
		}
		if c.c.RouterID != c1.RouterID {
			t.Errorf("%s: router id %d differs from hv1's %d: all must agree", c.name, c.c.RouterID, c1.RouterID)
		}
	}
}

func TestRouterID(t *testing.T) {
	seen := map[int]string{}
	for _, name := range []string{"lab", "prod", "a", "cluster-with-a-long-name", "", "Lab"} {
		id := RouterID(name)
		if id < 1 || id > 255 {
			t.Errorf("RouterID(%q) = %d, outside 1-255", name, id)
		}
		if id != RouterID(name) {
			t.Errorf("RouterID(%q) not stable", name)
		}
		seen[id] = name
	}
	if len(seen) < 5 {
		t.Errorf("router ids collide too often: %v", seen)
	}
}

func TestPriority(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 20, 100, 300} {
		prev := 256
		for i := 0; i < n; i++ {
			p := Priority(i, n)
			if p < 1 || p > 254 {
				t.Fatalf("Priority(%d, %d) = %d outside 1-254", i, n, p)
			}
			if p > prev || (n <= 200 && p == prev) {
				t.Fatalf("Priority(%d, %d) = %d, not below the previous %d", i, n, p, prev)
			}
			prev = p
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *model.Spec)
		hv     string
		opts   Options
		want   string
	}{
		{"unknown hypervisor", func(s *model.Spec) {}, "hv9", Options{}, "not in the cluster spec"},
		{"no infrastructure group", func(s *model.Spec) {
			for i := range s.AdapterGroups {
				s.AdapterGroups[i].Infrastructure = false
			}
		}, "hv1", Options{}, "no infrastructure adapter group"},
		{"bad vip", func(s *model.Spec) { s.Cluster.VIP = "x" }, "hv1", Options{}, "not an IP address"},
		{"vip outside subnet", func(s *model.Spec) { s.Cluster.VIP = "10.0.0.1" }, "hv1", Options{}, "outside cluster.subnet"},
		{"bad management IP", func(s *model.Spec) { s.Hypervisors[1].ManagementIP = "192.168.1.102" }, "hv1", Options{}, "managementIP"},
		{"quote in script", func(s *model.Spec) {}, "hv1", Options{CheckScript: `/bin/echo "x"`}, "double quotes"},
		{"advert below 10 ms", func(s *model.Spec) {}, "hv1", Options{Advert: 5 * time.Millisecond}, "steps of 10 ms"},
		{"advert not in centiseconds", func(s *model.Spec) {}, "hv1", Options{Advert: 215 * time.Millisecond}, "steps of 10 ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := loadExample(t)
			c.mutate(s)
			_, err := Render(s, c.hv, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// The advert interval as keepalived reads it: seconds, fractions of VRRPv3.
func TestAdvertInt(t *testing.T) {
	s := loadExample(t)
	for adv, want := range map[time.Duration]string{0: "0.2", time.Second: "1", 150 * time.Millisecond: "0.15", 2500 * time.Millisecond: "2.5"} {
		c, err := Build(s, "hv1", Options{Advert: adv})
		if err != nil || c.AdvertInt != want {
			t.Errorf("Advert %v: advert_int %q, %v; want %q", adv, c.AdvertInt, err, want)
		}
	}
}

func TestSingleHypervisorHasNoUnicastBlock(t *testing.T) {
	s := loadExample(t)
	s.Hypervisors = s.Hypervisors[:1]
	out, err := Render(s, "hv1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "unicast_peer") {
		t.Errorf("single hypervisor got a unicast_peer block:\n%s", out)
	}
}
