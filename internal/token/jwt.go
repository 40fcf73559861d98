package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// A path token's JWS compact form, decoded here rather than by a general
// JWT library: a hop reads only the registered claims NSM's tokens carry,
// into a typed struct, and checks only ES256. golang-jwt decoded the
// header into a map and the claims twice per caller token (once to read
// them, once more to verify them); this decodes them once, and the
// verification reuses the claims the cache holds (see Cache.Verify).

// es256Header is the header every ES256 token golang-jwt (ours, NSM's sdk)
// signs carries, base64url: {"alg":"ES256","typ":"JWT"}. Other headers are
// decoded and checked field by field.
const es256Header = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"

// b64 is base64url without padding, rejecting non-canonical encodings
// (set padding bits): one token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// header is the JOSE header fields a hop looks at.
type header struct {
	Alg  string   `json:"alg"`
	Crit []string `json:"crit"`
}

// claimSet is the registered claims a path token may carry.
type claimSet struct {
	Sub string       `json:"sub"`
	Aud audience     `json:"aud"`
	Exp *numericDate `json:"exp"`
	Nbf *numericDate `json:"nbf"`
}

// audience is aud: one string or an array of strings (RFC 7519 4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = ss
	return nil
}

// numericDate is a JWT NumericDate: seconds since the epoch, maybe with a
// fraction, kept to the second as golang-jwt does.
type numericDate struct{ time.Time }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	f, err := json.Number(b).Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
		return fmt.Errorf("not a NumericDate: %.20s", b)
	}
	d.Time = time.Unix(int64(f), 0)
	return nil
}

// splitToken returns a compact JWS's three base64url parts.
func splitToken(tok string) (head, claims, sig string, err error) {
	head, rest, ok1 := strings.Cut(tok, ".")
	claims, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return "", "", "", errors.New("not a JWT: want three dot-separated parts")
	}
	return head, claims, sig, nil
}

// decode reads a token's header and claims, without its signature. The
// header must be a JSON object with an alg and no extension this code
// would have to understand (crit).
func decode(tok string) (Claims, error) {
	head, claims, _, err := splitToken(tok)
	if err != nil {
		return Claims{}, err
	}
	if _, err := algOf(head); err != nil {
		return Claims{}, err
	}
	raw, err := b64.DecodeString(claims)
	if err != nil {
		return Claims{}, fmt.Errorf("claims: %w", err)
	}
	var cs claimSet
	if err := json.Unmarshal(raw, &cs); err != nil {
		return Claims{}, fmt.Errorf("claims: %w", err)
	}
	c := Claims{Subject: cs.Sub, Audience: cs.Aud}
	if cs.Exp != nil {
		c.Expires = cs.Exp.Time
	}
	if cs.Nbf != nil {
		c.NotBefore = cs.Nbf.Time
	}
	return c, nil
}

// algOf is the alg of a token's base64url header.
func algOf(head string) (string, error) {
	if head == es256Header {
		return "ES256", nil
	}
	raw, err := b64.DecodeString(head)
	if err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	if h.Alg == "" {
		return "", errors.New("header: no alg")
	}
	if len(h.Crit) > 0 {
		return "", fmt.Errorf("header: unsupported critical extensions %q", h.Crit)
	}
	return h.Alg, nil
}

// checkES256 verifies tok's ES256 signature with cert's public key.
func checkES256(tok string, cert *x509.Certificate) error {
	head, claims, sig, err := splitToken(tok)
	if err != nil {
		return err
	}
	alg, err := algOf(head)
	if err != nil {
		return err
	}
	if alg != "ES256" {
		return fmt.Errorf("signing method %q, want ES256", alg)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("certificate key is %T, not EC P-256", cert.PublicKey)
	}
	var raw [64]byte // r and s, 32 bytes each (RFC 7518 3.4)
	if b64.DecodedLen(len(sig)) != len(raw) {
		return errors.New("signature: not 64 bytes")
	}
	if _, err := b64.Decode(raw[:], []byte(sig)); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(tok[:len(head)+1+len(claims)]))
	r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return errors.New("signature does not match the caller's key")
	}
	return nil
}
