// Package clusterpki is the cluster's small PKI, for the store's mutual TLS:
// the CA that `gallium-net cluster init` is to create on the first
// hypervisor, the certificates of each hypervisor's store (etcd) member and
// of the store's clients, and the join token that `cluster join` is to take,
// which pins the CA so that a joining hypervisor never
// trusts a store it was not meant to join.
//
// It is pure: PEM in, PEM out, no files. The caller writes keys and
// certificates with plugin/atomicfile (keys with mode 0600).
//
// Choices an operator would expect, written down here:
//   - ECDSA P-256 keys everywhere: small, fast, and accepted by etcd, Go and
//     OpenSSL alike;
//   - the CA lives 10 years and a member's certificate 5 by default, so a
//     small cluster does not meet an expiry in its ordinary life; a
//     certificate never outlives the CA that signs it;
//   - every NotBefore is an hour in the past, so that a hypervisor whose
//     clock lags a little does not refuse a certificate just issued;
//   - a joining hypervisor makes its own key and sends a CSR (NewCSR,
//     SignCSR), so a private key never crosses the network; the signer
//     decides the names in the certificate, never the CSR;
//   - the join token is k3s' idea: `gn1::<sha256 of the CA>::<secret>`.
//     The hash lets the joiner check the CA it is shown before trusting it;
//     the secret lets it prove it was invited (Token.MAC) without sending
//     the secret.
package clusterpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

const (
	// CAYears is how long a new CA is valid, in calendar years.
	CAYears = 10
	// DefaultValidity is how long an issued certificate is valid when the
	// request says nothing.
	DefaultValidity = 5 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore: hypervisors' clocks drift, and a
	// certificate "not yet valid" on a member a minute behind would stop
	// it joining.
	clockSkew = time.Hour
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemECKey       = "EC PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

// CA is the cluster's certificate authority: its certificate and the key
// that signs members' certificates.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a self-signed CA for the cluster clusterName, valid from
// now (less the clock skew allowance) for CAYears. A zero now means the
// current time.
func NewCA(clusterName string, now time.Time) (*CA, error) {
	if clusterName == "" {
		return nil, errors.New("cluster CA: the cluster name is empty")
	}
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA of cluster %s: generating the key: %w", clusterName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("CA of cluster %s: %w", clusterName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "gallium-net " + clusterName + " CA"},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.AddDate(CAYears, 0, 0),
		IsCA:         true,
		// MaxPathLen 0 with MaxPathLenZero: the CA signs leaves only, so a
		// stolen member key can never act as an intermediate CA.
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA of cluster %s: signing: %w", clusterName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA of cluster %s: %w", clusterName, err)
	}
	return &CA{cert: cert, key: key}, nil
}

// LoadCA reads a CA back from its certificate and key (PKCS#8 "PRIVATE KEY",
// or SEC1 "EC PRIVATE KEY" as OpenSSL writes it). It refuses a key that is
// not the certificate's and a certificate that cannot sign certificates, so
// that a mix-up of files is found at load, not as a handshake failure on
// another hypervisor.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	der, err := decodePEM(certPEM, pemCertificate)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	name := cert.Subject.CommonName
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("CA certificate %q: not a CA certificate (basic constraints say CA:FALSE or are missing)", name)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %q: its key usage does not allow signing certificates", name)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("CA key: it is not the key of CA certificate %q (the files do not belong together)", name)
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate is the CA's certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM is the CA's certificate in PEM: what every member and client
// trusts, and what a join token pins.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: ca.cert.Raw})
}

// KeyPEM is the CA's private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// Hash is the SHA-256 of the CA certificate's DER: what a join token pins.
func (ca *CA) Hash() [32]byte { return sha256.Sum256(ca.cert.Raw) }

// newSerial is a random 128-bit serial: unique without a counter to keep,
// since any member holding the CA key may issue.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	// A zero serial is invalid (RFC 5280); one in 2^128, but cheap to avoid.
	return n.Add(n, big.NewInt(1)), nil
}

// decodePEM returns the DER of the first PEM block of data, which must be
// of type want.
func decodePEM(data []byte, want string) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM data (want a %q block)", want)
	}
	if block.Type != want {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, want)
	}
	return block.Bytes, nil
}

func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("no PEM data (want a %q block)", pemPrivateKey)
	}
	switch block.Type {
	case pemPrivateKey:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", k)
		}
		return s, nil
	case pemECKey:
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want %q (PKCS#8) or %q", block.Type, pemPrivateKey, pemECKey)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
