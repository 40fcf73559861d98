package regpath

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// registerMethod is the NSE registry's Register.
const registerMethod = "/registry.NetworkServiceEndpointRegistry/Register"

// registrationLifetime bounds the token a registrant signs.
const registrationLifetime = 10 * time.Minute

// SignRegistrations is a client interceptor for workloads that register
// endpoints (NSM endpoints, forwarders): each Register carries a path whose
// first segment, signed by the workload for the server (peer), names the
// endpoint, so every hop after it knows who asked.
func SignRegistrations(src identity.Source, peer func(context.Context) (spiffeid.ID, error)) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		nse, ok := req.(*regapi.NetworkServiceEndpoint)
		if !ok || method != registerMethod {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		aud, err := peer(ctx)
		if err != nil {
			return err
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			return err
		}
		seg := &networkservice.PathSegment{Name: nse.GetName(), Id: uuid.NewString()}
		if ctx, err = token.Stamp(ctx, seg, svid, aud, time.Now().Add(registrationLifetime)); err != nil {
			return err
		}
		if ctx, err = Outgoing(ctx, &networkservice.Path{PathSegments: []*networkservice.PathSegment{seg}}); err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// DialRegistrant dials a manager for a workload that registers endpoints:
// its registrations are signed with SignRegistrations.
func DialRegistrant(target string, src identity.Source, authorize tlsconfig.Authorizer) (*grpcutil.Conn, error) {
	var c *grpcutil.Conn
	peer := func(ctx context.Context) (spiffeid.ID, error) { return c.PeerID(ctx) }
	c, err := grpcutil.DialPeer(target, src, authorize, grpc.WithChainUnaryInterceptor(SignRegistrations(src, peer)))
	return c, err
}
