package clusterjoin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gallium/gallium-net/plugin/clusterpki"
)

// Admitter makes room in the store for a joiner whose request was
// authenticated and whose certificate is signed: it checks the name and
// address against the cluster (spec, members) and adds the learner.
type Admitter interface {
	Admit(ctx context.Context, req Request, addr netip.Addr) (Admission, error)
}

// AdmitFunc adapts a function to Admitter.
type AdmitFunc func(ctx context.Context, req Request, addr netip.Addr) (Admission, error)

// Admit calls f.
func (f AdmitFunc) Admit(ctx context.Context, req Request, addr netip.Addr) (Admission, error) {
	return f(ctx, req, addr)
}

// Server admits joining hypervisors on a member.
type Server struct {
	cluster string
	member  string
	ca      *clusterpki.CA
	caPEM   []byte
	caKey   []byte
	token   clusterpki.Token
	admit   Admitter
	tls     *tls.Config
	log     *slog.Logger
	now     func() time.Time

	// joinMu makes joins one at a time: etcd takes one learner at a time,
	// and two joiners racing for it would make one of them fail late.
	joinMu sync.Mutex
	mu     sync.Mutex
	nonces map[string]time.Time
}

// ServerConfig is what a member needs to admit joiners.
type ServerConfig struct {
	Cluster string
	// Member is this member's name (for the answer and the logs).
	Member string
	// CACert and CAKey are the cluster CA (PEM); CertPEM and KeyPEM this
	// member's certificate, presented to joiners with the CA behind it.
	CACert, CAKey, CertPEM, KeyPEM []byte
	// Token holds the secret joiners prove they know.
	Token  clusterpki.Token
	Admit  Admitter
	Logger *slog.Logger
	// Now is for tests; default time.Now.
	Now func() time.Time
}

// NewServer checks cfg and builds the server; its TLS configuration sends
// the CA after the member's certificate, which is what a joiner pins.
func NewServer(cfg ServerConfig) (*Server, error) {
	ca, err := clusterpki.LoadCA(cfg.CACert, cfg.CAKey)
	if err != nil {
		return nil, fmt.Errorf("join server: the cluster CA: %w", err)
	}
	if cfg.Token.CAHash != ca.Hash() {
		return nil, errors.New("join server: the join token does not pin this cluster's CA: the token file and the CA belong to different clusters")
	}
	if cfg.Token.Secret == "" {
		return nil, errors.New("join server: the join token has no secret")
	}
	if cfg.Admit == nil {
		return nil, errors.New("join server: no Admitter")
	}
	pair, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("join server: member %s's certificate: %w", cfg.Member, err)
	}
	pair.Certificate = append(pair.Certificate, ca.Certificate().Raw)
	s := &Server{
		cluster: cfg.Cluster, member: cfg.Member,
		ca: ca, caPEM: ca.CertPEM(), caKey: cfg.CAKey,
		token: cfg.Token, admit: cfg.Admit,
		tls: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		log: cfg.Logger, now: cfg.Now,
		nonces: map[string]time.Time{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// TLSConfig is the listener's configuration.
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// Handler serves the two requests.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+noncePath, s.serveNonce)
	mux.HandleFunc("POST "+joinPath, s.serveJoin)
	return mux
}

func (s *Server) serveNonce(w http.ResponseWriter, r *http.Request) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		writeError(w, http.StatusInternalServerError, "generating a nonce: "+err.Error())
		return
	}
	n := hex.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	for k, t := range s.nonces {
		if now.Sub(t) > NonceTTL {
			delete(s.nonces, k)
		}
	}
	// A bound on what an unauthenticated caller can make the member
	// remember: a join needs one nonce, and nonces expire.
	if len(s.nonces) >= 1024 {
		s.mu.Unlock()
		writeError(w, http.StatusTooManyRequests, "too many joins under way: retry in a few minutes")
		return
	}
	s.nonces[n] = now
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"nonce": n})
}

// takeNonce consumes n: true when it was handed out and is still fresh.
func (s *Server) takeNonce(n string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.nonces[n]
	delete(s.nonces, n)
	return ok && s.now().Sub(t) <= NonceTTL
}

func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeError(w, http.StatusBadRequest, "the request body is unreadable or too large")
		return
	}
	mac, err := hex.DecodeString(r.Header.Get(MACHeader))
	if err != nil || !s.token.CheckMAC(body, mac) {
		s.log.Warn("join refused: wrong token secret", "from", r.RemoteAddr)
		// A pause makes guessing the secret by trial slower still.
		time.Sleep(time.Second)
		writeError(w, http.StatusForbidden, "the join token's secret is not this cluster's: get the current token with 'gallium-net cluster token' on a member")
		return
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the request is not a join request: "+err.Error())
		return
	}
	if !s.takeNonce(req.Nonce) {
		writeError(w, http.StatusForbidden, "the nonce is unknown, used or older than "+NonceTTL.String()+": join again")
		return
	}
	addr, err := req.Check()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ans, status, err := s.join(r.Context(), req, addr)
	if err != nil {
		s.log.Warn("join refused", "hypervisor", req.Name, "address", addr, "from", r.RemoteAddr, "error", err)
		writeError(w, status, err.Error())
		return
	}
	s.log.Info("hypervisor admitted to the store", "hypervisor", req.Name, "address", addr, "replace", req.Replace)
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) join(ctx context.Context, req Request, addr netip.Addr) (*Answer, int, error) {
	ips := []netip.Addr{addr}
	if lo := netip.MustParseAddr("127.0.0.1"); addr != lo {
		ips = append(ips, lo)
	}
	// Signed before the store is touched: a CSR that cannot be signed must
	// not leave a learner behind.
	cert, err := s.ca.SignCSR([]byte(req.CSR), clusterpki.IssueRequest{Name: req.Name, IPs: ips, Usage: clusterpki.Peer})
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("hypervisor %s: %w", req.Name, err)
	}
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	adm, err := s.admit.Admit(ctx, req, addr)
	if err != nil {
		return nil, http.StatusConflict, err
	}
	return &Answer{
		Cluster: s.cluster, CA: string(s.caPEM), CAKey: string(s.caKey), Cert: string(cert),
		InitialCluster: adm.InitialCluster, Warnings: adm.Warnings, Ports: adm.Ports, AdmittedBy: s.member,
	}, http.StatusOK, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}
