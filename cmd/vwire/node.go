package main

import (
	"context"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vwire/vwire/internal/grpcutil"
)

// newNodeCmd runs a whole node in one process: the embedded default.
func newNodeCmd(g *globals) *cobra.Command {
	var (
		rf       registryFlags
		mf       managerFlags
		ff       forwarderFlags
		external string
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a registry (memory store), a manager and a forwarder in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := mf.resolve(); err != nil {
				return err
			}
			ff.nodeName, ff.maxTokenLifetime = mf.nodeName, mf.maxTokenLifetime
			ff.connectTo = "unix://" + mf.socket
			mf.registry = external
			eg, ctx := errgroup.WithContext(ctx)
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
			return eg.Wait()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&rf.listen, "registry-listen", ":5002", "address of the embedded registry")
	fl.StringSliceVar(&rf.domains, "domain", nil, "registry domain the embedded registry is authoritative for (repeatable)")
	fl.StringVar(&external, "registry", "", "use this registry instead of embedding one")
	rf.store = "memory"
	addManagerFlags(cmd, &mf)
	addForwarderFlags(cmd, &ff, "forwarder-socket")
	fl.Lookup("forwarder-socket").DefValue = "unix:///var/lib/vwire/forwarder.sock"
	return cmd
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
