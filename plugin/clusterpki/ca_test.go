package clusterpki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// t0 is the tests' "now": fixed, so that validity periods compare exactly.
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

func newTestCA(t *testing.T, cluster string, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA(cluster, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func keyPEMOf(t *testing.T, ca *CA) []byte {
	t.Helper()
	k, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	c := ca.Certificate()
	if got, want := c.Subject.CommonName, "gallium-net prod CA"; got != want {
		t.Errorf("CommonName %q, want %q", got, want)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA %v, BasicConstraintsValid %v: want both", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen %d (zero %v), want 0 and MaxPathLenZero", c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
		t.Errorf("KeyUsage %v, want %v", c.KeyUsage, want)
	}
	if !c.NotBefore.Equal(t0.Add(-clockSkew)) || !c.NotAfter.Equal(t0.AddDate(CAYears, 0, 0)) {
		t.Errorf("valid %v to %v, want %v to %v", c.NotBefore, c.NotAfter, t0.Add(-clockSkew), t0.AddDate(CAYears, 0, 0))
	}
	if c.NotAfter.Sub(t0) < 10*365*24*time.Hour {
		t.Errorf("CA valid only until %v", c.NotAfter)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no SubjectKeyId")
	}
	if h := ca.Hash(); h == ([32]byte{}) {
		t.Error("zero hash")
	}
	if other := newTestCA(t, "prod", t0); other.Hash() == ca.Hash() || other.Certificate().SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs of the same cluster share a hash or a serial")
	}
}

func TestNewCARefusesEmptyName(t *testing.T) {
	if _, err := NewCA("", t0); err == nil || !strings.Contains(err.Error(), "cluster name is empty") {
		t.Fatalf("err %v, want the cluster name is empty", err)
	}
}

func TestCARoundTripThroughPEM(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	keyPEM := keyPEMOf(t, ca)
	if !bytes.HasPrefix(keyPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("key PEM is not PKCS#8:\n%s", keyPEM)
	}
	if !bytes.HasPrefix(ca.CertPEM(), []byte("-----BEGIN CERTIFICATE-----\n")) {
		t.Errorf("certificate PEM:\n%s", ca.CertPEM())
	}
	back, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Certificate().Equal(ca.Certificate()) {
		t.Error("certificate changed through PEM")
	}
	if back.Hash() != ca.Hash() {
		t.Error("hash changed through PEM")
	}
	if again := keyPEMOf(t, back); !bytes.Equal(again, keyPEM) {
		t.Error("key changed through PEM")
	}
	// The loaded CA signs what the original's pool accepts.
	certPEM, _, err := back.Issue(IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ca, certPEM, x509.ExtKeyUsageServerAuth)
}

func TestLoadCAAcceptsSEC1Key(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	der, err := x509.MarshalECPrivateKey(ca.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if _, err := LoadCA(ca.CertPEM(), sec1); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCARefuses(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	other := newTestCA(t, "other", t0)
	leafCert, leafKey, err := ca.Issue(IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	noCertSign := selfSignedCA(t, x509.KeyUsageDigitalSignature)
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"another cluster's key", ca.CertPEM(), keyPEMOf(t, other), `CA key: it is not the key of CA certificate "gallium-net prod CA"`},
		{"a member certificate", leafCert, leafKey, `CA certificate "hv1": not a CA certificate`},
		{"a CA that may not sign certificates", noCertSign.cert, noCertSign.key, "its key usage does not allow signing certificates"},
		{"no certificate", nil, keyPEMOf(t, ca), `CA certificate: no PEM data (want a "CERTIFICATE" block)`},
		{"files swapped", keyPEMOf(t, ca), ca.CertPEM(), `CA certificate: PEM block is "PRIVATE KEY", want "CERTIFICATE"`},
		{"no key", ca.CertPEM(), []byte("\n"), "CA key: no PEM data"},
		{"a key of an unknown type", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}}), `CA key: PEM block is "OPENSSH PRIVATE KEY", want "PRIVATE KEY" (PKCS#8) or "EC PRIVATE KEY"`},
		{"a broken key", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "CA key: "},
		{"a broken certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), keyPEMOf(t, ca), "CA certificate: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

type pemPair struct{ cert, key []byte }

// selfSignedCA is a CA certificate with the given key usage, for what
// NewCA never makes.
func selfSignedCA(t *testing.T, usage x509.KeyUsage) pemPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "odd CA"},
		NotBefore:             t0,
		NotAfter:              t0.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := marshalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k}
}
