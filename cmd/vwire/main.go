// Command vwire is the one binary of the vwire Network Service Mesh: registry,
// manager, forwarder, example workloads and the operator's CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/logging"
	"github.com/vwire/vwire/internal/metrics"
	"github.com/vwire/vwire/internal/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every subcommand shares.
type globals struct {
	logLevel    string
	logFormat   string
	stateDir    string
	trustDomain string
	svidDir     string
	policyFile  string
	metricsAddr string
	federate    []string
	log         *slog.Logger
	metrics     *prometheus.Registry
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vwire: %v\n", err)
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// exitCoder lets a command choose its exit status.
type exitCoder interface{ ExitCode() int }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "vwire",
		Short:         "vwire: a Network Service Mesh with a VPP dataplane",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			g.log = log
			g.metrics = metrics.NewRegistry()
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&g.stateDir, "state-dir", "/var/lib/vwire", "state directory (development CA, runtime files)")
	f.StringVar(&g.trustDomain, "trust-domain", "", "SPIFFE trust domain of the development CA (default: the CA's, or "+identity.DefaultTrustDomain+" for a new one)")
	f.StringVar(&g.metricsAddr, "metrics-listen", "", "serve /metrics, /healthz and /readyz on this address (e.g. :9090); off when empty")
	f.StringVar(&g.policyFile, "policy", "", "policy file: who may request and register what (default: any workload of the trust domain)")
	f.StringArrayVar(&g.federate, "federate-with", nil, "accept peers of another trust domain: TRUST-DOMAIN=BUNDLE.pem (repeatable; for other registry domains' registries, managers and forwarders)")
	f.StringVar(&g.svidDir, "svid-dir", "", "take this process's identity from svid.pem, svid-key.pem and bundle.pem in DIR (as written by vwire identity issue)")

	root.AddCommand(
		newRegistryCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newManagerCmd(g),
		newForwarderCmd(g),
		newNodeCmd(g),
		newNSCCmd(g),
		newNSECmd(g),
		newIdentityCmd(g),
		newBenchCmd(g),
		newVersionCmd(),
	)
	return root
}

// serveMetrics serves the process's metrics and health on --metrics-listen
// until ctx ends; it does nothing when the flag is empty.
func (g *globals) serveMetrics(ctx context.Context) {
	if g.metricsAddr == "" {
		return
	}
	go func() {
		if err := metrics.Serve(ctx, g.metricsAddr, g.metrics, nil, g.log); err != nil {
			g.log.Error("metrics server", "err", err)
		}
	}()
}

// loadPolicy reads --policy; nil when none is given.
func (g *globals) loadPolicy() (*policy.Policy, error) {
	if g.policyFile == "" {
		return nil, nil
	}
	return policy.Load(g.policyFile)
}

// identitySource returns this process's identity: Workload API, SVID files
// or the development CA, in that order. Servers may create the CA.
func (g *globals) identitySource(ctx context.Context, component string, createCA bool) (identity.Source, error) {
	fed, err := identity.LoadFederation(g.federate)
	if err != nil {
		return nil, err
	}
	src, err := identity.New(ctx, identity.Config{
		SVIDDir:     g.svidDir,
		StateDir:    g.stateDir,
		TrustDomain: g.trustDomain,
		Component:   component,
		CreateCA:    createCA,
		Logger:      g.log,
	})
	if err != nil {
		return nil, err
	}
	return identity.Federate(src, fed), nil
}
