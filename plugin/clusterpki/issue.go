package clusterpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Usage says what a certificate is for; the bits become its extended key
// usages.
type Usage uint8

const (
	// Server: a TLS server (a store member's client port).
	Server Usage = 1 << iota
	// Client: a TLS client (the CLI, the agent, a member dialling a peer).
	Client
	// Peer is a store member's peer certificate: etcd's peer TLS uses the
	// same certificate to listen for and to dial the other members, so it
	// needs both.
	Peer = Server | Client
)

func (u Usage) String() string {
	var parts []string
	if u&Server != 0 {
		parts = append(parts, "server")
	}
	if u&Client != 0 {
		parts = append(parts, "client")
	}
	if rest := u &^ Peer; rest != 0 {
		parts = append(parts, fmt.Sprintf("unknown(%#x)", uint8(rest)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// IssueRequest describes a certificate to issue. The caller decides every
// name in it; nothing comes from the requester's CSR.
type IssueRequest struct {
	// Name is the hypervisor's (or client's) name; it becomes the subject's
	// CommonName, which etcd takes as the user name of a client.
	Name string
	// IPs and DNSNames are the subject alternative names a peer verifies:
	// a store member needs its management IP here.
	IPs      []netip.Addr
	DNSNames []string
	// Usage must be set: Server, Client or Peer.
	Usage Usage
	// Validity defaults to DefaultValidity; it is cut to the CA's expiry.
	Validity time.Duration
	// Now defaults to the current time.
	Now time.Time
}

// Issue makes a new key and a certificate for it signed by the CA.
func (ca *CA) Issue(req IssueRequest) (certPEM, keyPEM []byte, err error) {
	if err := req.check(); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: generating the key: %w", req.Name, err)
	}
	certPEM, err = ca.sign(key.Public(), req)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: %w", req.Name, err)
	}
	return certPEM, keyPEM, nil
}

// SignCSR signs the public key of a PEM certificate request, after checking
// the CSR's signature (proof that its sender holds the key). The
// certificate's subject and alternative names are req's: whatever the CSR
// asks for is ignored, so a joining hypervisor cannot obtain a certificate
// for another member's name or address.
func (ca *CA) SignCSR(csrPEM []byte, req IssueRequest) ([]byte, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	der, err := decodePEM(csrPEM, pemCSR)
	if err != nil {
		return nil, fmt.Errorf("CSR for %s: %w", req.Name, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("CSR for %s: %w", req.Name, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR for %s: its signature does not verify (corrupted, or not made with the key it carries): %w", req.Name, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR for %s: %w", req.Name, err)
	}
	return ca.sign(csr.PublicKey, req)
}

// NewCSR makes a key and a certificate request for name, for the joining
// side: the CSR goes to a member to be signed, the key stays here.
func NewCSR(name string) (csrPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("CSR: the name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR for %s: generating the key: %w", name, err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR for %s: %w", name, err)
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR for %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), keyPEM, nil
}

func (req IssueRequest) check() error {
	if req.Name == "" {
		return errors.New("certificate: the name (CommonName) is empty")
	}
	if strings.ContainsFunc(req.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("certificate for %q: the name has a control character", req.Name)
	}
	if req.Usage&Peer == 0 || req.Usage&^Peer != 0 {
		return fmt.Errorf("certificate for %s: usage is %v, want Server, Client or Peer", req.Name, req.Usage)
	}
	if req.Validity < 0 {
		return fmt.Errorf("certificate for %s: validity %v is negative", req.Name, req.Validity)
	}
	for _, ip := range req.IPs {
		if !ip.IsValid() {
			return fmt.Errorf("certificate for %s: an IP address is the zero netip.Addr", req.Name)
		}
	}
	for _, d := range req.DNSNames {
		if d == "" || strings.ContainsFunc(d, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return fmt.Errorf("certificate for %s: DNS name %q is empty or has a space or a non-ASCII character", req.Name, d)
		}
	}
	return nil
}

func (ca *CA) sign(pub crypto.PublicKey, req IssueRequest) ([]byte, error) {
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("certificate for %s: the cluster CA %q expired on %s", req.Name, ca.cert.Subject.CommonName, ca.cert.NotAfter.UTC().Format(time.DateOnly))
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	notAfter := now.Add(validity)
	// A certificate that outlives its CA fails verification after the CA's
	// expiry anyway; cutting it says so in the certificate itself.
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", req.Name, err)
	}
	keyUsage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		// TLS 1.2's RSA key exchange encrypts to the key.
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	var ext []x509.ExtKeyUsage
	if req.Usage&Server != 0 {
		ext = append(ext, x509.ExtKeyUsageServerAuth)
	}
	if req.Usage&Client != 0 {
		ext = append(ext, x509.ExtKeyUsageClientAuth)
	}
	ips := make([]net.IP, 0, len(req.IPs))
	for _, ip := range req.IPs {
		// A zone (fe80::1%eth0) means nothing to another host.
		ips = append(ips, net.IP(ip.WithZone("").Unmap().AsSlice()))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           ext,
		BasicConstraintsValid: true,
		IPAddresses:           ips,
		DNSNames:              append([]string(nil), req.DNSNames...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: signing: %w", req.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), nil
}

// checkPublicKey refuses keys too weak to put in a cluster certificate: a
// CSR comes from another host, and its key is its choice.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("an ECDSA key on %s is too weak, want P-256 or stronger", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("a %d-bit RSA key is too weak, want 2048 bits or more", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("a %T key is not supported", pub)
	}
	return nil
}

func marshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}
