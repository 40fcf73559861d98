// Package token makes and checks the path tokens NSM hops put in their
// PathSegments: JWTs signed ES256 with the hop's X.509-SVID key, `sub` the
// hop's SPIFFE ID, `aud` the next hop's, `exp` at most the maximum token
// lifetime away. A hop verifies its caller's token against the key of the
// certificate that caller presented in mTLS, and the chain of the path
// before it (aud of each segment is sub of the next, none expired).
package token

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// gRPC metadata keys NSM hops send their token under.
const (
	MDToken   = "nsm-client-token"
	MDExpires = "nsm-client-token-expires"
)

// Sentinel errors; every verification error wraps ErrInvalid.
var (
	ErrInvalid = errors.New("invalid path token")
	ErrMissing = fmt.Errorf("%w: missing", ErrInvalid)
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)
)

// Claims are the registered claims a path token carries.
type Claims struct {
	Subject  string
	Audience []string
	Expires  time.Time
}

// Sign returns the token of a hop whose identity is svid, for audience
// aud, valid until expires.
func Sign(svid *x509svid.SVID, aud spiffeid.ID, expires time.Time) (string, error) {
	if _, ok := svid.PrivateKey.Public().(*ecdsa.PublicKey); !ok {
		return "", fmt.Errorf("token: SVID key is %T; NSM path tokens are ES256 (EC P-256)", svid.PrivateKey.Public())
	}
	claims := jwt.RegisteredClaims{
		Subject:   svid.ID.String(),
		ExpiresAt: jwt.NewNumericDate(expires),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}
	if !aud.IsZero() {
		claims.Audience = jwt.ClaimStrings{aud.String()}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(svid.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return tok, nil
}

// Verify checks tok's signature with cert's public key and its expiry,
// and returns its claims.
func Verify(tok string, cert *x509.Certificate, now time.Time) (Claims, error) {
	if tok == "" {
		return Claims{}, ErrMissing
	}
	var rc jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &rc, func(t *jwt.Token) (any, error) { return cert.PublicKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired())
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, ErrExpired
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return claimsOf(rc), nil
}

// Parse reads a token's claims without checking its signature: for the
// segments before the caller's, whose signers this hop did not talk to.
func Parse(tok string) (Claims, error) {
	if tok == "" {
		return Claims{}, ErrMissing
	}
	var rc jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &rc); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return claimsOf(rc), nil
}

func claimsOf(rc jwt.RegisteredClaims) Claims {
	c := Claims{Subject: rc.Subject, Audience: rc.Audience}
	if rc.ExpiresAt != nil {
		c.Expires = rc.ExpiresAt.Time
	}
	return c
}

// CheckCaller verifies what a hop receives: the segment at prev (its
// caller's) is signed by the key of peerCert, names the peer as its subject
// and this hop (self) in its audience, and has not expired; every segment
// before it chains to the next and has not expired.
func CheckCaller(path *networkservice.Path, prev int, peerCert *x509.Certificate, self spiffeid.ID, now time.Time) error {
	return (*Cache)(nil).CheckCaller(path, prev, peerCert, self, now)
}

// CheckCaller is CheckCaller through the cache.
func (cache *Cache) CheckCaller(path *networkservice.Path, prev int, peerCert *x509.Certificate, self spiffeid.ID, now time.Time) error {
	peerID, err := x509svid.IDFromCert(peerCert)
	if err != nil {
		return fmt.Errorf("%w: caller certificate: %v", ErrInvalid, err)
	}
	return cache.checkCaller(path, prev, peerCert, peerID, self, now)
}

// checkCaller is CheckCaller with the peer's ID already read from peerCert.
func (cache *Cache) checkCaller(path *networkservice.Path, prev int, peerCert *x509.Certificate, peerID, self spiffeid.ID, now time.Time) error {
	segs := path.GetPathSegments()
	if prev < 0 || prev >= len(segs) {
		return fmt.Errorf("%w: no caller segment", ErrMissing)
	}
	c, err := cache.Verify(segs[prev].GetToken(), peerCert, now)
	if err != nil {
		return fmt.Errorf("segment %d (%s): %w", prev, segs[prev].GetName(), err)
	}
	if c.Subject != peerID.String() {
		return fmt.Errorf("%w: segment %d (%s) is for %s but the caller is %s", ErrInvalid, prev, segs[prev].GetName(), c.Subject, peerID)
	}
	if !slices.Contains(c.Audience, self.String()) {
		return fmt.Errorf("%w: segment %d (%s) is addressed to %v, not to %s", ErrInvalid, prev, segs[prev].GetName(), c.Audience, self)
	}
	return cache.CheckChain(segs[:prev+1], now)
}

// CheckChain checks that every token in segs is present, unexpired, and
// that each one's audience holds the next one's subject.
func CheckChain(segs []*networkservice.PathSegment, now time.Time) error {
	return (*Cache)(nil).CheckChain(segs, now)
}

// CheckChain is CheckChain through the cache.
func (cache *Cache) CheckChain(segs []*networkservice.PathSegment, now time.Time) error {
	var prev Claims // the segment before s (by value: a pointer escaped, one allocation per segment)
	for i, s := range segs {
		c, err := cache.Parse(s.GetToken())
		if err != nil {
			return fmt.Errorf("segment %d (%s): %w", i, s.GetName(), err)
		}
		if !c.Expires.IsZero() && !now.Before(c.Expires) {
			return fmt.Errorf("segment %d (%s): %w at %s", i, s.GetName(), ErrExpired, c.Expires.Format(time.RFC3339))
		}
		if i > 0 && !slices.Contains(prev.Audience, c.Subject) {
			return fmt.Errorf("%w: segment %d is addressed to %v but segment %d (%s) is %s", ErrInvalid, i-1, prev.Audience, i, s.GetName(), c.Subject)
		}
		prev = c
	}
	return nil
}
