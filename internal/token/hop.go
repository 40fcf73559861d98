package token

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PeerCert is the certificate the caller of a gRPC call presented.
func PeerCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "the caller presented no certificate")
	}
	return info.State.PeerCertificates[0], nil
}

// Admit is what a hop does with the path it receives: the token a caller
// sent as gRPC metadata (as NSM's clients do) is put into its segment;
// then CheckCaller. It returns the caller's SPIFFE ID, or a
// PermissionDenied status that says what is wrong.
func Admit(ctx context.Context, conn *networkservice.Connection, prev int, self spiffeid.ID) (spiffeid.ID, error) {
	return (*Cache)(nil).Admit(ctx, conn, prev, self)
}

// Admit is Admit through the cache.
func (c *Cache) Admit(ctx context.Context, conn *networkservice.Connection, prev int, self spiffeid.ID) (spiffeid.ID, error) {
	cert, err := PeerCert(ctx)
	if err != nil {
		return spiffeid.ID{}, err
	}
	caller, err := x509svid.IDFromCert(cert)
	if err != nil {
		return spiffeid.ID{}, status.Errorf(codes.Unauthenticated, "caller certificate: %v", err)
	}
	segs := conn.GetPath().GetPathSegments()
	if prev >= 0 && prev < len(segs) {
		// The token in the metadata is the caller's current one; the path
		// may hold the one of its last call (NSM's clients refresh with
		// the path they got back and a new token only in the metadata,
		// as NSM's updatetoken expects).
		if toks := metadata.ValueFromIncomingContext(ctx, MDToken); len(toks) == 1 && toks[0] != segs[prev].GetToken() {
			segs[prev].Token = toks[0]
			segs[prev].Expires = nil
			// The expiry as sent, to the nanosecond; the token's own is in
			// whole seconds, and hops after this one derive theirs from it.
			if exps := metadata.ValueFromIncomingContext(ctx, MDExpires); len(exps) == 1 {
				if t, err := time.Parse(time.RFC3339Nano, exps[0]); err == nil {
					segs[prev].Expires = timestamppb.New(t)
				}
			}
			if cl, err := c.Parse(toks[0]); err == nil && !cl.Expires.IsZero() && segs[prev].Expires == nil {
				segs[prev].Expires = timestamppb.New(cl.Expires)
			}
		}
	}
	if err := c.checkCaller(conn.GetPath(), prev, cert, caller, self, time.Now()); err != nil {
		return spiffeid.ID{}, status.Errorf(codes.PermissionDenied, "path token from %s: %v", caller, err)
	}
	return caller, nil
}

// Stamp signs a hop's own segment for the next hop aud, valid until
// expires, and returns ctx carrying the token as NSM's metadata.
func Stamp(ctx context.Context, seg *networkservice.PathSegment, svid *x509svid.SVID, aud spiffeid.ID, expires time.Time) (context.Context, error) {
	return (*Cache)(nil).Stamp(ctx, seg, svid, aud, expires)
}

// Stamp is Stamp through the cache; kv are more metadata pairs for the
// same call, added with the token (one copy of the call's metadata, not
// one per pair).
func (c *Cache) Stamp(ctx context.Context, seg *networkservice.PathSegment, svid *x509svid.SVID, aud spiffeid.ID, expires time.Time, kv ...string) (context.Context, error) {
	tok, err := c.Sign(svid, aud, expires)
	if err != nil {
		return ctx, status.Errorf(codes.Internal, "%v", err)
	}
	seg.Token = tok
	seg.Expires = timestamppb.New(expires)
	if len(svid.Certificates) > 0 {
		ctx = context.WithValue(ctx, signerKey{}, svid.Certificates[0])
	}
	return Outgoing(ctx, seg, kv...), nil
}

type signerKey struct{}

// SignedWith is the certificate whose key signed the token Stamp put in
// ctx, nil when there is none. The next hop checks that token against the
// certificate this process presented on the connection the call arrives
// on: a connection that redials when the SVID rotates uses it to send the
// call where that certificate was presented (grpcutil.Conn).
func SignedWith(ctx context.Context) *x509.Certificate {
	c, _ := ctx.Value(signerKey{}).(*x509.Certificate)
	return c
}

// Outgoing returns ctx carrying seg's token as NSM's metadata, as a hop
// sends it beside every call onward (NSM's endpoints look for it on Close
// too), and the pairs kv. A segment without a token adds only kv.
func Outgoing(ctx context.Context, seg *networkservice.PathSegment, kv ...string) context.Context {
	if seg.GetToken() != "" {
		kv = append([]string{MDToken, seg.GetToken(), MDExpires, seg.GetExpires().AsTime().UTC().Format(time.RFC3339Nano)}, kv...)
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
