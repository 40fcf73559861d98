package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/registry/manifest"
	"github.com/vwire/vwire/registry/validate"
)

func newApplyCmd(g *globals) *cobra.Command {
	var file, addr string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Register NetworkServices and NetworkServiceEndpoints from YAML or JSON (all or nothing)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("apply: -f FILE (or - for standard input) is required")
			}
			name, data, err := readInput(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			objs, err := manifest.Decode(name, data)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				return fmt.Errorf("%s: no documents to apply", name)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			c, err := dialRegistry(ctx, g, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			return apply(ctx, c, name, objs, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file to apply, - for standard input")
	addRegistryFlag(cmd, &addr)
	return cmd
}

func readInput(file string, stdin io.Reader) (string, []byte, error) {
	if file == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return "", nil, fmt.Errorf("read standard input: %w", err)
		}
		return "<stdin>", data, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", nil, err
	}
	return file, data, nil
}

// applied remembers how to undo one registration.
type applied struct {
	undo func(context.Context) error
}

// apply registers every object in order. If the registry refuses one, the
// ones already registered are put back as they were, so a file applies as a
// whole or not at all. Once all are applied, it warns on errOut about what is
// valid but likely a mistake (see applyWarnings).
func apply(ctx context.Context, c *registryClient, file string, objs []manifest.Object, out, errOut io.Writer) error {
	var done []applied
	var lines []string
	for _, o := range objs {
		line, undo, err := applyOne(ctx, c, o)
		if err != nil {
			rollback(ctx, done)
			return fmt.Errorf("%s: document %d (line %d): %w (nothing from this file was applied)", file, o.Doc, o.Line, err)
		}
		done = append(done, applied{undo: undo})
		lines = append(lines, line)
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	for _, w := range applyWarnings(file, objs) {
		fmt.Fprintln(errOut, "vwire: warning: "+w)
	}
	return nil
}

// applyWarnings lists, one line each, the matches of the NetworkServices in
// objs that no client can reach (validate.UnreachableMatches): the service
// is valid NSM and is applied, but its author most likely meant an earlier
// match to have fallthrough.
func applyWarnings(file string, objs []manifest.Object) []string {
	var out []string
	for _, o := range objs {
		if o.Service == nil {
			continue
		}
		for _, u := range validate.UnreachableMatches(o.Service) {
			out = append(out, fmt.Sprintf("%s: document %d (line %d): networkservice/%s: %s",
				file, o.Doc, o.Line, o.Service.GetName(), u.Message(o.Service, "spec.")))
		}
	}
	return out
}

func applyOne(ctx context.Context, c *registryClient, o manifest.Object) (string, func(context.Context) error, error) {
	switch {
	case o.Service != nil:
		prev, err := c.findServices(ctx, &regapi.NetworkService{Name: o.Service.Name})
		if err != nil {
			return "", nil, err
		}
		got, err := c.ns.Register(ctx, o.Service)
		if err != nil {
			return "", nil, rpcError(err)
		}
		undo := func(ctx context.Context) error {
			_, err := c.ns.Unregister(ctx, got)
			return err
		}
		verb := "created"
		if len(prev) > 0 {
			verb = "configured"
			undo = func(ctx context.Context) error {
				_, err := c.ns.Register(ctx, prev[0])
				return err
			}
		}
		return "networkservice/" + got.Name + " " + verb, undo, nil
	case o.Endpoint != nil:
		prev, err := c.findEndpoints(ctx, &regapi.NetworkServiceEndpoint{Name: o.Endpoint.Name})
		if err != nil {
			return "", nil, err
		}
		got, err := c.nse.Register(ctx, o.Endpoint)
		if err != nil {
			return "", nil, rpcError(err)
		}
		undo := func(ctx context.Context) error {
			_, err := c.nse.Unregister(ctx, got)
			return err
		}
		verb := "created"
		if len(prev) > 0 {
			verb = "configured"
			undo = func(ctx context.Context) error {
				_, err := c.nse.Register(ctx, prev[0])
				return err
			}
		}
		return "networkserviceendpoint/" + got.Name + " " + verb, undo, nil
	}
	return "", nil, fmt.Errorf("document has no object")
}

func rollback(ctx context.Context, done []applied) {
	// The request's context may be the one that failed: undo on a fresh one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for i := len(done) - 1; i >= 0; i-- {
		if err := done[i].undo(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "vwire: rollback: %v\n", rpcError(err))
		}
	}
}
