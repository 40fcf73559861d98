package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/supplier"
	"github.com/vwire/vwire/workload/nse/vl3"
)

func newSupplierCmd(g *globals) *cobra.Command {
	var f nseFlags
	cmd := &cobra.Command{
		Use:   "supplier --service NAME --labels supplier=true -- COMMAND [ARGS...]",
		Short: "An endpoint that starts a real endpoint for the client's node, then has the manager look again",
		Long: `Topologically aware scale from zero. Registered with the labels given
(typically supplier=true, matched by the service's last route), the supplier
answers a Request by starting COMMAND with NODE_NAME set to the client's
nodeName label (and VWIRE_REQUEST_LABELS to its labels), once per node, and
refusing the Request with "` + "supplier: starting" + `"; the manager then
discovers again (--reselect-timeout) and finds the new endpoint. Give the
started endpoint --idle-timeout so that it exits when unused.`,
		Example: `  vwire nse supplier --service local-vl3 --labels supplier=true -- \
    vwire nse icmp-responder --service local-vl3 --idle-timeout 5m`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := g.identitySource(ctx, "nse", false)
			if err != nil {
				return err
			}
			defer src.Close()
			svc := &supplier.Service{Command: args[0], Args: args[1:], Log: g.log}
			defer svc.Stop()
			opts := f.options(g)
			opts.Source = src
			return nse.Run(ctx, opts, svc)
		},
	}
	addNSEFlags(cmd, &f)
	return cmd
}

func newVL3Cmd(g *globals) *cobra.Command {
	var f nseFlags
	var prefix string
	cmd := &cobra.Command{
		Use:   "vl3 --service NAME --prefix CIDR",
		Short: "A virtual L3: every client gets an address from one prefix and reaches every other client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := vl3.New(prefix)
			if err != nil {
				return err
			}
			if err := vl3.EnableRouting(); err != nil {
				return fmt.Errorf("%w (the vL3 routes between its clients in its own network namespace: run it in one)", err)
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
	cmd.Flags().StringVar(&prefix, "prefix", "172.31.0.0/24", "the vL3's prefix; its first address is the endpoint's side of every vWire")
	return cmd
}
