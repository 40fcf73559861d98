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

// FromIncoming returns the path a registry call carries, if any.
func FromIncoming(ctx context.Context) (*networkservice.Path, bool, error) {
	vals := metadata.ValueFromIncomingContext(ctx, Key)
	if len(vals) == 0 {
		return nil, false, nil
	}
	p := &networkservice.Path{}
	if err := json.Unmarshal([]byte(vals[0]), p); err != nil {
		return nil, true, fmt.Errorf("metadata %q: %w", Key, err)
	}
	return p, true, nil
}

// Outgoing returns ctx carrying path for a registry call.
func Outgoing(ctx context.Context, p *networkservice.Path) (context.Context, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return ctx, fmt.Errorf("encode path: %w", err)
	}
	return metadata.AppendToOutgoingContext(ctx, Key, string(data)), nil
}

// SetHeader returns the updated path to the caller of a unary call.
func SetHeader(ctx context.Context, p *networkservice.Path) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode path: %w", err)
	}
	return grpc.SetHeader(ctx, metadata.Pairs(Key, string(data)))
}

// FromHeader reads the path a server returned in its header.
func FromHeader(md metadata.MD) (*networkservice.Path, bool, error) {
	vals := md.Get(Key)
	if len(vals) == 0 {
		return nil, false, nil
	}
	p := &networkservice.Path{}
	if err := json.Unmarshal([]byte(vals[0]), p); err != nil {
		return nil, true, fmt.Errorf("header %q: %w", Key, err)
	}
	return p, true, nil
}
