package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

// registryClient is a connection to a registry for the CLI's commands.
type registryClient struct {
	ns  regapi.NetworkServiceRegistryClient
	nse regapi.NetworkServiceEndpointRegistryClient
	cc  *grpc.ClientConn
	src identity.Source
}

func addRegistryFlag(cmd *cobra.Command, addr *string) {
	cmd.Flags().StringVar(addr, "registry", "localhost:5002", "registry address (host:port or unix:///path)")
}

func dialRegistry(ctx context.Context, g *globals, addr string) (*registryClient, error) {
	src, err := g.identitySource(ctx, "cli", false)
	if err != nil {
		return nil, err
	}
	cc, err := grpcutil.Dial(addr, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		src.Close()
		return nil, err
	}
	return &registryClient{
		ns:  regapi.NewNetworkServiceRegistryClient(cc),
		nse: regapi.NewNetworkServiceEndpointRegistryClient(cc),
		cc:  cc,
		src: src,
	}, nil
}

func (c *registryClient) Close() {
	c.cc.Close()
	c.src.Close()
}

// findServices returns the services matching q (no watch).
func (c *registryClient) findServices(ctx context.Context, q *regapi.NetworkService) ([]*regapi.NetworkService, error) {
	stream, err := c.ns.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: q})
	if err != nil {
		return nil, rpcError(err)
	}
	return collect(stream, (*regapi.NetworkServiceResponse).GetNetworkService)
}

// findEndpoints returns the endpoints matching q (no watch).
func (c *registryClient) findEndpoints(ctx context.Context, q *regapi.NetworkServiceEndpoint) ([]*regapi.NetworkServiceEndpoint, error) {
	stream, err := c.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q})
	if err != nil {
		return nil, rpcError(err)
	}
	return collect(stream, (*regapi.NetworkServiceEndpointResponse).GetNetworkServiceEndpoint)
}

// collect reads a finished (non-watch) Find stream to its end.
func collect[R, T any](stream interface{ Recv() (R, error) }, get func(R) T) ([]T, error) {
	var out []T
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, rpcError(err)
		}
		out = append(out, get(resp))
	}
}

// rpcError turns a gRPC status into a one-line error for the terminal.
func rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("registry unavailable: %s", st.Message())
	default:
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
}
