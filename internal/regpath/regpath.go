// Package regpath carries a connection path on registry calls, which have
// no path field: NSM sends it as JSON in the gRPC metadata key "path" and
// returns the updated path in the response header "path". A manager that
// registers an endpoint adds its own signed segment, so the registry can
// apply its policy to the endpoint that asked, not to the manager.
package regpath

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Key is the metadata key (request) and header key (response).
const Key = "path"

// wirePath is the JSON NSM's sdk reads and writes (its registry
// grpcmetadata.Path): the Go field names "Index" and "PathSegments", each
// segment with at least "token". vwire's name, id and expires ride along in
// the same objects; NSM ignores them.
type wirePath struct {
	Index        uint32                        `json:"Index"`
	PathSegments []*networkservice.PathSegment `json:"PathSegments"`
}

// readPath also accepts "path_segments", which vwire sent before it spoke
// NSM's form (a peer of an older build).
type readPath struct {
	Index        uint32                        `json:"Index"`
	PathSegments []*networkservice.PathSegment `json:"PathSegments"`
	Legacy       []*networkservice.PathSegment `json:"path_segments"`
}

func encode(p *networkservice.Path) ([]byte, error) {
	data, err := json.Marshal(wirePath{Index: p.GetIndex(), PathSegments: p.GetPathSegments()})
	if err != nil {
		return nil, fmt.Errorf("encode path: %w", err)
	}
	return data, nil
}

func decode(what, s string) (*networkservice.Path, error) {
	var w readPath
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, Key, err)
	}
	segs := w.PathSegments
	if len(segs) == 0 {
		segs = w.Legacy
	}
	for i, s := range segs {
		if s == nil {
			return nil, fmt.Errorf("%s %q: segment %d is null", what, Key, i)
		}
	}
	return &networkservice.Path{Index: w.Index, PathSegments: segs}, nil
}

// FromIncoming returns the path a registry call carries, if any.
func FromIncoming(ctx context.Context) (*networkservice.Path, bool, error) {
	vals := metadata.ValueFromIncomingContext(ctx, Key)
	if len(vals) == 0 {
		return nil, false, nil
	}
	// NSM's clients append: the last value is the current one.
	p, err := decode("metadata", vals[len(vals)-1])
	return p, true, err
}

// Outgoing returns ctx carrying path for a registry call.
func Outgoing(ctx context.Context, p *networkservice.Path) (context.Context, error) {
	data, err := encode(p)
	if err != nil {
		return ctx, err
	}
	return metadata.AppendToOutgoingContext(ctx, Key, string(data)), nil
}

// SetHeader returns the updated path to the caller of a unary call.
func SetHeader(ctx context.Context, p *networkservice.Path) error {
	data, err := encode(p)
	if err != nil {
		return err
	}
	return grpc.SetHeader(ctx, metadata.Pairs(Key, string(data)))
}

// SendHeader sends the path to the caller of a streaming call at once (a
// watching Find may send nothing else for a long time).
func SendHeader(ctx context.Context, p *networkservice.Path) error {
	data, err := encode(p)
	if err != nil {
		return err
	}
	return grpc.SendHeader(ctx, metadata.Pairs(Key, string(data)))
}

// FromHeader reads the path a server returned in its header.
func FromHeader(md metadata.MD) (*networkservice.Path, bool, error) {
	vals := md.Get(Key)
	if len(vals) == 0 {
		return nil, false, nil
	}
	p, err := decode("header", vals[len(vals)-1])
	return p, true, err
}
