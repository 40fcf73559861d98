package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/manager"
)

type managerFlags struct {
	socket           string
	listen           string
	advertise        string
	registry         string
	nodeName         string
	maxTokenLifetime time.Duration
	reselectTimeout  time.Duration
	domains          []string
}

func addManagerFlags(cmd *cobra.Command, f *managerFlags) {
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "socket", manager.DefaultSocket, "unix socket for local workloads (NSM's default path)")
	fl.StringVar(&f.listen, "manager-listen", ":5001", "TCP address other managers reach this one at")
	fl.StringVar(&f.advertise, "advertise-url", "", "URL registered for local endpoints (default tcp://<this node's address>:<port of --manager-listen>)")
	fl.StringVar(&f.nodeName, "node-name", "", "node name (default $NODE_NAME, else the host name)")
	fl.DurationVar(&f.maxTokenLifetime, "max-token-lifetime", manager.DefaultMaxTokenLifetime, "longest a connection lives without a refresh")
	fl.DurationVar(&f.reselectTimeout, "reselect-timeout", manager.DefaultReselectTimeout, "how long a Request waits for an endpoint a supplier is starting, and a heal retries the same endpoint before it selects another")
}

func newManagerCmd(g *globals) *cobra.Command {
	var f managerFlags
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run a node's Network Service Manager",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.identitySource(cmd.Context(), "manager", true)
			if err != nil {
				return err
			}
			defer src.Close()
			g.serveMetrics(cmd.Context())
			return runManager(cmd.Context(), g, f, src)
		},
	}
	addManagerFlags(cmd, &f)
	cmd.Flags().StringVar(&f.registry, "registry", "localhost:5002", "registry address")
	cmd.Flags().StringSliceVar(&f.domains, "domain", nil, "registry domain(s) the registry is authoritative for: name@domain in one of them is local (repeatable)")
	return cmd
}

func (f *managerFlags) resolveNodeName() error {
	if f.nodeName == "" {
		f.nodeName = os.Getenv("NODE_NAME")
	}
	if f.nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		f.nodeName = h
	}
	return nil
}

func (f *managerFlags) resolve() error {
	if err := f.resolveNodeName(); err != nil {
		return err
	}
	if f.advertise == "" {
		_, port, err := net.SplitHostPort(f.listen)
		if err != nil {
			return fmt.Errorf("--manager-listen %q: %w", f.listen, err)
		}
		ip, err := defaultRouteIP()
		if err != nil {
			return fmt.Errorf("--advertise-url not given and %w", err)
		}
		f.advertise = "tcp://" + net.JoinHostPort(ip.String(), port)
	}
	return nil
}

// runManager serves a manager until ctx ends.
func runManager(ctx context.Context, g *globals, f managerFlags, src identity.Source) error {
	if err := f.resolve(); err != nil {
		return err
	}
	authz := identity.AuthorizeTrustDomain(src)
	pol, err := g.loadPolicy()
	if err != nil {
		return err
	}
	reg, err := grpcutil.DialPeer(f.registry, src, authz)
	if err != nil {
		return err
	}
	defer reg.Close()
	pool := grpcutil.NewPool(src, authz)
	defer pool.Close()
	m, err := manager.New(manager.Config{
		Name: "manager-" + f.nodeName, NodeName: f.nodeName, URL: f.advertise, Domains: f.domains,
		Registry: reg, Policy: pol, Pool: pool, Source: src, Metrics: g.metrics, ReselectTimeout: f.reselectTimeout, MaxTokenLifetime: f.maxTokenLifetime, Logger: g.log,
	})
	if err != nil {
		return err
	}
	defer m.Stop()
	gs := grpcutil.NewServer(src, authz, g.log)
	m.Register(gs)
	return serveAll(ctx, g, gs, []string{"unix://" + f.socket, f.listen}, "manager", "node", f.nodeName, "advertise", f.advertise)
}

// serveAll serves gs on every address until ctx ends, then stops it
// gracefully.
func serveAll(ctx context.Context, g *globals, gs *grpc.Server, addrs []string, what string, attrs ...any) error {
	var ls []net.Listener
	for _, a := range addrs {
		l, err := grpcutil.Listen(a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return err
		}
		ls = append(ls, l)
	}
	eg, ctx := errgroup.WithContext(ctx)
	for _, l := range ls {
		eg.Go(func() error { return gs.Serve(l) })
		g.log.Info(what+" serving", append([]any{"listen", l.Addr().String()}, attrs...)...)
	}
	eg.Go(func() error {
		<-ctx.Done()
		stopGracefully(g, gs)
		return nil
	})
	return eg.Wait()
}

func stopGracefully(g *globals, gs *grpc.Server) {
	g.log.Info("stopping", "grace", gracePeriod)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		gs.Stop()
	}
}
