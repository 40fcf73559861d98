package vpp

import (
	"strings"
	"testing"
)

func TestTags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		role   string
		id     string
		hashed bool
	}{
		{name: "uuid", role: roleIn, id: "0f8c5b2e-9a41-4c7b-8a55-3d2f1e6b7c90"},
		{name: "long id", role: roleOut, id: strings.Repeat("x", 80), hashed: true},
		{name: "nul", role: roleIn, id: "a\x00b", hashed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := tagOf(tc.role, tc.id).String()
			if len(tag) > MaxTagLen {
				t.Fatalf("tag %q is %d bytes", tag, len(tag))
			}
			got, ok := ParseTag(tag)
			if !ok || got.Role != tc.role || got.Key != tagKey(tc.id) {
				t.Fatalf("ParseTag(%q) = %+v, %v", tag, got, ok)
			}
			if (got.Key != tc.id) != tc.hashed {
				t.Fatalf("key %q for id %q", got.Key, tc.id)
			}
			if n := linkName(tc.role, got.Key); len(n) > 15 {
				t.Fatalf("link name %q too long", n)
			}
		})
	}
	for _, bad := range []string{"", "vwire/", "vwire/in", "vwire/in/", "other/in/x", "vwire//x"} {
		if _, ok := ParseTag(bad); ok {
			t.Errorf("ParseTag(%q) accepted", bad)
		}
	}
	if tagOf(roleUplink, strings.Repeat("u", 50)).String() == "" {
		t.Fatal("empty uplink tag")
	}
}
