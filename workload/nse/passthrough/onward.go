package passthrough

import (
	"context"
	"fmt"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// Onward is how a passthrough reaches the next hop: the node manager's
// NetworkService API, as a client.
type Onward interface {
	// Request establishes or refreshes the onward connection; the path's
	// own segment (at the path index) carries its expiry.
	Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error)
	// Close closes it.
	Close(ctx context.Context, conn *networkservice.Connection) error
}

// ManagerClient is an Onward over a connection to the manager. When src is
// set it signs the passthrough's own path segment for the manager, as
// every NSM client does.
type ManagerClient struct {
	ns   networkservice.NetworkServiceClient
	peer func(context.Context) (spiffeid.ID, error)
	src  identity.Source
}

var _ Onward = (*ManagerClient)(nil)

// NewManagerClient returns an Onward over cc; src may be nil (no tokens).
func NewManagerClient(cc *grpcutil.Conn, src identity.Source) *ManagerClient {
	return &ManagerClient{ns: networkservice.NewNetworkServiceClient(cc), peer: cc.PeerID, src: src}
}

// Request implements Onward.
func (c *ManagerClient) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	if c.src != nil {
		aud, err := c.peer(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "passthrough: manager: %v", err)
		}
		svid, err := c.src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "passthrough: own SVID: %v", err)
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
	if conn.GetId() != req.GetConnection().GetId() {
		return nil, status.Errorf(codes.Internal, "passthrough: the manager answered for connection %q, asked for %q",
			conn.GetId(), req.GetConnection().GetId())
	}
	return conn, nil
}

// Close implements Onward.
func (c *ManagerClient) Close(ctx context.Context, conn *networkservice.Connection) error {
	if _, err := c.ns.Close(ctx, conn); err != nil {
		return fmt.Errorf("close onward connection %s: %w", conn.GetId(), err)
	}
	return nil
}

// expiresAfter is the expiry to give the onward segment: the incoming
// connection's previous hop's, so that the onward connection lives exactly
// as long as the incoming one unless refreshed with it; ttl from now when
// the path does not say.
func expiresAfter(conn *networkservice.Connection, now time.Time, ttl time.Duration) time.Time {
	path := conn.GetPath()
	if i := int(path.GetIndex()); i > 0 && i <= len(path.GetPathSegments()) {
		if e := path.GetPathSegments()[i-1].GetExpires(); e != nil && e.AsTime().After(now) {
			return e.AsTime()
		}
	}
	return now.Add(ttl)
}
