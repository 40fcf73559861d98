package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/vwire/vwire/internal/identity"
)

func newIdentityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Manage the development CA's identities",
	}
	var id, out string
	var ttl time.Duration
	issue := &cobra.Command{
		Use:   "issue --spiffe-id ID --out DIR",
		Short: "Write an X.509-SVID and the trust bundle for another workload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" || out == "" {
				return fmt.Errorf("identity issue: --spiffe-id and --out are required")
			}
			sid, err := spiffeid.FromString(id)
			if err != nil {
				return fmt.Errorf("--spiffe-id %q: %w", id, err)
			}
			ca, err := identity.OpenCA(g.stateDir, g.trustDomain, true)
			if err != nil {
				return err
			}
			svid, err := ca.Issue(sid, ttl)
			if err != nil {
				return err
			}
			if err := ca.WriteSVID(svid, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (valid until %s) to %s\n", sid, svid.Certificates[0].NotAfter.Format(time.RFC3339), out)
			return nil
		},
	}
	issue.Flags().StringVar(&id, "spiffe-id", "", "SPIFFE ID to issue, in the CA's trust domain")
	issue.Flags().StringVar(&out, "out", "", "directory for svid.pem, svid-key.pem and bundle.pem")
	issue.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of the SVID")
	bundle := &cobra.Command{
		Use:   "bundle",
		Short: "Print the development CA's trust bundle (PEM): what other domains give --federate-with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := identity.OpenCA(g.stateDir, g.trustDomain, false)
			if err != nil {
				return err
			}
			pem, err := ca.Bundle().Marshal()
			if err != nil {
				return fmt.Errorf("identity bundle: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	}
	cmd.AddCommand(issue, bundle)
	return cmd
}
