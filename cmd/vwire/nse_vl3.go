package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/managerclient"
	"github.com/vwire/vwire/workload/nse/vl3"
)

func newVL3Cmd(g *globals) *cobra.Command {
	var (
		f            nseFlags
		prefix       string
		subnet       string
		peerService  string
		peerLifetime time.Duration
	)
	cmd := &cobra.Command{
		Use:   "vl3 --service NAME --prefix CIDR [--subnet CIDR]",
		Short: "A virtual L3: every client gets an address from one prefix and reaches every other client",
		Long: `A virtual L3 network. Each client gets an address and a route to the whole
--prefix over its vWire; the endpoint routes between its clients in its own
network namespace (IP forwarding and proxy ARP), so clients reach each other.

Alone, an endpoint serves the whole prefix. Several endpoints (one per node,
say) share one prefix when each is given its own --subnet of it, which must
overlap no other's: each gives its clients addresses from its subnet, also
registers the peer service (--peer-service, default <service>-peers), finds
the other endpoints of that service through its manager's registry and keeps
a vWire to each of them, requested through vwire itself and naming the peer
endpoint; each side of a peer vWire routes the other's subnet through it. Of
two peers, the one whose name sorts first asks for the vWire. A peer that
leaves the registry loses its vWire and routes; when it returns they return.
Give each endpoint a --name that stays the same across restarts.`,
		Example: `  vwire nse vl3 --service vl3 --prefix 172.31.7.0/24
  NODE_NAME=node1 vwire nse vl3 --name vl3-node1 --service distributed-vl3 --prefix 172.16.0.0/16 --subnet 172.16.1.0/24
  NODE_NAME=node2 vwire nse vl3 --name vl3-node2 --service distributed-vl3 --prefix 172.16.0.0/16 --subnet 172.16.2.0/24`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subnet != "" && peerService == "" {
				peerService = vl3.PeerServiceName(f.services[0])
			}
			if subnet == "" && peerService != "" {
				return fmt.Errorf("vl3: --peer-service needs --subnet")
			}
			opts := f.options(g)
			if opts.Name == "" {
				opts.Name = nse.DefaultName(f.services[0])
			}
			svc, err := vl3.New(vl3.Config{Prefix: prefix, Subnet: subnet, PeerService: peerService, Logger: g.log.With("nse", opts.Name)})
			if err != nil {
				return err
			}
			if err := vl3.EnableRouting(); err != nil {
				return fmt.Errorf("%w (the vL3 routes between its clients in its own network namespace: run it in one)", err)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			src, err := g.identitySource(ctx, "nse", false)
			if err != nil {
				return err
			}
			defer src.Close()
			opts.Source = src
			if peerService == "" {
				return nse.Run(ctx, opts, svc)
			}

			opts.Services = append(opts.Services, peerService)
			connectTo := opts.ConnectTo
			if connectTo == "" {
				connectTo = nse.ConnectToFromEnv()
			}
			cc, err := grpcutil.DialPeer(connectTo, src, identity.AuthorizeTrustDomain(src))
			if err != nil {
				return fmt.Errorf("manager: %w", err)
			}
			defer cc.Close()
			peers, err := vl3.NewPeers(svc, vl3.PeersConfig{
				Name:     opts.Name,
				Manager:  managerclient.New("vl3", cc, src),
				Registry: regapi.NewNetworkServiceEndpointRegistryClient(cc),
				Lifetime: peerLifetime,
				Logger:   g.log,
			})
			if err != nil {
				return err
			}
			g.log.Info("vl3 starting", "prefix", svc.Plan().Prefix, "subnet", svc.Plan().Subnet, "peer_service", peerService)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				peers.Run(ctx)
			}()
			err = nse.Run(ctx, opts, svc)
			cancel()
			wg.Wait()
			return err
		},
	}
	addNSEFlags(cmd, &f)
	fl := cmd.Flags()
	fl.StringVar(&prefix, "prefix", "172.31.0.0/24", "the vL3's prefix: every client's route")
	fl.StringVar(&subnet, "subnet", "", "this endpoint's part of --prefix, which its clients get addresses from (its first address is the endpoint's side of every vWire); set it to share the prefix with peer endpoints (default: the whole prefix, no peers)")
	fl.StringVar(&peerService, "peer-service", "", "network service the vL3's endpoints connect to each other on (default <service>-peers when --subnet is set)")
	fl.DurationVar(&peerLifetime, "peer-lifetime", vl3.DefaultPeerLifetime, "lifetime of a peer vWire without a refresh (refreshed at a third of it): how long routes to a peer that died without closing stay")
	return cmd
}
