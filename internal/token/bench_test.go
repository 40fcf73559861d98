package token

import (
	"testing"
	"time"
)

// BenchmarkVerify: one caller token checked with its signer's certificate,
// as the first hop does for every Request (its client signs each anew).
func BenchmarkVerify(b *testing.B) {
	h := svids(b, "a", "b")
	tok, err := Sign(h[0], h[1].ID, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(tok, h[0].Certificates[0], time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse: the claims of a segment read without its signature.
func BenchmarkParse(b *testing.B) {
	h := svids(b, "a", "b")
	tok, err := Sign(h[0], h[1].ID, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}
