package regpath

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
// ending in the caller. A call without one starts a path: with the
// caller's segment first when it sent its token as metadata (NSM's
// registry clients do: their first path is empty), else at this hop.
func Enter(ctx context.Context, name string, self spiffeid.ID, lifetime time.Duration) (*Hop, error) {
	peer, err := identity.PeerID(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "%v", err)
	}
	p, ok, err := FromIncoming(ctx)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	mdToken := metadata.ValueFromIncomingContext(ctx, token.MDToken)
	if (!ok || len(p.GetPathSegments()) == 0) && len(mdToken) == 0 {
		conn := &networkservice.Connection{}
		hop, _ := connpath.Enter(conn, name)
		connpath.SetExpires(hop.Segment, time.Now().Add(lifetime))
		return &Hop{Path: conn.Path, Origin: peer, hop: hop}, nil
	}
	if !ok || len(p.GetPathSegments()) == 0 {
		// The caller's segment, which token.Admit fills from the metadata.
		p = &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: peer.String(), Id: uuid.NewString()}}}
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

// Carried reports whether an incoming call carries a path or a path token
// (NSM's registry clients send their token on every call): vwire's own
// lookups carry neither, and a Find answers them without signing a path.
func Carried(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(Key)) > 0 || len(md.Get(token.MDToken)) > 0
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

// Adopt takes the path the next hop returned in its header (hdr): it holds
// our segments and the next hop's own, which the caller's token policies
// check as a chain. A header without a path, or one that does not extend
// ours, leaves the path as it was.
func (h *Hop) Adopt(hdr metadata.MD) {
	p, ok, err := FromHeader(hdr)
	if !ok || err != nil || len(p.GetPathSegments()) <= h.hop.Index {
		return
	}
	segs := p.GetPathSegments()
	for i := 0; i <= h.hop.Index; i++ {
		if segs[i].GetToken() != h.Path.GetPathSegments()[i].GetToken() {
			return
		}
	}
	h.Path.PathSegments = segs
	h.hop.Segment = segs[h.hop.Index]
}

// IDs returns the SPIFFE ID of each segment's signer, in path order: what
// NSM calls path_ids (its registry clients check that the first is
// theirs when they refresh or unregister).
func (h *Hop) IDs() []string {
	segs := h.Path.GetPathSegments()
	ids := make([]string, 0, len(segs))
	for _, s := range segs {
		c, err := token.Parse(s.GetToken())
		if err != nil {
			break
		}
		ids = append(ids, c.Subject)
	}
	return ids
}

// Reply signs this hop's segment for the caller (when this is the last
// hop) and returns the path in the response header.
func (h *Hop) Reply(ctx context.Context, src identity.Source, signForCaller bool) error {
	p, err := h.reply(ctx, src, signForCaller)
	if err != nil {
		return err
	}
	return SetHeader(ctx, p)
}

// ReplyStream is Reply for a streaming call: the header goes at once.
func (h *Hop) ReplyStream(ctx context.Context, src identity.Source) error {
	p, err := h.reply(ctx, src, true)
	if err != nil {
		return err
	}
	return SendHeader(ctx, p)
}

func (h *Hop) reply(ctx context.Context, src identity.Source, signForCaller bool) (*networkservice.Path, error) {
	if signForCaller {
		peer, err := identity.PeerID(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "%v", err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "own SVID: %v", err)
		}
		if _, err := token.Stamp(ctx, h.hop.Segment, svid, peer, h.hop.Segment.GetExpires().AsTime()); err != nil {
			return nil, err
		}
	}
	// The caller's index, as NSM's hops answer.
	return &networkservice.Path{Index: uint32(max(h.hop.PrevIndex, 0)), PathSegments: h.Path.GetPathSegments()}, nil
}
