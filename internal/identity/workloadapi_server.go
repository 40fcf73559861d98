package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPIServer serves the SPIFFE Workload API's X.509 calls from a
// development CA, so workloads get SVIDs without SPIRE. The Workload API is
// plaintext on a unix socket by specification: the caller is identified by
// the socket, not by TLS. Identify decides which SPIFFE ID a caller gets.
type WorkloadAPIServer struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	CA       *CA
	TTL      time.Duration
	Identify func(ctx context.Context) (spiffeid.ID, error)
}

// Register adds the Workload API to a gRPC server.
func (s *WorkloadAPIServer) Register(g *grpc.Server) {
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
}

// checkHeader enforces the Workload API's security header, which keeps
// browsers and proxies from reaching the API by accident.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// FetchX509SVID streams the caller's SVID and re-sends a fresh one at half
// its lifetime, until the caller goes away.
func (s *WorkloadAPIServer) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	if err := checkHeader(ctx); err != nil {
		return err
	}
	id, err := s.Identify(ctx)
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "no identity for this workload: %v", err)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = DefaultSVIDTTL
	}
	for {
		svid, err := s.CA.Issue(id, ttl)
		if err != nil {
			return status.Errorf(codes.Internal, "issue SVID: %v", err)
		}
		key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
		if err != nil {
			return status.Errorf(codes.Internal, "marshal key: %v", err)
		}
		resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
			SpiffeId:    id.String(),
			X509Svid:    svid.Certificates[0].Raw,
			X509SvidKey: key,
			Bundle:      s.CA.cert.Raw,
		}}}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(ttl / 2):
		}
	}
}

// FetchX509Bundles streams the CA bundle once; it does not change.
func (s *WorkloadAPIServer) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	resp := &workload.X509BundlesResponse{Bundles: map[string][]byte{s.CA.td.IDString(): s.CA.cert.Raw}}
	if err := stream.Send(resp); err != nil {
		return fmt.Errorf("send bundles: %w", err)
	}
	<-stream.Context().Done()
	return nil
}
