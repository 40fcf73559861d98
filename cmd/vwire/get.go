package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/registry/manifest"
	"github.com/vwire/vwire/registry/validate"
)

// resourceKind parses the resource argument of get and delete.
func resourceKind(arg string) (string, error) {
	switch strings.ToLower(arg) {
	case "ns", "networkservice", "networkservices":
		return "ns", nil
	case "nse", "networkserviceendpoint", "networkserviceendpoints":
		return "nse", nil
	}
	return "", fmt.Errorf("unknown resource %q: want ns or nse", arg)
}

type getFlags struct {
	addr   string
	output string
	watch  bool
}

func newGetCmd(g *globals) *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get ns|nse [NAME]",
		Short: "List NetworkServices or NetworkServiceEndpoints",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := resourceKind(args[0])
			if err != nil {
				return err
			}
			switch f.output {
			case "", "wide", "yaml", "json":
			default:
				return fmt.Errorf("-o %q: want wide, yaml or json", f.output)
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			ctx := cmd.Context()
			if !f.watch {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
			}
			c, err := dialRegistry(ctx, g, f.addr)
			if err != nil {
				return err
			}
			defer c.Close()
			if f.watch {
				return watch(ctx, c, kind, name, f.output, cmd.OutOrStdout())
			}
			return list(ctx, c, kind, name, f.output, cmd.OutOrStdout())
		},
	}
	addRegistryFlag(cmd, &f.addr)
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "output format: wide, yaml or json")
	cmd.Flags().BoolVarP(&f.watch, "watch", "w", false, "after listing, stream every change")
	return cmd
}

func list(ctx context.Context, c *registryClient, kind, name, output string, out io.Writer) error {
	var objs []manifest.Object
	if kind == "ns" {
		svcs, err := c.findServices(ctx, &regapi.NetworkService{Name: name})
		if err != nil {
			return err
		}
		for _, ns := range svcs {
			objs = append(objs, manifest.Object{Kind: "NetworkService", Service: ns})
		}
	} else {
		nses, err := c.findEndpoints(ctx, &regapi.NetworkServiceEndpoint{Name: name})
		if err != nil {
			return err
		}
		for _, nse := range nses {
			objs = append(objs, manifest.Object{Kind: "NetworkServiceEndpoint", Endpoint: nse})
		}
	}
	if name != "" && len(objs) == 0 {
		return fmt.Errorf("%s %q not found", kindWord(kind), name)
	}
	slices.SortFunc(objs, func(a, b manifest.Object) int { return strings.Compare(objectName(a), objectName(b)) })
	switch output {
	case "yaml", "json":
		if len(objs) == 0 {
			return nil
		}
		data, err := manifest.Encode(objs, output)
		if err != nil {
			return err
		}
		_, err = out.Write(data)
		return err
	}
	if len(objs) == 0 {
		fmt.Fprintf(out, "No %ss found.\n", kindWord(kind))
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, header(kind, output == "wide", false))
	for _, o := range objs {
		fmt.Fprintln(tw, row(o, output == "wide", ""))
	}
	return tw.Flush()
}

// watch prints the current objects, then every change, until interrupted.
func watch(ctx context.Context, c *registryClient, kind, name, output string, out io.Writer) error {
	type event struct {
		obj     manifest.Object
		deleted bool
	}
	events := make(chan event)
	errc := make(chan error, 1)
	go func() {
		var err error
		if kind == "ns" {
			var s regapi.NetworkServiceRegistry_FindClient
			if s, err = c.ns.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: &regapi.NetworkService{Name: name}, Watch: true}); err == nil {
				for {
					var r *regapi.NetworkServiceResponse
					if r, err = s.Recv(); err != nil {
						break
					}
					events <- event{manifest.Object{Kind: "NetworkService", Service: r.GetNetworkService()}, r.GetDeleted()}
				}
			}
		} else {
			var s regapi.NetworkServiceEndpointRegistry_FindClient
			if s, err = c.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: name}, Watch: true}); err == nil {
				for {
					var r *regapi.NetworkServiceEndpointResponse
					if r, err = s.Recv(); err != nil {
						break
					}
					events <- event{manifest.Object{Kind: "NetworkServiceEndpoint", Endpoint: r.GetNetworkServiceEndpoint()}, r.GetDeleted()}
				}
			}
		}
		errc <- err
	}()

	tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	table := output == "" || output == "wide"
	if table {
		fmt.Fprintln(tw, header(kind, output == "wide", true))
		tw.Flush()
	}
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return rpcError(err)
		case ev := <-events:
			n := objectName(ev.obj)
			verb := "ADDED"
			switch {
			case ev.deleted:
				verb = "DELETED"
				delete(seen, n)
			case seen[n]:
				verb = "MODIFIED"
			default:
				seen[n] = true
			}
			if table {
				fmt.Fprintln(tw, row(ev.obj, output == "wide", verb))
				tw.Flush()
				continue
			}
			data, err := manifest.Encode([]manifest.Object{ev.obj}, output)
			if err != nil {
				return err
			}
			if output == "yaml" {
				fmt.Fprintf(out, "# %s\n", verb)
			}
			out.Write(data)
			if output == "yaml" {
				fmt.Fprintln(out, "---")
			}
		}
	}
}

func kindWord(kind string) string {
	if kind == "ns" {
		return "network service"
	}
	return "network service endpoint"
}

func objectName(o manifest.Object) string {
	if o.Service != nil {
		return o.Service.GetName()
	}
	return o.Endpoint.GetName()
}

func header(kind string, wide, events bool) string {
	h := "NAME\tPAYLOAD\tMATCHES"
	if wide {
		h += "\tROUTES\tNOTES"
	}
	if kind == "nse" {
		h = "NAME\tSERVICES\tURL\tEXPIRES"
		if wide {
			h += "\tLABELS"
		}
	}
	if events {
		h = "EVENT\t" + h
	}
	return h
}

func row(o manifest.Object, wide bool, event string) string {
	var cols []string
	if event != "" {
		cols = append(cols, event)
	}
	if ns := o.Service; ns != nil {
		cols = append(cols, ns.GetName(), ns.GetPayload(), fmt.Sprint(len(ns.GetMatches())))
		if wide {
			cols = append(cols, routes(ns), notes(ns))
		}
		return strings.Join(cols, "\t")
	}
	nse := o.Endpoint
	expires := "-"
	if t := nse.GetExpirationTime(); t != nil {
		expires = time.Until(t.AsTime()).Round(time.Second).String()
	}
	cols = append(cols, nse.GetName(), strings.Join(nse.GetNetworkServiceNames(), ","), nse.GetUrl(), expires)
	if wide {
		var parts []string
		for _, svc := range slices.Sorted(maps.Keys(nse.GetNetworkServiceLabels())) {
			parts = append(parts, svc+":"+selector(nse.GetNetworkServiceLabels()[svc].GetLabels()))
		}
		cols = append(cols, orDash(strings.Join(parts, " ")))
	}
	return strings.Join(cols, "\t")
}

// routes renders a service's matches as `{src}->{dst},{dst}` items.
func routes(ns *regapi.NetworkService) string {
	var parts []string
	for _, m := range ns.GetMatches() {
		var dsts []string
		for _, r := range m.GetRoutes() {
			dsts = append(dsts, selector(r.GetDestinationSelector()))
		}
		p := selector(m.GetSourceSelector()) + "->" + strings.Join(dsts, ",")
		if m.GetFallthrough() {
			p += "(fallthrough)"
		}
		parts = append(parts, p)
	}
	return orDash(strings.Join(parts, " "))
}

// notes says what is valid about a service but likely a mistake: each match
// no client can reach, with the fix.
func notes(ns *regapi.NetworkService) string {
	var parts []string
	for _, u := range validate.UnreachableMatches(ns) {
		parts = append(parts, fmt.Sprintf("matches[%d] unreachable: %s", u.Match, u.Fix("")))
	}
	return orDash(strings.Join(parts, "; "))
}

func selector(m map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return "{" + strings.Join(kv, ",") + "}"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
