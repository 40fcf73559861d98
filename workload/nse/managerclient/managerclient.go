// Package managerclient is an endpoint's client of its own node manager's
// NetworkService API: what endpoints that request onward (a passthrough, a
// vL3 connecting to its peers) use. It signs the endpoint's own path
// segment for the manager, as every NSM client does, and checks that the
// answer is for the connection asked.
package managerclient

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

// Manager is the manager's NetworkService API as an endpoint uses it.
type Manager interface {
	// Request establishes or refreshes a connection; the path's own
	// segment (at the path index) carries its expiry.
	Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error)
	// Close closes it.
	Close(ctx context.Context, conn *networkservice.Connection) error
}

// Client is a Manager over a connection to the manager.
type Client struct {
	who  string // names the caller in errors: "passthrough", "vl3"
	ns   networkservice.NetworkServiceClient
	peer func(context.Context) (spiffeid.ID, error)
	src  identity.Source
}

var _ Manager = (*Client)(nil)

// New returns a Client over cc for the endpoint who; src may be nil (no
// tokens).
func New(who string, cc *grpcutil.Conn, src identity.Source) *Client {
	return &Client{who: who, ns: networkservice.NewNetworkServiceClient(cc), peer: cc.PeerID, src: src}
}

// Request implements Manager.
func (c *Client) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	if c.src != nil {
		aud, err := c.peer(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%s: manager: %v", c.who, err)
		}
		svid, err := c.src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%s: own SVID: %v", c.who, err)
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
		return nil, status.Errorf(codes.Internal, "%s: the manager answered for connection %q, asked for %q",
			c.who, conn.GetId(), req.GetConnection().GetId())
	}
	return conn, nil
}

// Close implements Manager.
func (c *Client) Close(ctx context.Context, conn *networkservice.Connection) error {
	if _, err := c.ns.Close(ctx, conn); err != nil {
		return fmt.Errorf("%s: close connection %s: %w", c.who, conn.GetId(), err)
	}
	return nil
}
