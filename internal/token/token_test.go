package token

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/vwire/vwire/internal/identity"
)

func svids(t *testing.T, names ...string) []*x509svid.SVID {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509svid.SVID
	for _, n := range names {
		s, err := ca.Issue(spiffeid.RequireFromString("spiffe://example.org/"+n), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// path makes a path whose segment i is signed by hops[i] for hops[i+1],
// the last one for next.
func path(t *testing.T, hops []*x509svid.SVID, next spiffeid.ID, exp time.Time) *networkservice.Path {
	t.Helper()
	p := &networkservice.Path{}
	for i, h := range hops {
		aud := next
		if i+1 < len(hops) {
			aud = hops[i+1].ID
		}
		tok, err := Sign(h, aud, exp)
		if err != nil {
			t.Fatal(err)
		}
		p.PathSegments = append(p.PathSegments, &networkservice.PathSegment{Name: h.ID.Path(), Token: tok})
	}
	return p
}

func TestCheckCaller(t *testing.T) {
	h := svids(t, "nsc", "manager", "forwarder")
	nsc, mgr, fwd := h[0], h[1], h[2]
	other := svids(t, "nsc")[0] // same name, another CA: another key
	now := time.Now()
	good := func() *networkservice.Path { return path(t, []*x509svid.SVID{nsc, mgr}, fwd.ID, now.Add(time.Minute)) }
	tests := []struct {
		name    string
		path    func() *networkservice.Path
		prev    int
		peer    *x509svid.SVID
		self    spiffeid.ID
		wantErr string
	}{
		{name: "valid", path: good, prev: 1, peer: mgr, self: fwd.ID},
		{name: "unsigned", path: func() *networkservice.Path { p := good(); p.PathSegments[1].Token = ""; return p }, prev: 1, peer: mgr, self: fwd.ID, wantErr: "missing"},
		{name: "expired", path: func() *networkservice.Path { return path(t, []*x509svid.SVID{nsc, mgr}, fwd.ID, now.Add(-time.Second)) }, prev: 1, peer: mgr, self: fwd.ID, wantErr: "expired"},
		{name: "tampered", path: func() *networkservice.Path {
			p := good()
			parts := strings.Split(p.PathSegments[1].Token, ".")
			parts[1] = parts[1][:len(parts[1])-2] + "AA"
			p.PathSegments[1].Token = strings.Join(parts, ".")
			return p
		}, prev: 1, peer: mgr, self: fwd.ID, wantErr: "invalid"},
		{name: "signed by someone else than the caller", path: good, prev: 1, peer: nsc, self: fwd.ID, wantErr: "invalid"},
		{name: "not addressed to us", path: good, prev: 1, peer: mgr, self: nsc.ID, wantErr: "addressed to"},
		{name: "mis-chained", path: func() *networkservice.Path {
			p := good()
			tok, _ := Sign(nsc, fwd.ID, now.Add(time.Minute)) // the client addressed the forwarder, not the manager
			p.PathSegments[0].Token = tok
			return p
		}, prev: 1, peer: mgr, self: fwd.ID, wantErr: "addressed to"},
		{name: "a forged earlier segment", path: func() *networkservice.Path {
			p := good()
			p.PathSegments[0].Token = "not.a.jwt"
			return p
		}, prev: 1, peer: mgr, self: fwd.ID, wantErr: "segment 0"},
		{name: "caller's own key differs", path: func() *networkservice.Path { return path(t, []*x509svid.SVID{other}, mgr.ID, now.Add(time.Minute)) }, prev: 0, peer: nsc, self: mgr.ID, wantErr: "invalid"},
		{name: "no caller segment", path: good, prev: 5, peer: mgr, self: fwd.ID, wantErr: "missing"},
	}
	// Without a cache, and twice through one cache shared by every case
	// (the second time every token the first verified is in it): the
	// same answers.
	shared := NewCache()
	for _, tt := range tests {
		for _, cache := range []*Cache{nil, shared, shared} {
			t.Run(fmt.Sprintf("%s/cache=%t", tt.name, cache != nil), func(t *testing.T) {
				err := cache.CheckCaller(tt.path(), tt.prev, tt.peer.Certificates[0], tt.self, now)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.wantErr)
				}
			})
		}
	}
}

func TestSignClaims(t *testing.T) {
	h := svids(t, "a", "b")
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	tok, err := Sign(h[0], h[1].ID, exp)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, h[0].Certificates[0], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "spiffe://example.org/a" || len(c.Audience) != 1 || c.Audience[0] != "spiffe://example.org/b" || !c.Expires.Equal(exp) {
		t.Fatalf("claims %+v", c)
	}
	if !strings.HasPrefix(tok, "eyJhbGciOiJFUzI1NiIs") { // {"alg":"ES256",
		t.Fatalf("not ES256: %s", tok[:20])
	}
}

// TestCacheSign: one token per SVID, audience and expiry second, valid as
// signed; another audience, second or SVID signs anew.
func TestCacheSign(t *testing.T) {
	h := svids(t, "a", "b", "c")
	rotated := svids(t, "a")[0]
	c := NewCache()
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	tok, err := c.Sign(h[0], h[1].ID, exp.Add(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Sign(h[0], h[1].ID, exp.Add(900*time.Millisecond)); again != tok {
		t.Fatal("the same second signed anew")
	}
	cl, err := Verify(tok, h[0].Certificates[0], time.Now())
	if err != nil || !cl.Expires.Equal(exp) || cl.Audience[0] != h[1].ID.String() {
		t.Fatalf("cached token: %+v, %v", cl, err)
	}
	for name, other := range map[string]func() (string, error){
		"audience": func() (string, error) { return c.Sign(h[0], h[2].ID, exp) },
		"second":   func() (string, error) { return c.Sign(h[0], h[1].ID, exp.Add(time.Second)) },
		"svid":     func() (string, error) { return c.Sign(rotated, h[1].ID, exp) },
	} {
		if o, err := other(); err != nil || o == tok {
			t.Fatalf("another %s: the same token (%v)", name, err)
		}
	}
	if _, err := Verify(must(c.Sign(rotated, h[1].ID, exp)), h[0].Certificates[0], time.Now()); err == nil {
		t.Fatal("the rotated SVID's token verified with the old key")
	}
}

// TestCacheVerify: a verified token is remembered for its certificate
// only, and is refused once it has expired; a bad one is never
// remembered.
func TestCacheVerify(t *testing.T) {
	h := svids(t, "a", "b")
	c := NewCache()
	now := time.Now()
	exp := now.Add(time.Minute)
	tok, err := Sign(h[0], h[1].ID, exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(tok, h[0].Certificates[0], now); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(tok, h[1].Certificates[0], now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("verified with another key: %v", err)
	}
	if _, err := c.Verify(tok, h[0].Certificates[0], exp.Add(time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	for range 2 {
		if _, err := c.Verify(tok+"x", h[0].Certificates[0], now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("tampered token: %v", err)
		}
	}
}

// TestCacheBounded: the cache never holds more than cacheEntries tokens.
func TestCacheBounded(t *testing.T) {
	c := NewCache()
	now := time.Now()
	for i := range cacheEntries + 10 {
		// Not signed (Parse does not check): only the claims matter here.
		tok := unsigned(t, fmt.Sprintf("spiffe://example.org/%d", i), now.Add(time.Hour))
		if _, err := c.Parse(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.parsed); n > cacheEntries {
		t.Fatalf("%d entries", n)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func unsigned(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(exp)}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
