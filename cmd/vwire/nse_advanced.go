package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/managerclient"
	"github.com/vwire/vwire/workload/nse/passthrough"
)

func newPassthroughCmd(g *globals) *cobra.Command {
	var (
		f          nseFlags
		advertise  map[string]string
		deny       []string
		statsEvery time.Duration
	)
	cmd := &cobra.Command{
		Use:   "passthrough --service NAME --labels k=v [flags]",
		Short: "An endpoint that requests its service onward and passes traffic through (composition)",
		Long: `An endpoint that accepts a vWire, requests the same network service onward
through its manager with the labels of --labels (so the service's matches send
it to the next endpoint of a composition), and joins the two vWires in its
namespace with tc mirred redirects. The client gets the far endpoint's
addresses. --deny proto[:port] (icmp, tcp:22, udp:53, 47...) drops IPv4
packets of that protocol (to that destination port) in both directions; the
packets passed and dropped are logged ("passthrough counters") every
--stats-interval while they change. The onward connection is refreshed with
the incoming one and closed when it closes or expires.`,
		Example: `  vwire nse passthrough --service secure-vl3 --advertise-labels provides=ips --labels provided=ips --deny tcp:23
  vwire nse passthrough --service service-mesh --advertise-labels service=envoy-proxy --labels service=envoy-proxy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules, err := passthrough.ParseRules(deny)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			src, err := g.identitySource(ctx, "nse", false)
			if err != nil {
				return err
			}
			defer src.Close()
			opts := f.options(g)
			opts.Source = src
			opts.Labels = advertise
			opts.Mechanisms = []string{kernel.Type}
			if opts.Name == "" {
				opts.Name = nse.DefaultName(f.services[0])
			}
			connectTo := opts.ConnectTo
			if connectTo == "" {
				connectTo = nse.ConnectToFromEnv()
			}
			cc, err := grpcutil.DialPeer(connectTo, src, identity.AuthorizeTrustDomain(src))
			if err != nil {
				return fmt.Errorf("manager: %w", err)
			}
			defer cc.Close()
			tc, err := passthrough.NewTC(rules)
			if err != nil {
				return err
			}
			defer tc.Close()
			svc, err := passthrough.New(passthrough.Config{
				Name:       opts.Name,
				Labels:     nse.WithNodeName(f.labels),
				Onward:     managerclient.New("passthrough", cc, src),
				Wirer:      tc,
				StatsEvery: statsEvery,
				Logger:     g.log,
			})
			if err != nil {
				return err
			}
			g.log.Info("passthrough starting", "deny", deny, "onward_labels", f.labels)
			err = nse.Run(ctx, opts, svc)
			svc.Wait()
			c := svc.Counters()
			g.log.Info("passthrough stopped", "total_passed", c.Passed, "total_dropped", c.Dropped)
			return err
		},
	}
	addNSEFlags(cmd, &f)
	fl := cmd.Flags()
	fl.Lookup("labels").Usage = "labels of the onward request, k=v,... (nodeName is added from $" + nse.EnvNodeName + "): what the service's source_selectors see"
	fl.StringToStringVar(&advertise, "advertise-labels", nil, "labels advertised for each service, k=v,...: what the service's destination_selectors see")
	fl.StringArrayVar(&deny, "deny", nil, "drop IPv4 packets of proto[:port] in both directions (repeatable): icmp, tcp:22, udp:53, 47")
	fl.DurationVar(&statsEvery, "stats-interval", passthrough.DefaultStatsEvery, "how often changed counters are logged")
	return cmd
}
