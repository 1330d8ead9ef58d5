package clusterpki

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// TokenVersion is the first field of every join token this version writes
// and reads; a later format gets a new one, so that an old gallium-net says
// "unsupported version" rather than misreading it.
const TokenVersion = "gn1"

// MinSecretLen is the shortest secret ParseToken takes: a MAC made with the
// secret (Token.MAC) can be attacked offline, so a short one would give the
// secret away.
const MinSecretLen = 16

// tokenForm is the hint every parse error ends with.
const tokenForm = TokenVersion + "::<CA hash: 64 lowercase hex digits>::<secret>"

// ErrMalformedToken is what every ParseToken error wraps.
var ErrMalformedToken = errors.New("malformed join token")

// ErrCAMismatch is what VerifyCA returns when the CA shown is not the one
// the token pins.
var ErrCAMismatch = errors.New("the server's CA does not match the join token: wrong cluster, or a man in the middle; get a fresh token with 'gallium-net cluster token' on a member")

// secretEncoding: lowercase base32 without padding survives a URL, a shell,
// a YAML file and being read aloud (no '+', '/', '=', and no 0/O or 1/l
// confusion).
var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token is a join token: the hash that pins the cluster's CA and the secret
// that proves the joiner was invited. Its String form holds the secret:
// never log it.
type Token struct {
	// CAHash is the SHA-256 of the CA certificate's DER.
	CAHash [32]byte
	// Secret is URL-safe text (A-Z a-z 0-9 - _ . ~), at least MinSecretLen
	// characters.
	Secret string
}

// NewToken makes a token that pins ca, with a fresh 32-byte random secret.
func NewToken(ca *CA) (Token, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Token{}, fmt.Errorf("join token: generating the secret: %w", err)
	}
	return Token{CAHash: ca.Hash(), Secret: secretEncoding.EncodeToString(b[:])}, nil
}

// String is the token as the operator copies it:
// gn1::<hex CA hash>::<secret>.
func (t Token) String() string {
	return TokenVersion + "::" + hex.EncodeToString(t.CAHash[:]) + "::" + t.Secret
}

var (
	versionPattern = regexp.MustCompile(`^gn[0-9]{1,4}$`)
	secretPattern  = regexp.MustCompile(`^[A-Za-z0-9._~-]*$`)
)

// ParseToken reads a token written by String. Surrounding white space (a
// token read from a file ends in a newline) is ignored; anything else that
// is not the exact form is an error that says what is wrong and never
// quotes the secret, since errors end up in logs.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, malformed("it is empty")
	}
	fields := strings.Split(s, "::")
	if fields[0] != TokenVersion {
		switch {
		case strings.HasPrefix(s, "K10"):
			return Token{}, malformed("this is a k3s token, not a gallium-net one")
		case versionPattern.MatchString(fields[0]):
			// Safe to quote: the pattern admits nothing secret.
			return Token{}, malformed(fmt.Sprintf("version %q is not supported by this gallium-net (it reads %s)", fields[0], TokenVersion))
		default:
			return Token{}, malformed(fmt.Sprintf("it does not start with %q", TokenVersion+"::"))
		}
	}
	if len(fields) != 3 {
		return Token{}, malformed(fmt.Sprintf("it has %d fields separated by \"::\", want 3", len(fields)))
	}
	hash, secret := fields[1], fields[2]
	if len(hash) != 2*sha256.Size {
		return Token{}, malformed(fmt.Sprintf("the CA hash has %d characters, want %d hex digits (SHA-256)", len(hash), 2*sha256.Size))
	}
	var t Token
	// Lowercase only: one spelling per token, so String gives back the
	// token that was parsed.
	if strings.ToLower(hash) != hash {
		return Token{}, malformed("the CA hash is not lowercase hex")
	}
	if _, err := hex.Decode(t.CAHash[:], []byte(hash)); err != nil {
		return Token{}, malformed("the CA hash is not hex")
	}
	switch {
	case secret == "":
		return Token{}, malformed("the secret is empty")
	case !secretPattern.MatchString(secret):
		return Token{}, malformed("the secret has a character other than A-Z a-z 0-9 - _ . ~")
	case len(secret) < MinSecretLen:
		return Token{}, malformed(fmt.Sprintf("the secret has %d characters, want at least %d", len(secret), MinSecretLen))
	}
	t.Secret = secret
	return t, nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s; want the form %s", ErrMalformedToken, what, tokenForm)
}

// VerifyCA checks that certPEM, the CA certificate a server presents to a
// joiner, is the one the token pins. certPEM must hold exactly that one
// certificate: with a bundle, which certificate is trusted would be the
// server's choice.
func (t Token) VerifyCA(certPEM []byte) error {
	block, rest := pem.Decode(certPEM)
	if block == nil {
		return errors.New("the server's CA certificate: no PEM data")
	}
	if block.Type != pemCertificate {
		return fmt.Errorf("the server's CA certificate: PEM block is %q, want %q", block.Type, pemCertificate)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("the server's CA certificate: more than one PEM block, want the CA certificate alone")
	}
	got := sha256.Sum256(block.Bytes)
	if subtle.ConstantTimeCompare(got[:], t.CAHash[:]) != 1 {
		return ErrCAMismatch
	}
	return nil
}

// MAC is HMAC-SHA256 of msg keyed by the secret: a joiner sends it to prove
// it holds the token without sending the secret. msg should hold a nonce
// from the server and what is being asked (the joiner's name, its CSR), so
// that a MAC can neither be replayed nor moved to another request. It is
// nil for a token without a secret.
func (t Token) MAC(msg []byte) []byte {
	if t.Secret == "" {
		return nil
	}
	m := hmac.New(sha256.New, []byte(t.Secret))
	m.Write(msg)
	return m.Sum(nil)
}

// CheckMAC says, in constant time, whether mac is MAC(msg). A token
// without a secret accepts nothing: with an empty key anyone could make
// the MAC.
func (t Token) CheckMAC(msg, mac []byte) bool {
	if t.Secret == "" {
		return false
	}
	return hmac.Equal(t.MAC(msg), mac)
}
