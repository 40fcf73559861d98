package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/workload/nsc"
	"github.com/vwire/vwire/workload/nse"
)

type nscFlags struct {
	connectTo        string
	name             string
	labels           map[string]string
	netns            string
	once             bool
	output           string
	maxTokenLifetime time.Duration
	requestTimeout   time.Duration
	closeTimeout     time.Duration
	livenessInterval time.Duration
	livenessFailures int
}

func newNSCCmd(g *globals) *cobra.Command {
	var f nscFlags
	cmd := &cobra.Command{
		Use:   "nsc [flags] URL...",
		Short: "Request network services and keep the connections up",
		Long: `Request network services from this node's manager and keep each connection
refreshed until stopped (SIGINT/SIGTERM), then close them. Each URL names a
service and the mechanism to get it by:

  kernel://<service>[@<domain>][/<ifname>][?<label>=<value>&...]
  memif://<service>[@<domain>][/<socketfile>][?<label>=<value>&...]

Labels from --labels, the URL, and nodeName/podName from $NODE_NAME/$POD_NAME
are matched by the service's selectors. Each connection is printed when it
comes up and whenever it changes, as are the manager's monitor events.

With --liveness-interval, the datapath of each kernel connection is checked
too: an ICMP echo to the endpoint's address across the vWire, from the
client's namespace, every interval. After --liveness-failures losses in a
row the client asks the manager for another endpoint (RESELECT_REQUESTED):
the old path is closed on every hop and the failed endpoint is tried last.`,
		Example: `  vwire nsc kernel://icmp-responder/nsm-1
  vwire nsc --once --output json kernel://icmp-responder@example.org?app=web
  vwire nsc --liveness-interval 1s kernel://icmp-responder/nsm-1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNSC(cmd, g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.connectTo, "connect-to", "", "manager address (default $"+nse.EnvConnectTo+", else "+nse.DefaultConnectTo+")")
	fl.StringVar(&f.name, "name", "", "client name in connection paths (default nsc-<hostname>)")
	fl.StringToStringVar(&f.labels, "labels", nil, "labels sent with every request, k=v,...")
	fl.StringVar(&f.netns, "netns", "", "network namespace file the kernel interfaces go into (default this process's, /proc/<pid>/ns/net)")
	fl.BoolVar(&f.once, "once", false, "request, print, close and exit")
	fl.StringVar(&f.output, "output", "text", "output format: text or json")
	fl.DurationVar(&f.maxTokenLifetime, "max-token-lifetime", nsc.DefaultMaxTokenLifetime, "how far ahead the client's path segment expires")
	fl.DurationVar(&f.requestTimeout, "request-timeout", nsc.DefaultRequestTimeout, "bound on each request")
	fl.DurationVar(&f.closeTimeout, "close-timeout", nsc.DefaultCloseTimeout, "bound on each close, also when stopping")
	fl.DurationVar(&f.livenessInterval, "liveness-interval", 0, "ping the endpoint across each kernel vWire this often; 0 turns the datapath check off")
	fl.IntVar(&f.livenessFailures, "liveness-failures", nsc.DefaultLivenessFailures, "lost pings in a row after which the client asks for another endpoint")
	return cmd
}

func runNSC(cmd *cobra.Command, g *globals, f nscFlags, args []string) error {
	targets := make([]nsc.Target, 0, len(args))
	for _, a := range args {
		t, err := nsc.ParseTarget(a)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}
	netnsURL := ""
	if f.netns != "" {
		p, err := filepath.Abs(f.netns)
		if err != nil {
			return fmt.Errorf("--netns %q: %w", f.netns, err)
		}
		netnsURL = "file://" + p
	}
	if f.livenessInterval < 0 || f.livenessFailures < 1 {
		return fmt.Errorf("--liveness-interval must not be negative and --liveness-failures must be at least 1")
	}
	connectTo := f.connectTo
	if connectTo == "" {
		connectTo = nse.ConnectToFromEnv()
	}

	ctx := cmd.Context()
	src, err := g.identitySource(ctx, "nsc", false)
	if err != nil {
		return err
	}
	defer src.Close()
	cc, err := grpcutil.DialPeer(connectTo, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	defer cc.Close()
	client, err := nsc.New(cc, nsc.Config{
		Source:           src,
		Name:             f.name,
		Labels:           f.labels,
		NetNSURL:         netnsURL,
		MaxTokenLifetime: f.maxTokenLifetime,
		RequestTimeout:   f.requestTimeout,
		CloseTimeout:     f.closeTimeout,
		LivenessInterval: f.livenessInterval,
		LivenessFailures: f.livenessFailures,
		Output:           cmd.OutOrStdout(),
		Format:           f.output,
		Logger:           g.log,
	})
	if err != nil {
		return err
	}
	if f.once {
		return client.Once(ctx, targets)
	}
	g.log.Info("nsc starting", "manager", connectTo, "id", src.ID().String(), "services", args)
	return client.Run(ctx, targets)
}
