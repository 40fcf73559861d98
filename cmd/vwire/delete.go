package main

import (
	"context"
	"fmt"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"
)

func newDeleteCmd(g *globals) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "delete ns|nse NAME",
		Short: "Unregister a NetworkService or a NetworkServiceEndpoint",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := resourceKind(args[0])
			if err != nil {
				return err
			}
			name := args[1]
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			c, err := dialRegistry(ctx, g, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			if kind == "ns" {
				found, err := c.findServices(ctx, &regapi.NetworkService{Name: name})
				if err != nil {
					return err
				}
				if len(found) == 0 {
					return fmt.Errorf("network service %q not found", name)
				}
				if _, err := c.ns.Unregister(ctx, found[0]); err != nil {
					return rpcError(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "networkservice/%s deleted\n", found[0].GetName())
				return nil
			}
			found, err := c.findEndpoints(ctx, &regapi.NetworkServiceEndpoint{Name: name})
			if err != nil {
				return err
			}
			if len(found) == 0 {
				return fmt.Errorf("network service endpoint %q not found", name)
			}
			if _, err := c.nse.Unregister(ctx, found[0]); err != nil {
				return rpcError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "networkserviceendpoint/%s deleted\n", found[0].GetName())
			return nil
		},
	}
	addRegistryFlag(cmd, &addr)
	return cmd
}
