package etcdstore

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gallium/gallium-net/plugin/store/etcdstore/etcdtest"
)

func TestVerdict(t *testing.T) {
	ok := finding{endpoint: "https://a:2379", accepted: true}
	refused := finding{endpoint: "https://b:2379", fault: "it refuses this client's certificate"}
	down := finding{endpoint: "https://c:2379", reach: "connection refused"}
	for _, tc := range []struct {
		name string
		fs   []finding
		want diagnosis
	}{
		// One endpoint took the connection: the timeout was not about
		// the configuration (a dead member, a lost leader).
		{"one accepts", []finding{down, refused, ok}, diagnosis{}},
		{"a fault beside a dead member", []finding{down, refused},
			diagnosis{text: "https://b:2379: it refuses this client's certificate", permanent: true}},
		{"the same fault everywhere, said once", []finding{refused, {endpoint: "https://d:2379", fault: refused.fault}, down},
			diagnosis{text: "https://b:2379, https://d:2379: it refuses this client's certificate", permanent: true}},
		{"two faults", []finding{refused, {endpoint: "https://e:2379", fault: "it speaks TLS: use https://"}},
			diagnosis{text: "https://b:2379: it refuses this client's certificate; https://e:2379: it speaks TLS: use https://", permanent: true}},
		{"all down", []finding{down},
			diagnosis{text: "no endpoint accepts a connection: https://c:2379: connection refused"}},
		{"no endpoints", nil, diagnosis{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, verdict(tc.fs), cmp.AllowUnexported(diagnosis{})); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

// A plain etcd member takes the probe's connection, and a closed port
// does not.
func TestProbe(t *testing.T) {
	c := etcdtest.Start(t, 1)
	if f := probe(t.Context(), c.Endpoints[0], nil); !f.accepted {
		t.Errorf("probe of a running member: %+v", f)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := probe(t.Context(), "http://"+addr, nil)
	if f.accepted || f.fault != "" || f.reach == "" {
		t.Errorf("probe of a closed port: %+v", f)
	}
	if f := probe(t.Context(), "not a url", nil); f.fault == "" {
		t.Errorf("probe of a bad URL: %+v", f)
	}
}
