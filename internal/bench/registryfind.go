package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store/memstore"
)

const (
	// findTarget is the service every Find asks for; findMatches
	// endpoints provide it, whatever the registry's size.
	findTarget  = "bench-target"
	findMatches = 10
	// findOtherServices spreads the other endpoints over this many services.
	findOtherServices = 1000
)

// measureFind times a registry Find of one service among many: a vwire
// registry (memory store) in this process, served over mTLS on loopback
// TCP, holding cfg.FindSizes endpoints of which findMatches provide the
// service asked for. The baseline is the same Find in a registry that
// holds only those findMatches endpoints: the fixed cost of a Find.
func measureFind(ctx context.Context, cfg Config, p *Progress) ([]Row, error) {
	const group = "find"
	dir, err := os.MkdirTemp("", "vwb-find")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srvSrc, err := identity.New(ctx, identity.Config{StateDir: dir, Component: "registry", CreateCA: true})
	if err != nil {
		return nil, err
	}
	defer srvSrc.Close()
	cliSrc, err := identity.New(ctx, identity.Config{StateDir: dir, Component: "bench"})
	if err != nil {
		return nil, err
	}
	defer cliSrc.Close()

	base, err := findLatency(ctx, srvSrc, cliSrc, findMatches, cfg.FindQueries, p)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, size := range cfg.FindSizes {
		d, err := findLatency(ctx, srvSrc, cliSrc, size, cfg.FindQueries, p)
		if err != nil {
			return nil, err
		}
		baseName := fmt.Sprintf("%d endpoints", findMatches)
		for _, pc := range []float64{50, 99} {
			rows = append(rows, Row{Group: group, Name: fmt.Sprintf("Find 1 service among %d endpoints, p%.0f", size, pc),
				Value: Millis(Percentile(d, pc)), Unit: "ms", Samples: len(d)}.WithBaseline(baseName, Millis(Percentile(base, pc))))
		}
	}
	p.Done()
	return rows, nil
}

// fill registers size endpoints through the registry's API, fillers at a
// time.
func fill(ctx context.Context, client regapi.NetworkServiceEndpointRegistryClient, size int, p *Progress) error {
	const fillers = 16
	expires := timestamppb.New(time.Now().Add(24 * time.Hour))
	eg, ctx := errgroup.WithContext(ctx)
	for f := range fillers {
		eg.Go(func() error {
			for i := f; i < size; i += fillers {
				svc := findTarget
				if i >= findMatches {
					svc = fmt.Sprintf("bench-other-%d", i%findOtherServices)
				}
				nse := &regapi.NetworkServiceEndpoint{
					Name:                fmt.Sprintf("nse-%d", i),
					NetworkServiceNames: []string{svc},
					NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{
						svc: {Labels: map[string]string{"app": "bench", "shard": fmt.Sprint(i % 16)}},
					},
					Url:            fmt.Sprintf("tcp://10.%d.%d.%d:5001", i>>16&255, i>>8&255, i&255),
					ExpirationTime: expires,
				}
				if _, err := client.Register(ctx, nse); err != nil {
					return err
				}
				p.Step()
			}
			return nil
		})
	}
	return eg.Wait()
}

// findLatency fills a new registry with size endpoints and times queries
// Finds, after a few to warm up.
func findLatency(ctx context.Context, srvSrc, cliSrc identity.Source, size, queries int, p *Progress) ([]time.Duration, error) {
	st := memstore.New()
	defer st.Close()
	srv, err := registry.New(registry.Config{Store: st, Source: srvSrc})
	if err != nil {
		return nil, err
	}
	gs := grpcutil.NewServer(srvSrc, identity.AuthorizeTrustDomain(srvSrc), slog.New(slog.DiscardHandler))
	srv.Register(gs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()
	cc, err := grpcutil.Dial("tcp://"+l.Addr().String(), cliSrc, identity.AuthorizeTrustDomain(cliSrc))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	client := regapi.NewNetworkServiceEndpointRegistryClient(cc)
	p.Stage(fmt.Sprintf("find: registering %d endpoints", size), size)
	if err := fill(ctx, client, size, p); err != nil {
		return nil, fmt.Errorf("fill the registry with %d endpoints: %w", size, err)
	}
	query := &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{findTarget}}}
	find := func() error {
		fctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		stream, err := client.Find(fctx, query)
		if err != nil {
			return err
		}
		n := 0
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			n++
		}
		if n != findMatches {
			return fmt.Errorf("find %s among %d: %d endpoints, want %d", findTarget, size, n, findMatches)
		}
		return nil
	}
	for range 3 {
		if err := find(); err != nil {
			return nil, err
		}
	}
	p.Stage(fmt.Sprintf("find: %d Finds in a registry of %d", queries, size), queries)
	out := make([]time.Duration, 0, queries)
	for range queries {
		start := time.Now()
		if err := find(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
		p.Step()
	}
	return out, nil
}
