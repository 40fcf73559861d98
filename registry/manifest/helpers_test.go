package manifest

import (
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// checkObjects compares decoded objects field by field, protos with proto.Equal.
func checkObjects(t testing.TB, got, want []Object) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d objects, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Doc != w.Doc || g.Line != w.Line || g.Kind != w.Kind {
			t.Errorf("object %d: Doc/Line/Kind = %d/%d/%s, want %d/%d/%s", i, g.Doc, g.Line, g.Kind, w.Doc, w.Line, w.Kind)
		}
		if !sameContent(g, w) {
			t.Errorf("object %d:\n got %s\nwant %s", i, describeObject(g), describeObject(w))
		}
	}
}

// sameContent compares what an object says, not where it was read.
func sameContent(a, b Object) bool {
	return a.Kind == b.Kind &&
		(a.Service == nil) == (b.Service == nil) &&
		(a.Endpoint == nil) == (b.Endpoint == nil) &&
		proto.Equal(a.Service, b.Service) &&
		proto.Equal(a.Endpoint, b.Endpoint)
}

func describeObject(o Object) string {
	if o.Service != nil {
		return o.Kind + " " + prototext.Format(o.Service)
	}
	if o.Endpoint != nil {
		return o.Kind + " " + prototext.Format(o.Endpoint)
	}
	return o.Kind + " <empty>"
}
