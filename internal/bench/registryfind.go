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
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore"
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
// registry in this process, served over mTLS on loopback TCP, holding
// cfg.FindSizes endpoints of which findMatches provide the service asked
// for; on the memory store, and on the etcd store when cfg.FindEtcd names
// an etcd cluster. The baseline is the same Find in a registry on the same
// store that holds only those findMatches endpoints: the fixed cost of a
// Find.
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

	type findStore struct {
		name string // in the row, after "Find"
		open func(ctx context.Context) (store.Store, error)
	}
	stores := []findStore{{name: "", open: func(context.Context) (store.Store, error) { return memstore.New(), nil }}}
	var rows []Row
	if len(cfg.FindEtcd) == 0 {
		rows = append(rows, Skip(group, "Find on the etcd store", "no etcd: set ETCD_ENDPOINTS"))
	} else {
		stores = append(stores, findStore{name: " (etcd store)", open: func(ctx context.Context) (store.Store, error) {
			return openEtcd(ctx, cfg.FindEtcd)
		}})
	}
	for _, st := range stores {
		base, err := findLatency(ctx, st.open, srvSrc, cliSrc, findMatches, cfg.FindQueries, p)
		if err != nil {
			return rows, err
		}
		for _, size := range cfg.FindSizes {
			d, err := findLatency(ctx, st.open, srvSrc, cliSrc, size, cfg.FindQueries, p)
			if err != nil {
				return rows, err
			}
			baseName := fmt.Sprintf("%d endpoints", findMatches)
			for _, pc := range []float64{50, 99} {
				rows = append(rows, Row{Group: group, Name: fmt.Sprintf("Find%s 1 service among %d endpoints, p%.0f", st.name, size, pc),
					Value: Millis(Percentile(d, pc)), Unit: "ms", Samples: len(d)}.WithBaseline(baseName, Millis(Percentile(base, pc))))
			}
		}
	}
	p.Done()
	return rows, nil
}

// etcdStore is an etcd store under a prefix of its own, which Close
// removes with everything under it.
type etcdStore struct {
	*etcdstore.Store
	client *clientv3.Client
	prefix string
}

// openEtcd opens an etcd store on a new prefix of endpoints.
func openEtcd(ctx context.Context, endpoints []string) (store.Store, error) {
	prefix := fmt.Sprintf("/vwire-bench/%d-%d/", os.Getpid(), time.Now().UnixNano())
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd at %v: %w", endpoints, err)
	}
	st, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &etcdStore{Store: st, client: client, prefix: prefix}, nil
}

// Close closes the store and removes its records.
func (s *etcdStore) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.Store.Close()
	if _, derr := s.client.Delete(ctx, s.prefix, clientv3.WithPrefix()); derr != nil {
		err = errors.Join(err, fmt.Errorf("remove %s from etcd: %w", s.prefix, derr))
	}
	return errors.Join(err, s.client.Close())
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

// findLatency fills a new registry on a store from open with size
// endpoints and times queries Finds, after a few to warm up.
func findLatency(ctx context.Context, open func(context.Context) (store.Store, error), srvSrc, cliSrc identity.Source,
	size, queries int, p *Progress) ([]time.Duration, error) {
	st, err := open(ctx)
	if err != nil {
		return nil, err
	}
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
