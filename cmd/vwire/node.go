package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

// newNodeCmd runs a whole node in one process: the embedded default.
func newNodeCmd(g *globals) *cobra.Command {
	var (
		rf       registryFlags
		mf       managerFlags
		ff       forwarderFlags
		external string
		wlAPI    string
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a registry (memory store), a manager and a forwarder in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := ff.validate(); err != nil {
				return err
			}
			if err := mf.resolve(); err != nil {
				return err
			}
			ff.nodeName, ff.maxTokenLifetime = mf.nodeName, mf.maxTokenLifetime
			ff.connectTo = "unix://" + mf.socket
			mf.registry = external
			mf.domains = rf.domains
			eg, ctx := errgroup.WithContext(ctx)
			g.serveMetrics(ctx)
			if external == "" {
				mf.registry = registryDialAddr(rf.listen)
				eg.Go(func() error { return runRegistry(ctx, g, rf) })
			}
			eg.Go(func() error {
				src, err := g.identitySource(ctx, "manager", true)
				if err != nil {
					return err
				}
				defer src.Close()
				return runManager(ctx, g, mf, src)
			})
			eg.Go(func() error {
				// The forwarder registers through the manager: give the
				// manager's socket a moment (registration retries anyway).
				waitForSocket(ctx, mf.socket)
				return runForwarder(ctx, g, ff)
			})
			if os.Getenv(identity.EnvWorkloadAPISocket) == "" && g.svidDir == "" {
				eg.Go(func() error { return serveWorkloadAPI(ctx, g, wlAPI) })
			}
			return eg.Wait()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&rf.listen, "registry-listen", ":5002", "address of the embedded registry")
	fl.StringSliceVar(&rf.domains, "domain", nil, "registry domain the embedded registry (and the manager) is authoritative for (repeatable)")
	addDNSFlag(cmd, &rf)
	fl.StringVar(&external, "registry", "", "use this registry instead of embedding one")
	fl.StringVar(&wlAPI, "workload-api-socket", "", "SPIFFE Workload API socket for workloads when no SPIRE is configured (default <state-dir>/workload-api.sock)")
	rf.store = "memory"
	addManagerFlags(cmd, &mf)
	addForwarderFlags(cmd, &ff, "forwarder-socket")
	fl.Lookup("forwarder-socket").DefValue = "unix:///var/lib/vwire/forwarder.sock"
	return cmd
}

// serveWorkloadAPI gives workloads SVIDs from the development CA over the
// SPIFFE Workload API, identifying them by their socket peer credentials:
// NSM-compatible workloads then need no SPIRE.
func serveWorkloadAPI(ctx context.Context, g *globals, socket string) error {
	if socket == "" {
		socket = filepath.Join(g.stateDir, "workload-api.sock")
	}
	ca, err := identity.OpenCA(g.stateDir, g.trustDomain, true)
	if err != nil {
		return err
	}
	l, err := grpcutil.Listen("unix://" + socket)
	if errors.Is(err, grpcutil.ErrSocketInUse) {
		// Another node on this host serves the same CA's Workload API.
		g.log.Info("SPIFFE Workload API already served here by another process", "socket", socket)
		return nil
	}
	if err != nil {
		return err
	}
	// Any local process may ask; what it gets names its uid and executable.
	if err := os.Chmod(socket, 0o777); err != nil {
		return fmt.Errorf("workload API socket: %w", err)
	}
	gs := grpc.NewServer(grpc.Creds(identity.PeerCredentials{}))
	(&identity.WorkloadAPIServer{CA: ca, Identify: identity.IdentifyByPeer(ca.TrustDomain())}).Register(gs)
	g.log.Info("SPIFFE Workload API serving", "socket", socket, "for_workloads", identity.EnvWorkloadAPISocket+"=unix://"+socket)
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	return gs.Serve(l)
}

// registryDialAddr turns a listen address into one to dial on this host.
func registryDialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

func waitForSocket(ctx context.Context, path string) {
	a, err := grpcutil.ParseAddr("unix://" + filepath.Clean(path))
	if err != nil {
		return
	}
	for ctx.Err() == nil {
		if c, err := net.DialTimeout(a.Network, a.Address, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
