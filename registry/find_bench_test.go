package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore"
	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
	"github.com/vwire/vwire/registry/store/memstore"
)

// The registry the Find benchmarks search: benchEndpoints endpoints spread
// evenly over benchServices services, so that the service asked for has
// benchEndpoints/benchServices of them.
const (
	benchEndpoints = 100_000
	benchServices  = 1_000
	benchTarget    = "svc-0042"
)

// BenchmarkFind times a Find (watch=false) of one service among
// benchEndpoints endpoints, on each store: through the registry's gRPC
// server with mTLS on loopback ("grpc"), and the store's own part of it
// ("store"). Each reports its p50 and p99 in milliseconds; run it with
// -benchtime 200x or more for a p99 worth reading.
func BenchmarkFind(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
		// ttl is the expiry the fill gives each record: the memory
		// store keeps a timer per record as in real use; on etcd a
		// lease per record would only slow the fill.
		ttl time.Duration
	}{
		{name: "memory", ttl: 24 * time.Hour, open: func(b *testing.B) store.Store {
			st := memstore.New()
			b.Cleanup(func() { st.Close() })
			return st
		}},
		{name: "etcd", open: func(b *testing.B) store.Store {
			srv := etcdtest.Start(b)
			st, err := etcdstore.New(b.Context(), etcdstore.Config{Endpoints: srv.Endpoints()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
	}
	ids := newIdentities(b)
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			start := time.Now()
			if err := fillEndpoints(b.Context(), st, benchEndpoints, be.ttl); err != nil {
				b.Fatalf("fill: %v", err)
			}
			b.Logf("%s: %d endpoints stored in %v", be.name, benchEndpoints, time.Since(start).Round(time.Millisecond))
			e, _ := serve(b, ids, st)
			want := benchEndpoints / benchServices

			b.Run("grpc", func(b *testing.B) {
				query := &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{
					NetworkServiceNames: []string{benchTarget}}}
				timed(b, func(ctx context.Context) error {
					n, err := countFound(ctx, e, query)
					if err == nil && n != want {
						err = fmt.Errorf("found %d endpoints, want %d", n, want)
					}
					return err
				})
			})
			b.Run("store", func(b *testing.B) {
				timed(b, func(ctx context.Context) error {
					entries, err := st.List(ctx, store.KindEndpoint, benchTarget)
					if err == nil && len(entries) != want {
						err = fmt.Errorf("listed %d endpoints, want %d", len(entries), want)
					}
					return err
				})
			})
		})
	}
}

// timed runs find b.N times and reports the p50 and p99 of its duration.
func timed(b *testing.B, find func(context.Context) error) {
	ctx := b.Context()
	for range 3 { // warm up: connections, caches
		if err := find(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := find(ctx); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(percentileMillis(took, 50), "p50-ms")
	b.ReportMetric(percentileMillis(took, 99), "p99-ms")
}

// percentileMillis is the nearest-rank percentile of sorted, in ms.
func percentileMillis(sorted []time.Duration, pc float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, max(0, int(float64(len(sorted))*pc/100+0.999999)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// countFound runs one Find and counts the endpoints it sends.
func countFound(ctx context.Context, e *env, q *regapi.NetworkServiceEndpointQuery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := e.nse.Find(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("find: %w", err)
	}
	for n := 0; ; n++ {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, fmt.Errorf("find: receive: %w", err)
		}
	}
}

// fillEndpoints stores n endpoints, encoded as the registry stores them,
// and tagged with their services as the registry stores them, straight
// into st (registering 100,000 through gRPC would only make the benchmark
// slower to start). Endpoint i provides service i%benchServices.
func fillEndpoints(ctx context.Context, st store.Store, n int, ttl time.Duration) error {
	const writers = 32
	now := time.Now()
	expires := timestamppb.New(now.Add(24 * time.Hour))
	registered := timestamppb.New(now)
	eg, ctx := errgroup.WithContext(ctx)
	for w := range writers {
		eg.Go(func() error {
			for i := w; i < n; i += writers {
				nse := benchEndpoint(i, expires, registered)
				value, err := proto.Marshal(nse)
				if err != nil {
					return fmt.Errorf("encode %s: %w", nse.Name, err)
				}
				if err := st.Put(ctx, store.KindEndpoint, nse.Name, value, ttl, nse.NetworkServiceNames...); err != nil {
					return fmt.Errorf("store %s: %w", nse.Name, err)
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// benchEndpoint is endpoint i of the benchmark registry.
func benchEndpoint(i int, expires, registered *timestamppb.Timestamp) *regapi.NetworkServiceEndpoint {
	svc := fmt.Sprintf("svc-%04d", i%benchServices)
	return &regapi.NetworkServiceEndpoint{
		Name:                fmt.Sprintf("nse-%06d", i),
		Url:                 fmt.Sprintf("tcp://10.%d.%d.%d:5001", i>>16&255, i>>8&255, i&255),
		NetworkServiceNames: []string{svc},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{
			svc: {Labels: map[string]string{"app": "bench", "shard": fmt.Sprint(i % 16)}},
		},
		ExpirationTime:          expires,
		InitialRegistrationTime: registered,
	}
}
