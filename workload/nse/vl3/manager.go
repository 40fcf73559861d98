package vl3

import (
	"context"
	"fmt"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// Manager is the node manager's NetworkService API, as Peers uses it: the
// vL3 endpoint is a client of its own manager for its peer vWires.
type Manager interface {
	// Request establishes or refreshes a connection; the path's own
	// segment (at the path index) carries its expiry.
	Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error)
	Close(ctx context.Context, conn *networkservice.Connection) error
}

// ManagerClient is a Manager over a connection to the manager. When src is
// set it signs the endpoint's own path segment for the manager, as every
// NSM client does.
type ManagerClient struct {
	ns   networkservice.NetworkServiceClient
	peer func(context.Context) (spiffeid.ID, error)
	src  identity.Source
}

var _ Manager = (*ManagerClient)(nil)

// NewManagerClient returns a Manager over cc; src may be nil (no tokens).
func NewManagerClient(cc *grpcutil.Conn, src identity.Source) *ManagerClient {
	return &ManagerClient{ns: networkservice.NewNetworkServiceClient(cc), peer: cc.PeerID, src: src}
}

// Request implements Manager.
func (c *ManagerClient) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	if c.src != nil {
		aud, err := c.peer(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "vl3: manager: %v", err)
		}
		svid, err := c.src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "vl3: own SVID: %v", err)
		}
		path := req.GetConnection().GetPath()
		own := path.GetPathSegments()[path.GetIndex()]
		if ctx, err = token.Stamp(ctx, own, svid, aud, own.GetExpires().AsTime()); err != nil {
			return nil, err
		}
	}
	conn, err := c.ns.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	if conn.GetId() != req.GetConnection().GetId() || len(conn.GetPath().GetPathSegments()) == 0 {
		return nil, status.Errorf(codes.Internal, "vl3: the manager answered for connection %q, asked for %q",
			conn.GetId(), req.GetConnection().GetId())
	}
	return conn, nil
}

// Close implements Manager.
func (c *ManagerClient) Close(ctx context.Context, conn *networkservice.Connection) error {
	if _, err := c.ns.Close(ctx, conn); err != nil {
		return fmt.Errorf("vl3: close peer connection %s: %w", conn.GetId(), err)
	}
	return nil
}
