package token

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Cache spares a hop the ES256 signatures and verifications, and the JSON
// decoding, it has already done. One belongs to each hop (manager,
// forwarder, endpoint); a nil *Cache caches nothing. What it keeps:
//
//   - signed: the token this hop signed with one SVID (the same
//     certificate, not merely the same ID: a rotated SVID signs anew) for
//     one audience and one expiry second. A token's claims are sub, aud,
//     exp in whole seconds (and iat), so every call in that second would
//     sign the same statement; it is reused until it expires.
//   - verified: tokens whose signature checked out against the key of one
//     peer certificate (the very certificate of a TLS connection, so a new
//     connection verifies again), until the token expires. Expiry, subject
//     and audience are checked on every call, as without the cache.
//   - parsed: the claims of path segments read without their signature
//     (the hops before the caller), until they expire.
//
// Each map holds at most cacheEntries; when full, expired entries go, and
// if that is not enough, half of the rest.
type Cache struct {
	mu       sync.Mutex // guards the maps
	signed   map[signKey]string
	verified map[verifyKey]Claims
	parsed   map[string]Claims
}

const cacheEntries = 4096

type signKey struct {
	cert *x509.Certificate
	aud  spiffeid.ID
	exp  int64 // unix seconds: a token's exp has no finer grain
}

type verifyKey struct {
	tok  string
	cert *x509.Certificate
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{signed: map[signKey]string{}, verified: map[verifyKey]Claims{}, parsed: map[string]Claims{}}
}

// Sign is Sign, reusing the token of an earlier call with the same SVID,
// audience and expiry second.
func (c *Cache) Sign(svid *x509svid.SVID, aud spiffeid.ID, expires time.Time) (string, error) {
	if c == nil || len(svid.Certificates) == 0 {
		return Sign(svid, aud, expires)
	}
	k := signKey{cert: svid.Certificates[0], aud: aud, exp: expires.Unix()}
	now := time.Now()
	c.mu.Lock()
	tok, ok := c.signed[k]
	c.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := Sign(svid, aud, expires)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if len(c.signed) >= cacheEntries {
		prune(c.signed, func(k signKey) bool { return k.exp <= now.Unix() })
	}
	c.signed[k] = tok
	c.mu.Unlock()
	return tok, nil
}

// Verify is Verify, without checking again a signature this cache saw
// verified with the same certificate.
func (c *Cache) Verify(tok string, cert *x509.Certificate, now time.Time) (Claims, error) {
	if c == nil {
		return Verify(tok, cert, now)
	}
	k := verifyKey{tok: tok, cert: cert}
	c.mu.Lock()
	cl, ok := c.verified[k]
	c.mu.Unlock()
	if ok {
		if !now.Before(cl.Expires) {
			return Claims{}, ErrExpired
		}
		return cl, nil
	}
	cl, err := Verify(tok, cert, now)
	if err != nil {
		return Claims{}, err
	}
	c.mu.Lock()
	if len(c.verified) >= cacheEntries {
		prune(c.verified, func(k verifyKey) bool { return !now.Before(c.verified[k].Expires) })
	}
	c.verified[k] = cl
	if len(c.parsed) < cacheEntries {
		c.parsed[tok] = cl // the chain check reads it again
	}
	c.mu.Unlock()
	return cl, nil
}

// Parse is Parse, remembering the claims of tokens that expire.
func (c *Cache) Parse(tok string) (Claims, error) {
	if c == nil {
		return Parse(tok)
	}
	c.mu.Lock()
	cl, ok := c.parsed[tok]
	c.mu.Unlock()
	if ok {
		return cl, nil
	}
	cl, err := Parse(tok)
	if err != nil || cl.Expires.IsZero() {
		return cl, err
	}
	now := time.Now()
	c.mu.Lock()
	if len(c.parsed) >= cacheEntries {
		prune(c.parsed, func(k string) bool { return !now.Before(c.parsed[k].Expires) })
	}
	c.parsed[tok] = cl
	c.mu.Unlock()
	return cl, nil
}

// prune removes the entries stale reports; if that leaves m at least half
// full, it removes half of the rest (map order is random).
func prune[K comparable, V any](m map[K]V, stale func(K) bool) {
	for k := range m {
		if stale(k) {
			delete(m, k)
		}
	}
	n := len(m) - cacheEntries/2
	for k := range m {
		if n <= 0 {
			break
		}
		delete(m, k)
		n--
	}
}
