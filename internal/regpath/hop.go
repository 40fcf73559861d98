package regpath

import (
	"context"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/connpath"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// Hop is a registry call as seen by one hop (manager or registry).
type Hop struct {
	// Path is the call's path with this hop's segment in it.
	Path *networkservice.Path
	// Origin is who asked: the first segment's subject when the call came
	// with a path (each hop verified the one before it), else the caller.
	Origin spiffeid.ID
	hop    connpath.Hop
}

// Enter admits an incoming registry call at the hop named name whose own
// SPIFFE ID is self. A call with a path must carry a valid token chain
// ending in the caller; one without starts a path here.
func Enter(ctx context.Context, name string, self spiffeid.ID, lifetime time.Duration) (*Hop, error) {
	peer, err := identity.PeerID(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "%v", err)
	}
	p, ok, err := FromIncoming(ctx)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if !ok || len(p.GetPathSegments()) == 0 {
		conn := &networkservice.Connection{}
		hop, _ := connpath.Enter(conn, name)
		connpath.SetExpires(hop.Segment, time.Now().Add(lifetime))
		return &Hop{Path: conn.Path, Origin: peer, hop: hop}, nil
	}
	conn := &networkservice.Connection{Path: p}
	hop, err := connpath.Enter(conn, name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "path: %v", err)
	}
	if _, err := token.Admit(ctx, conn, hop.PrevIndex, self); err != nil {
		return nil, err
	}
	connpath.SetExpires(hop.Segment, connpath.Expiry(hop.Prev(conn), time.Now(), lifetime))
	c, err := token.Parse(p.GetPathSegments()[0].GetToken())
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "path: %v", err)
	}
	origin, err := spiffeid.FromString(c.Subject)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "path: first segment's subject %q: %v", c.Subject, err)
	}
	return &Hop{Path: p, Origin: origin, hop: hop}, nil
}

// Forward signs this hop's segment for the next hop aud and returns ctx
// carrying the path and token.
func (h *Hop) Forward(ctx context.Context, src identity.Source, aud spiffeid.ID) (context.Context, error) {
	svid, err := src.GetX509SVID()
	if err != nil {
		return ctx, status.Errorf(codes.Internal, "own SVID: %v", err)
	}
	if ctx, err = token.Stamp(ctx, h.hop.Segment, svid, aud, h.hop.Segment.GetExpires().AsTime()); err != nil {
		return ctx, err
	}
	return Outgoing(ctx, h.Path)
}

// Reply signs this hop's segment for the caller (when this is the last
// hop) and returns the path in the response header.
func (h *Hop) Reply(ctx context.Context, src identity.Source, signForCaller bool) error {
	if signForCaller {
		peer, err := identity.PeerID(ctx)
		if err != nil {
			return status.Errorf(codes.Unauthenticated, "%v", err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			return status.Errorf(codes.Internal, "own SVID: %v", err)
		}
		if _, err := token.Stamp(ctx, h.hop.Segment, svid, peer, h.hop.Segment.GetExpires().AsTime()); err != nil {
			return err
		}
	}
	p := &networkservice.Path{Index: uint32(max(h.hop.PrevIndex, 0)), PathSegments: h.Path.GetPathSegments()}
	return SetHeader(ctx, p)
}
