package clusterpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// ServerTLS is the configuration of a store member's listener: it presents
// certPEM/keyPEM and accepts only clients with a certificate from the
// cluster CA (caPEM; more than one CA certificate may be given, for a CA
// rotation), so that a host without a cluster certificate cannot read or
// write the store.
func ServerTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool, cas, err := caPool(caPEM)
	if err != nil {
		return nil, err
	}
	pair, err := keyPair(certPEM, keyPEM, cas, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// ClientTLS is the configuration of a client of the store (the CLI, the
// agent, a member dialling a peer): it trusts only the cluster CA and
// presents certPEM/keyPEM. The caller sets ServerName when it dials by
// something other than the name or IP the server's certificate holds (a
// tls.Dial to an IP checks that IP against the certificate).
func ClientTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool, cas, err := caPool(caPEM)
	if err != nil {
		return nil, err
	}
	pair, err := keyPair(certPEM, keyPEM, cas, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func caPool(caPEM []byte) (*x509.CertPool, []*x509.Certificate, error) {
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		der, r, err := nextCert(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("CA certificate: %w", err)
		}
		if der == nil {
			break
		}
		rest = r
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("CA certificate: %w", err)
		}
		if !c.IsCA {
			return nil, nil, fmt.Errorf("CA certificate %q: not a CA certificate", c.Subject.CommonName)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool, cas, nil
}

// keyPair loads a certificate and its key, and checks now what would
// otherwise fail only at the other end of a handshake: that the cluster
// CA issued it and that it may be used for want.
func keyPair(certPEM, keyPEM []byte, cas []*x509.Certificate, want x509.ExtKeyUsage) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate and key: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
		}
	}
	name := leaf.Subject.CommonName
	if !slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return leaf.CheckSignatureFrom(ca) == nil }) {
		return tls.Certificate{}, fmt.Errorf("certificate for %s: not issued by the cluster CA %q", name, cas[0].Subject.CommonName)
	}
	if !slices.Contains(leaf.ExtKeyUsage, want) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		use, usage := "server", "Server"
		if want == x509.ExtKeyUsageClientAuth {
			use, usage = "client", "Client"
		}
		return tls.Certificate{}, fmt.Errorf("certificate for %s: not valid for a TLS %s (issue it with Usage %s or Peer)", name, use, usage)
	}
	return pair, nil
}

// nextCert returns the DER of the next CERTIFICATE block of data and the
// rest, or nil at the end; a block of another type is an error, since a key
// in a CA bundle is a mistake worth hearing about.
func nextCert(data []byte) (der, rest []byte, err error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, nil, nil
	}
	if block.Type != pemCertificate {
		return nil, nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemCertificate)
	}
	return block.Bytes, rest, nil
}
