package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The gRPC client waits for a usable connection until the request's
// deadline, so a store that refuses this client's certificate, a store
// certificate this client does not trust and plain http:// against a TLS
// store all look alike to the caller: "context deadline exceeded". The
// diagnosis connects to each endpoint itself to tell them apart.

// finding is what one endpoint said to a direct connection.
type finding struct {
	endpoint string
	// accepted: the endpoint took the connection (and the certificate);
	// whatever failed, it was not the connection.
	accepted bool
	// fault is a configuration error that no retry will fix; empty when
	// the endpoint could not be reached at all (reach holds why).
	fault, reach string
}

// diagnosis is the verdict on a timed-out request: what to add to its
// error, and whether retrying is pointless.
type diagnosis struct {
	text      string
	permanent bool
}

const probeTimeout = time.Second

// h2Preface is what an HTTP/2 (gRPC) client sends first; a server that
// accepted the TLS session waits for more, one that did not answers with
// an alert or closes.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// probe connects to one endpoint as this client would.
func probe(ctx context.Context, endpoint string, tlsCfg *tls.Config) finding {
	f := finding{endpoint: endpoint}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		f.fault = "not a URL such as https://192.0.2.1:2379"
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		f.reach = err.Error()
		return f
	}
	defer raw.Close()
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	conn := raw
	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if tlsCfg != nil {
			cfg = tlsCfg.Clone()
		}
		cfg.ServerName = u.Hostname()
		cfg.NextProtos = []string{"h2"}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			var unknown x509.UnknownAuthorityError
			var hostErr x509.HostnameError
			switch {
			case errors.As(err, &unknown):
				f.fault = "its certificate is not signed by the CA this client trusts: use the cluster's CA (--etcd-ca, or store.etcd.caFile in /etc/gallium-net/config.yaml)"
			case errors.As(err, &hostErr):
				f.fault = fmt.Sprintf("its certificate is not for %s: %v", u.Hostname(), err)
			case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
				f.fault = "it does not speak TLS: use http:// for this endpoint"
			default:
				f.fault = "TLS handshake: " + err.Error()
			}
			return f
		}
		conn = tc
	}
	if _, err := conn.Write(h2Preface); err != nil {
		f.reach = err.Error()
		return f
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	got := buf[:n]
	switch {
	case err != nil && strings.Contains(err.Error(), "remote error: tls:"):
		// TLS 1.3 servers check the client's certificate after the
		// client's side of the handshake, and say so on the first read.
		f.fault = fmt.Sprintf("it refuses this client's certificate (%v): run the command on a cluster member, whose member certificate it uses, or give one signed by the cluster's CA (--etcd-cert and --etcd-key, or store.etcd.certFile and keyFile)", err)
	case u.Scheme != "https" && (bytes.HasPrefix(got, []byte{0x15, 0x03}) || bytes.Contains(got, []byte("HTTPS"))):
		f.fault = "it speaks TLS: use https:// for this endpoint"
	case n > 0:
		f.accepted = true // an HTTP/2 server's SETTINGS
	case isTimeout(err):
		f.accepted = true // waiting for the rest of our preface
	case u.Scheme != "https" && errors.Is(err, io.EOF):
		// etcd serving TLS drops a plain connection without a word.
		f.fault = "it closed a plain connection at once, as a store that speaks TLS does: use https://"
	default:
		f.reach = fmt.Sprintf("closed the connection: %v", err)
	}
	return f
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// verdict turns the endpoints' findings into a diagnosis: nothing when one
// endpoint accepted (the request failed for another reason), a permanent
// fault when none accepted and one named a configuration error, else the
// reasons none could be reached.
func verdict(fs []finding) diagnosis {
	var faults, unreachable []string
	// byFault groups endpoints that said the same, so three members
	// refusing one certificate make one sentence, not three.
	byFault := map[string][]string{}
	for _, f := range fs {
		switch {
		case f.accepted:
			return diagnosis{}
		case f.fault != "":
			if byFault[f.fault] == nil {
				faults = append(faults, f.fault)
			}
			byFault[f.fault] = append(byFault[f.fault], f.endpoint)
		default:
			unreachable = append(unreachable, f.endpoint+": "+f.reach)
		}
	}
	if len(faults) > 0 {
		var parts []string
		for _, fault := range faults {
			parts = append(parts, strings.Join(byFault[fault], ", ")+": "+fault)
		}
		return diagnosis{text: strings.Join(parts, "; "), permanent: true}
	}
	if len(unreachable) > 0 {
		return diagnosis{text: "no endpoint accepts a connection: " + strings.Join(unreachable, "; ")}
	}
	return diagnosis{}
}

// diagnose probes every endpoint at once; it takes at most probeTimeout.
func diagnose(ctx context.Context, endpoints []string, tlsCfg *tls.Config) diagnosis {
	fs := make([]finding, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs[i] = probe(ctx, ep, tlsCfg)
		}()
	}
	wg.Wait()
	return verdict(fs)
}
