package regpath

import (
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/metadata"
)

func TestWireForm(t *testing.T) {
	tests := []struct {
		name   string
		header string
		index  uint32
		tokens []string
	}{
		{name: "NSM's grpcmetadata.Path", header: `{"Index":1,"PathSegments":[{"token":"a"},{"token":"b"}]}`, index: 1, tokens: []string{"a", "b"}},
		{name: "NSM's first call", header: `{"Index":0,"PathSegments":null}`},
		{name: "vwire before NSM's form", header: `{"index":1,"path_segments":[{"name":"n","token":"a"},{"token":"b"}]}`, index: 1, tokens: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok, err := FromHeader(metadata.Pairs(Key, tt.header))
			if err != nil || !ok {
				t.Fatalf("FromHeader: ok %v, err %v", ok, err)
			}
			if p.GetIndex() != tt.index || len(p.GetPathSegments()) != len(tt.tokens) {
				t.Fatalf("got index %d, %d segments; want %d, %d", p.GetIndex(), len(p.GetPathSegments()), tt.index, len(tt.tokens))
			}
			for i, s := range p.GetPathSegments() {
				if s.GetToken() != tt.tokens[i] {
					t.Errorf("segment %d token %q, want %q", i, s.GetToken(), tt.tokens[i])
				}
			}
		})
	}
}

// TestEncodeNSMKeys: NSM decodes with Go field names; "path_segments"
// would reach it as an empty path.
func TestEncodeNSMKeys(t *testing.T) {
	data, err := encode(&networkservice.Path{Index: 2, PathSegments: []*networkservice.PathSegment{{Name: "m", Token: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Index":2`, `"PathSegments":[`, `"token":"t"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	if _, err := decode("header", `{"PathSegments":[null]}`); err == nil {
		t.Error("a null segment was accepted")
	}
}
