package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

// nseFlags are what every kind of example endpoint takes.
type nseFlags struct {
	services             []string
	labels               map[string]string
	name                 string
	listen               string
	advertiseURL         string
	connectTo            string
	payload              string
	registerService      bool
	registrationLifetime time.Duration
	maxTokenLifetime     time.Duration
	idleTimeout          time.Duration
	mechanisms           []string
}

func addNSEFlags(cmd *cobra.Command, f *nseFlags) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.services, "service", nil, "network service this endpoint provides (repeatable; required)")
	fl.StringToStringVar(&f.labels, "labels", nil, "labels advertised for each service, k=v,... (nodeName is added from $"+nse.EnvNodeName+")")
	fl.StringVar(&f.name, "name", "", "endpoint name (default <service>-<hostname>-<random>)")
	fl.StringVar(&f.listen, "listen", "", "listen address, unix:///path or host:port (default unix://"+nse.EndpointSocketDir+"/<name>.sock); always mTLS")
	fl.StringVar(&f.advertiseURL, "advertise-url", "", "URL registered for the manager to reach this endpoint (default derived from --listen)")
	fl.StringVar(&f.connectTo, "connect-to", "", "manager address (default $"+nse.EnvConnectTo+", else "+nse.DefaultConnectTo+")")
	fl.StringVar(&f.payload, "payload", nse.DefaultPayload, "payload of the network service when this endpoint registers it: IP or ETHERNET")
	fl.BoolVar(&f.registerService, "register-service", true, "register the network service when the registry does not have it")
	fl.DurationVar(&f.registrationLifetime, "registration-lifetime", nse.DefaultRegistrationLifetime, "lifetime of each registration; refreshed at a third of it")
	fl.DurationVar(&f.maxTokenLifetime, "max-token-lifetime", nse.DefaultMaxTokenLifetime, "longest a connection lives without a refresh")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "stop after this long without a connection (endpoints a supplier starts); never when 0")
	fl.StringSliceVar(&f.mechanisms, "mechanisms", nil, "mechanisms this endpoint accepts, KERNEL and/or MEMIF (default both)")
	_ = cmd.MarkFlagRequired("service")
}

func (f nseFlags) options(g *globals) nse.Options {
	return nse.Options{
		Name:                 f.name,
		Services:             f.services,
		Labels:               f.labels,
		RegisterService:      f.registerService,
		Payload:              f.payload,
		Listen:               f.listen,
		URL:                  f.advertiseURL,
		ConnectTo:            f.connectTo,
		RegistrationLifetime: f.registrationLifetime,
		MaxTokenLifetime:     f.maxTokenLifetime,
		IdleTimeout:          f.idleTimeout,
		Mechanisms:           f.mechanisms,
		Logger:               g.log,
	}
}

func newNSECmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nse",
		Short: "Run an example Network Service Endpoint",
	}
	cmd.AddCommand(newICMPResponderCmd(g))
	cmd.AddCommand(newPassthroughCmd(g))
	cmd.AddCommand(newSupplierCmd(g), newVL3Cmd(g))
	return cmd
}

func newICMPResponderCmd(g *globals) *cobra.Command {
	var f nseFlags
	var cidrs []string
	cmd := &cobra.Command{
		Use:   "icmp-responder --service NAME [flags]",
		Short: "An endpoint that gives each client a point-to-point address pair and answers ping",
		Long: `An endpoint that gives each connection a point-to-point address pair from
--cidr (the client's side src, the endpoint's dst, a host route each way) and
nothing else: the kernel answers ping on the endpoint's side of each vWire.
It serves on --listen, registers through the manager at --connect-to and
unregisters when stopped (SIGINT/SIGTERM).`,
		Example: `  vwire nse icmp-responder --service icmp-responder --labels app=ping
  vwire nse icmp-responder --service icmp-responder --cidr 172.16.1.0/24 --cidr fd00:1::/64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := icmpresponder.New(cidrs...)
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
			return nse.Run(ctx, opts, svc)
		},
	}
	addNSEFlags(cmd, &f)
	cmd.Flags().StringArrayVar(&cidrs, "cidr", []string{icmpresponder.DefaultCIDR}, "address pool, IPv4 or IPv6 (repeatable: one pair from each)")
	return cmd
}
