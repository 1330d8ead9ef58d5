package clusterpki

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func newTestToken(t *testing.T, ca *CA) Token {
	t.Helper()
	tok, err := NewToken(ca)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	tok := newTestToken(t, ca)
	if tok.CAHash != sha256.Sum256(ca.Certificate().Raw) {
		t.Error("CAHash is not the SHA-256 of the CA's DER")
	}
	s := tok.String()
	if !regexp.MustCompile(`^gn1::[0-9a-f]{64}::[a-z2-7]{52}$`).MatchString(s) {
		t.Errorf("token %q is not gn1::<64 hex>::<52 base32>", s)
	}
	for _, in := range []string{s, s + "\n", "  " + s + "\r\n"} {
		got, err := ParseToken(in)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", in, err)
		}
		if got != tok {
			t.Errorf("ParseToken(%q) = %+v, want %+v", in, got, tok)
		}
	}
	if again := newTestToken(t, ca); again.Secret == tok.Secret || again.CAHash != tok.CAHash {
		t.Error("two tokens of one CA: want the same hash and different secrets")
	}
	// A secret chosen by hand, in the allowed alphabet, parses too.
	hand := Token{CAHash: tok.CAHash, Secret: "Correct-Horse_Battery.Staple~42"}
	if got, err := ParseToken(hand.String()); err != nil || got != hand {
		t.Errorf("ParseToken(%q) = %+v, %v", hand.String(), got, err)
	}
}

func TestParseTokenMalformed(t *testing.T) {
	const secret = "SeCrEtSeCrEtSeCrEt"
	hash := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "it is empty"},
		{"blank", " \n\t", "it is empty"},
		{"the secret alone", secret, `it does not start with "gn1::"`},
		{"no version", hash + "::" + secret, `it does not start with "gn1::"`},
		{"upper-case version", "GN1::" + hash + "::" + secret, `it does not start with "gn1::"`},
		{"single colons", "gn1:" + hash + ":" + secret, `it does not start with "gn1::"`},
		{"newer version", "gn2::" + hash + "::" + secret, `version "gn2" is not supported by this gallium-net (it reads gn1)`},
		{"a k3s token", "K10" + hash + "::server:" + secret, "this is a k3s token, not a gallium-net one"},
		{"version only", "gn1", `it has 1 fields separated by "::", want 3`},
		{"no secret field", "gn1::" + hash, `it has 2 fields separated by "::", want 3`},
		{"secret with '::'", "gn1::" + hash + "::" + secret + "::" + secret, `it has 4 fields separated by "::", want 3`},
		{"empty hash", "gn1::::" + secret, "the CA hash has 0 characters, want 64 hex digits (SHA-256)"},
		{"short hash", "gn1::" + hash[:63] + "::" + secret, "the CA hash has 63 characters, want 64 hex digits (SHA-256)"},
		{"SHA-1 hash", "gn1::" + hash[:40] + "::" + secret, "the CA hash has 40 characters, want 64"},
		{"long hash", "gn1::" + hash + "0::" + secret, "the CA hash has 65 characters, want 64"},
		{"upper-case hash", "gn1::" + strings.ToUpper(hash) + "::" + secret, "the CA hash is not lowercase hex"},
		{"not hex", "gn1::" + strings.Repeat("xy", 32) + "::" + secret, "the CA hash is not hex"},
		{"empty secret", "gn1::" + hash + "::", "the secret is empty"},
		{"secret with a slash", "gn1::" + hash + "::" + secret + "/x", "the secret has a character other than A-Z a-z 0-9 - _ . ~"},
		{"secret with a space", "gn1::" + hash + ":: " + secret, "the secret has a character other than"},
		{"secret with a colon", "gn1::" + hash + "::" + secret + ":", "the secret has a character other than"},
		{"secret with non-ASCII", "gn1::" + hash + "::" + secret + "é", "the secret has a character other than"},
		{"short secret", "gn1::" + hash + "::SeCrEt", "the secret has 6 characters, want at least 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken(tc.in)
			if err == nil {
				t.Fatalf("ParseToken accepted it: %+v", tok)
			}
			if tok != (Token{}) {
				t.Errorf("a zero Token wanted with the error, got %+v", tok)
			}
			msg := err.Error()
			if !errors.Is(err, ErrMalformedToken) {
				t.Errorf("error %q does not wrap ErrMalformedToken", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
			if want := "; want the form gn1::<CA hash: 64 lowercase hex digits>::<secret>"; !strings.HasSuffix(msg, want) {
				t.Errorf("error %q has no hint of the form", msg)
			}
			if strings.Contains(strings.ToLower(msg), "secret"+"secret") || strings.Contains(msg, "SeCrEt") {
				t.Errorf("error %q quotes the secret", msg)
			}
		})
	}
}

func TestVerifyCA(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	other := newTestCA(t, "prod", t0) // same name, another key: another cluster
	tok := newTestToken(t, ca)
	member, _, err := ca.Issue(IssueRequest{Name: "hv1", Usage: Peer, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pem  []byte
		want string // "" accepts
	}{
		{"the pinned CA", ca.CertPEM(), ""},
		{"the pinned CA after text", append([]byte("# prod CA\n"), ca.CertPEM()...), ""},
		{"another cluster's CA", other.CertPEM(), "the server's CA does not match the join token: wrong cluster, or a man in the middle; get a fresh token with 'gallium-net cluster token' on a member"},
		{"a member certificate", member, "does not match the join token"},
		{"a bundle", append(other.CertPEM(), ca.CertPEM()...), "the server's CA certificate: more than one PEM block, want the CA certificate alone"},
		{"nothing", nil, "the server's CA certificate: no PEM data"},
		{"a key", keyPEMOf(t, ca), `the server's CA certificate: PEM block is "PRIVATE KEY", want "CERTIFICATE"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tok.VerifyCA(tc.pem)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if err := tok.VerifyCA(other.CertPEM()); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("err %v, want ErrCAMismatch", err)
	}
	if err := (Token{}).VerifyCA(ca.CertPEM()); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("a zero token: err %v, want ErrCAMismatch", err)
	}
}

func TestMAC(t *testing.T) {
	ca := newTestCA(t, "prod", t0)
	tok := newTestToken(t, ca)
	otherSecret := newTestToken(t, ca)
	msg := []byte("nonce=4f2a; join hv2; csr-sha256=...")
	mac := tok.MAC(msg)
	if len(mac) != sha256.Size {
		t.Fatalf("MAC is %d bytes", len(mac))
	}
	h := hmac.New(sha256.New, []byte(tok.Secret))
	h.Write(msg)
	if !hmac.Equal(mac, h.Sum(nil)) {
		t.Error("MAC is not HMAC-SHA256 keyed by the secret")
	}
	flipped := append([]byte(nil), mac...)
	flipped[0] ^= 1
	for _, tc := range []struct {
		name string
		tok  Token
		msg  []byte
		mac  []byte
		want bool
	}{
		{"right", tok, msg, mac, true},
		{"right, parsed back from the string", mustParse(t, tok.String()), msg, mac, true},
		{"another message", tok, []byte("nonce=4f2a; join hv3"), mac, false},
		{"another secret", otherSecret, msg, mac, false},
		{"a flipped bit", tok, msg, flipped, false},
		{"truncated", tok, msg, mac[:16], false},
		{"no MAC", tok, msg, nil, false},
		{"a token without a secret and an empty-key MAC", Token{CAHash: tok.CAHash}, msg, emptyKeyMAC(msg), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tok.CheckMAC(tc.msg, tc.mac); got != tc.want {
				t.Errorf("CheckMAC = %v, want %v", got, tc.want)
			}
		})
	}
	if m := (Token{}).MAC(msg); m != nil {
		t.Errorf("MAC without a secret = %x, want nil", m)
	}
}

func emptyKeyMAC(msg []byte) []byte {
	h := hmac.New(sha256.New, nil)
	h.Write(msg)
	return h.Sum(nil)
}

func mustParse(t *testing.T, s string) Token {
	t.Helper()
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func FuzzParseToken(f *testing.F) {
	hash := strings.Repeat("0f", 32)
	for _, s := range []string{
		"gn1::" + hash + "::abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst",
		"gn1::" + hash + "::Correct-Horse_Battery.Staple~42",
		" gn1::" + hash + "::abcdefghijklmnop\n",
		"", "gn1", "gn1::", "gn1::::", "gn2::" + hash + "::abcdefghijklmnop",
		"K10" + hash + "::server:abc", "gn1::" + hash + "::abc::def",
		"gn1::" + strings.ToUpper(hash) + "::abcdefghijklmnop",
		"gn1::" + hash + "::abc def ghi jkl mno",
		"gn1::" + hash + "::\xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("ParseToken(%q): error %v does not wrap ErrMalformedToken", s, err)
			}
			if tok != (Token{}) {
				t.Fatalf("ParseToken(%q): %+v with an error", s, tok)
			}
			return
		}
		if got := tok.String(); got != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q).String() = %q: not the canonical form", s, got)
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, tok)
		}
	})
}
