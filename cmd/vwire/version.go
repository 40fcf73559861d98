package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print vwire's version and the API versions it speaks",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			api := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					if d.Path == "github.com/networkservicemesh/api" {
						api = d.Version
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vwire %s\nnsm api %s\n%s %s/%s\n", version, api, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
