package main

import (
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/supplier"
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
