package token

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// signRaw signs header.claims (JSON, as given) with svid's key: tokens
// golang-jwt would never make, to see what Verify and Parse do with them.
func signRaw(t testing.TB, svid *x509svid.SVID, header, claims string) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, svid.PrivateKey.(*ecdsa.PrivateKey), d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestVerifyEdges: what the hand-written decoder accepts and refuses.
// Every refusal wraps ErrInvalid and says what is wrong.
func TestVerifyEdges(t *testing.T) {
	h := svids(t, "a", "b")
	a := h[0]
	now := time.Now()
	exp := now.Add(time.Minute).Unix()
	es := `{"alg":"ES256","typ":"JWT"}`
	claims := func(extra string) string {
		return fmt.Sprintf(`{"sub":"spiffe://example.org/a","aud":["spiffe://example.org/b"],"exp":%d%s}`, exp, extra)
	}
	good := signRaw(t, a, es, claims(""))
	tests := []struct {
		name    string
		tok     string
		wantErr string // "" for valid
		wantAud []string
	}{
		{name: "valid", tok: good, wantAud: []string{"spiffe://example.org/b"}},
		{name: "golang-jwt's own", tok: must(Sign(a, h[1].ID, now.Add(time.Minute))), wantAud: []string{"spiffe://example.org/b"}},
		{name: "header without typ", tok: signRaw(t, a, `{"alg":"ES256"}`, claims("")), wantAud: []string{"spiffe://example.org/b"}},
		{name: "aud as one string", tok: signRaw(t, a, es, fmt.Sprintf(`{"sub":"spiffe://example.org/a","aud":"spiffe://example.org/b","exp":%d}`, exp)), wantAud: []string{"spiffe://example.org/b"}},
		{name: "fractional exp", tok: signRaw(t, a, es, fmt.Sprintf(`{"sub":"x","exp":%d.75}`, exp))},
		{name: "empty", tok: "", wantErr: "missing"},
		{name: "two parts", tok: "eyJhbGciOiJFUzI1NiJ9.e30", wantErr: "three dot-separated parts"},
		{name: "four parts", tok: good + ".x", wantErr: "three dot-separated parts"},
		{name: "header not base64", tok: "!!!." + strings.SplitN(good, ".", 2)[1], wantErr: "header"},
		{name: "header not JSON", tok: signRaw(t, a, `ES256`, claims("")), wantErr: "header"},
		{name: "header without alg", tok: signRaw(t, a, `{"typ":"JWT"}`, claims("")), wantErr: "no alg"},
		{name: "alg none", tok: unsigned(t, "spiffe://example.org/a", now.Add(time.Minute)), wantErr: `"none", want ES256`},
		{name: "alg HS256", tok: signRaw(t, a, `{"alg":"HS256"}`, claims("")), wantErr: `"HS256", want ES256`},
		{name: "critical extension", tok: signRaw(t, a, `{"alg":"ES256","crit":["b64"],"b64":false}`, claims("")), wantErr: "critical"},
		{name: "claims not JSON", tok: signRaw(t, a, es, `sub=a`), wantErr: "claims"},
		{name: "claims an array", tok: signRaw(t, a, es, `[1]`), wantErr: "claims"},
		{name: "aud a number", tok: signRaw(t, a, es, fmt.Sprintf(`{"sub":"x","aud":5,"exp":%d}`, exp)), wantErr: "aud"},
		{name: "exp a string", tok: signRaw(t, a, es, `{"sub":"x","exp":"tomorrow"}`), wantErr: "claims"},
		{name: "exp huge", tok: signRaw(t, a, es, `{"sub":"x","exp":1e300}`), wantErr: "NumericDate"},
		{name: "no exp", tok: signRaw(t, a, es, `{"sub":"x"}`), wantErr: "no exp"},
		{name: "expired", tok: signRaw(t, a, es, fmt.Sprintf(`{"sub":"x","exp":%d}`, now.Add(-time.Second).Unix())), wantErr: "expired"},
		{name: "not yet valid", tok: signRaw(t, a, es, claims(fmt.Sprintf(`,"nbf":%d`, now.Add(time.Hour).Unix()))), wantErr: "not valid before"},
		{name: "signed by another key", tok: signRaw(t, h[1], es, claims("")), wantErr: "does not match"},
		{name: "signature short", tok: good[:len(good)-4], wantErr: "not 64 bytes"},
		{name: "signature not base64", tok: good[:len(good)-2] + "*A", wantErr: "signature"},
		{name: "signature DER, not r||s", tok: good[:strings.LastIndex(good, ".")+1] + base64.RawURLEncoding.EncodeToString(make([]byte, 70)), wantErr: "not 64 bytes"},
		{name: "claims changed", tok: strings.Replace(good, strings.Split(good, ".")[1], base64.RawURLEncoding.EncodeToString([]byte(claims(`,"x":1`))), 1), wantErr: "does not match"},
	}
	for _, tt := range tests {
		for _, cache := range []*Cache{nil, NewCache()} {
			t.Run(fmt.Sprintf("%s/cache=%t", tt.name, cache != nil), func(t *testing.T) {
				c, err := cache.Verify(tt.tok, a.Certificates[0], now)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(c.Audience) != fmt.Sprint(tt.wantAud) || c.Expires.Unix() != exp {
						t.Fatalf("claims %+v", c)
					}
					return
				}
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.wantErr)
				}
			})
		}
	}
}

// FuzzParse: no input makes Parse or Verify panic; whatever Parse
// refuses, Verify refuses too, and every refusal wraps ErrInvalid.
func FuzzParse(f *testing.F) {
	h := svids(f, "a", "b")
	now := time.Now()
	f.Add(must(Sign(h[0], h[1].ID, now.Add(time.Minute))))
	f.Add(unsigned(f, "spiffe://example.org/a", now.Add(time.Minute)))
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOjV9.AA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		_, perr := Parse(tok)
		_, verr := Verify(tok, h[0].Certificates[0], now)
		if perr != nil && verr == nil {
			t.Fatalf("Parse refused (%v) what Verify accepted", perr)
		}
		if verr != nil && !errors.Is(verr, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", verr)
		}
	})
}
