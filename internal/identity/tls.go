package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ServerTLS is the mTLS configuration for a listener: it presents src's SVID
// and accepts clients whose SVID chains to src's bundle and passes authorize.
func ServerTLS(src Source, authorize tlsconfig.Authorizer) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(src, src, authorize)
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// ClientTLS is the mTLS configuration for a dialer.
func ClientTLS(src Source, authorize tlsconfig.Authorizer) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(src, src, authorize)
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// ServerCredentials wraps ServerTLS for gRPC.
func ServerCredentials(src Source, authorize tlsconfig.Authorizer) credentials.TransportCredentials {
	return credentials.NewTLS(ServerTLS(src, authorize))
}

// ClientCredentials wraps ClientTLS for gRPC.
func ClientCredentials(src Source, authorize tlsconfig.Authorizer) credentials.TransportCredentials {
	return credentials.NewTLS(ClientTLS(src, authorize))
}

// AuthorizeTrustDomain accepts any peer of src's own trust domain, and of
// the trust domains src federates with (Federate): the default until a
// policy file says more.
func AuthorizeTrustDomain(src Source) tlsconfig.Authorizer {
	if f, ok := src.(interface{ Federated() []spiffeid.TrustDomain }); ok {
		return authorizeFederated(src.TrustDomain(), f.Federated())
	}
	return tlsconfig.AuthorizeMemberOf(src.TrustDomain())
}

// ErrNoPeerID means a call arrived without an authenticated SPIFFE peer.
var ErrNoPeerID = errors.New("no authenticated SPIFFE peer")

// PeerID is the SPIFFE ID of the mTLS peer of a gRPC call.
func PeerID(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, ErrNoPeerID
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, ErrNoPeerID
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %v", ErrNoPeerID, err)
	}
	return id, nil
}
