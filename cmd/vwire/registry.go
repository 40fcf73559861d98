package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/dnssrv"
	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore"
	"github.com/vwire/vwire/registry/store/kubestore"
	"github.com/vwire/vwire/registry/store/memstore"
)

type registryFlags struct {
	listen        string
	domains       []string
	store         string
	etcdEndpoints []string
	etcdPrefix    string
	etcdTLS       etcdstore.TLSFiles
	kubeconfig    string
	kubeNamespace string
	defaultExpiry time.Duration
	dnsServers    []string
}

func newRegistryCmd(g *globals) *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run a Network Service Registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g.serveMetrics(cmd.Context())
			return runRegistry(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", ":5002", "listen address (host:port or unix:///path); always mTLS")
	fl.StringSliceVar(&f.domains, "domain", nil, "registry domain this registry is authoritative for (repeatable)")
	fl.StringVar(&f.store, "store", "memory", "store: memory, etcd or kubernetes (networkservicemesh.io/v1 custom resources)")
	fl.StringSliceVar(&f.etcdEndpoints, "etcd-endpoints", []string{"http://127.0.0.1:2379"}, "etcd endpoints (with --store etcd)")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", "/vwire/registry/", "key prefix in etcd")
	fl.StringVar(&f.etcdTLS.Cert, "etcd-cert", "", "client certificate (PEM) for etcd over TLS; with --etcd-key")
	fl.StringVar(&f.etcdTLS.Key, "etcd-key", "", "private key (PEM) of --etcd-cert")
	fl.StringVar(&f.etcdTLS.CA, "etcd-ca", "", "CA certificates (PEM) that sign etcd's server certificate (default: the system's)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (with --store kubernetes; default: the pod's in-cluster configuration)")
	fl.StringVar(&f.kubeNamespace, "namespace", "", "namespace of the custom resources (with --store kubernetes; default: the pod's own, or the kubeconfig context's)")
	fl.DurationVar(&f.defaultExpiry, "default-expiry", registry.DefaultExpiry, "lifetime of an endpoint registered without expiration_time")
	addDNSFlag(cmd, &f)
	return cmd
}

func addDNSFlag(cmd *cobra.Command, f *registryFlags) {
	cmd.Flags().StringSliceVar(&f.dnsServers, "dns-server", nil,
		"DNS server(s) for other registry domains' SRV records ("+dnssrv.Service+".<domain>), IP[:port] (default: "+dnssrv.ResolvConf+")")
}

// locator finds other domains' registries; without a usable DNS
// configuration interdomain calls are refused, and the registry still runs.
func locator(g *globals, f registryFlags) (registry.Locator, error) {
	r, err := dnssrv.New(dnssrv.Config{Servers: f.dnsServers})
	if err != nil {
		if len(f.dnsServers) > 0 {
			return nil, fmt.Errorf("--dns-server: %w", err)
		}
		g.log.Warn("interdomain look-ups off: no DNS resolver", "err", err)
		return nil, nil
	}
	return r, nil
}

func openStore(ctx context.Context, g *globals, f registryFlags) (store.Store, error) {
	switch f.store {
	case "memory":
		return memstore.New(), nil
	case "etcd":
		tlsConfig, err := etcdstore.LoadTLS(f.etcdTLS)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key/--etcd-ca: %w", err)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := etcdstore.New(dctx, etcdstore.Config{Endpoints: f.etcdEndpoints, Prefix: f.etcdPrefix, TLS: tlsConfig, Logger: g.log})
		if err != nil {
			return nil, fmt.Errorf("etcd store at %s: %w", strings.Join(f.etcdEndpoints, ","), err)
		}
		return s, nil
	case "kubernetes":
		cfg, namespace, err := kubeConfig(f.kubeconfig, f.kubeNamespace)
		if err != nil {
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := kubestore.New(dctx, kubestore.Config{REST: cfg, Namespace: namespace, Resources: kubestore.NetworkServiceMesh(), Logger: g.log})
		if err != nil {
			return nil, fmt.Errorf("kubernetes store: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("--store %q: want memory, etcd or kubernetes", f.store)
	}
}

func runRegistry(ctx context.Context, g *globals, f registryFlags) error {
	src, err := g.identitySource(ctx, "registry", true)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := openStore(ctx, g, f)
	if err != nil {
		return err
	}
	defer st.Close()
	pol, err := g.loadPolicy()
	if err != nil {
		return err
	}
	loc, err := locator(g, f)
	if err != nil {
		return err
	}
	srv, err := registry.New(registry.Config{Domains: f.domains, Store: st, DefaultExpiry: f.defaultExpiry, Source: src, Policy: pol,
		Locator: loc, Metrics: g.metrics, Logger: g.log})
	if err != nil {
		return err
	}
	l, err := grpcutil.Listen(f.listen)
	if err != nil {
		return err
	}
	gs := grpcutil.NewServer(src, identity.AuthorizeTrustDomain(src), g.log)
	srv.Register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())

	g.log.Info("registry serving", "listen", l.Addr().String(), "id", src.ID().String(),
		"domains", f.domains, "store", f.store)
	return serveUntilDone(ctx, g, gs, l)
}

// kubeConfig returns the API server configuration and namespace for the
// kubernetes store: from the kubeconfig file when given, else in-cluster.
func kubeConfig(kubeconfig, namespace string) (*rest.Config, string, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("--store kubernetes: not in a pod (%w); give --kubeconfig", err)
		}
		if namespace == "" {
			data, err := os.ReadFile(serviceAccountNamespace)
			if err != nil {
				return nil, "", fmt.Errorf("--store kubernetes: give --namespace: %w", err)
			}
			namespace = strings.TrimSpace(string(data))
		}
		return cfg, namespace, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	if namespace == "" {
		if namespace, _, err = loader.Namespace(); err != nil {
			return nil, "", fmt.Errorf("--kubeconfig %s: namespace: %w", kubeconfig, err)
		}
	}
	return cfg, namespace, nil
}

// serviceAccountNamespace holds a pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
