package main

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/spf13/cobra"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/forwarder/kernel"
	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/registration"
	"github.com/vwire/vwire/internal/regpath"
	"github.com/vwire/vwire/manager"
)

type forwarderFlags struct {
	dataplane        string
	listen           string
	connectTo        string
	nodeName         string
	name             string
	labels           []string
	tunnelIP         string
	publicIP         string
	maxTokenLifetime time.Duration
	grace            time.Duration
	vppAPISocket     string
	vppBin           string
	vppPluginPath    string
	vppStateDir      string
	vppStatsSocket   string
	vppPollSleepUsec int
	vppMemifReserve  int
	vppMaxInFlight   int
	vppMainHeap      string
	vppHealth        vpp.HealthCheck
	uplink           string
	wireguard        string
}

func addForwarderFlags(cmd *cobra.Command, f *forwarderFlags, listenFlag string) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataplane, "dataplane", "auto", "dataplane: kernel, vpp or auto (vpp when available, else kernel)")
	fl.StringVar(&f.listen, listenFlag, "unix:///var/lib/vwire/forwarder.sock", "where the manager reaches this forwarder")
	fl.StringSliceVar(&f.labels, "forwarder-labels", []string{"p2p=true"}, "labels the manager selects this forwarder by")
	fl.StringVar(&f.tunnelIP, "tunnel-ip", "", "this node's address for tunnels (default: the address of the default route's interface)")
	fl.StringVar(&f.publicIP, "public-ip", "", "this node's tunnel address as other registry domains reach it, when it differs from --tunnel-ip (NAT)")
	fl.DurationVar(&f.grace, "reconcile-grace", kernel.DefaultGrace, "how long links from a previous run wait for their connection's refresh")
	fl.StringVar(&f.vppAPISocket, "vpp-api-socket", "", "attach to the VPP serving this API socket (default: start VPP with --vpp-bin)")
	fl.StringVar(&f.vppBin, "vpp-bin", "vpp", "VPP binary to start when no --vpp-api-socket is given")
	fl.StringVar(&f.vppPluginPath, "vpp-plugin-path", "", "VPP plugin directory (default: VPP's own)")
	fl.StringVar(&f.vppStateDir, "vpp-state-dir", "", "directory for the VPP this forwarder starts: config, API, CLI and stats sockets (default <state-dir>/vpp; give each forwarder on a host its own)")
	fl.StringVar(&f.vppStatsSocket, "vpp-stats-socket", "", "stats socket of the VPP given by --vpp-api-socket (default: stats.sock beside its API socket)")
	fl.IntVar(&f.vppPollSleepUsec, "vpp-poll-sleep-usec", 0, "make the VPP this forwarder starts sleep this long between polls, for a VPP that shares its cores (0: poll flat out, one core)")
	fl.IntVar(&f.vppMemifReserve, "vpp-memif-reserve", vpp.DefaultMemifReserve, "memifs VPP's memif pool is grown to hold at start and after VPP restarts, against a VPP 25.10 crash when it grows while in use; local memif vWires past it are refused (0: no reserve and no bound; about two per local memif vWire)")
	fl.IntVar(&f.vppMaxInFlight, "vpp-max-in-flight", vpp.DefaultMaxInFlight, "vWire operations (Connect, Disconnect) talking to VPP at once; the others wait in the forwarder, removals first, and one whose caller gives up while it waits costs VPP nothing (0: no bound)")
	fl.StringVar(&f.vppMainHeap, "vpp-main-heap", vppstart.DefaultMainHeapSize, "main heap of the VPP this forwarder starts (512M, 1G...): about 80 kB a VXLAN and 30 kB a WireGuard vWire with memif ends, besides VPP's own ~100 MB")
	fl.DurationVar(&f.vppHealth.Interval, "vpp-health-interval", vpp.DefaultHealthInterval, "time between govpp's health-check probes of VPP")
	fl.DurationVar(&f.vppHealth.Timeout, "vpp-health-timeout", vpp.DefaultHealthTimeout, "a health-check probe unanswered this long is a miss (VPP's main thread may be busy building objects)")
	fl.IntVar(&f.vppHealth.Threshold, "vpp-health-threshold", vpp.DefaultHealthThreshold, "misses in a row after which govpp declares VPP not responding and drops the connection (calls in flight fail)")
	fl.StringVar(&f.wireguard, "wireguard", kernel.WireGuardAuto, "kernel dataplane's WireGuard for remote IP vWires: auto (the kernel's where it has it, else userspace), kernel, userspace (wireguard-go in this process) or off")
	fl.StringVar(&f.uplink, "uplink", "", "host interface VPP sends tunnels out of (af_packet); without it the VPP dataplane offers no REMOTE mechanism")
}

func newForwarderCmd(g *globals) *cobra.Command {
	var f forwarderFlags
	cmd := &cobra.Command{
		Use:   "forwarder",
		Short: "Run a node's forwarder (builds vWires in the dataplane)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			g.serveMetrics(cmd.Context())
			return runForwarder(cmd.Context(), g, f)
		},
	}
	addForwarderFlags(cmd, &f, "listen")
	fl := cmd.Flags()
	fl.StringVar(&f.connectTo, "connect-to", "unix://"+manager.DefaultSocket, "the node's manager")
	fl.StringVar(&f.nodeName, "node-name", "", "node name (default $NODE_NAME, else the host name)")
	fl.StringVar(&f.name, "name", "", "name in connection paths (default forwarder-<node name>)")
	fl.DurationVar(&f.maxTokenLifetime, "max-token-lifetime", forwarder.DefaultMaxTokenLifetime, "longest a vWire lives without a refresh")
	return cmd
}

// validate checks the flags that need no system to check, so that a bad
// value stops the command before it starts anything.
func (f forwarderFlags) validate() error {
	if !slices.Contains(kernel.WireGuardModes, f.wireguard) {
		return fmt.Errorf("--wireguard %q: want one of %s", f.wireguard, strings.Join(kernel.WireGuardModes, ", "))
	}
	if f.vppMaxInFlight < 0 {
		return fmt.Errorf("--vpp-max-in-flight %d: want 0 (no bound) or more", f.vppMaxInFlight)
	}
	if f.vppPollSleepUsec < 0 {
		return fmt.Errorf("--vpp-poll-sleep-usec %d: want 0 or more", f.vppPollSleepUsec)
	}
	return f.vppHealth.Validate()
}

func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// dataplane is what the forwarder command needs of a dataplane.
type dataplane interface {
	forwarder.Dataplane
	Start(context.Context) error
	Close() error
}

// openDataplane picks the dataplane the flags ask for: vpp when asked, or
// with auto when VPP is there to attach to or to start; kernel otherwise.
func openDataplane(ctx context.Context, g *globals, f forwarderFlags, tunnel netip.Addr) (dataplane, error) {
	kind := f.dataplane
	if kind == "auto" {
		kind = "kernel"
		if _, err := exec.LookPath(f.vppBin); err == nil || f.vppAPISocket != "" {
			kind = "vpp"
		}
	}
	switch kind {
	case "kernel":
		wg := f.wireguard
		if public, err := netip.ParseAddr(f.publicIP); err == nil && wg == kernel.WireGuardAuto && !forwarder.HostHas(public) {
			// Behind a NAT: WireGuard through it has not been tested
			// (the interdomain NAT test runs VXLAN), so auto keeps to
			// what has been.
			g.log.Warn("--public-ip is not on this host (a NAT): remote vWires use VXLAN; --wireguard userspace or kernel overrides", "public_ip", f.publicIP)
			wg = kernel.WireGuardOff
		}
		d, err := kernel.New(kernel.Config{TunnelIP: tunnel, Grace: f.grace, WireGuard: wg, StateDir: filepath.Join(g.stateDir, "kernel"), Logger: g.log.With("dataplane", "kernel")})
		if err != nil {
			return nil, err
		}
		g.metrics.MustRegister(d.Collector())
		return d, nil
	case "vpp":
		m := vpp.NewMetrics()
		// govpp keeps its health check and logger in package variables,
		// read by its goroutines without a lock: they are set once, here,
		// before this process's one VPP connection.
		if err := vpp.SetupGovpp(f.vppHealth, g.log.With("component", "govpp"), m); err != nil {
			return nil, err
		}
		g.metrics.MustRegister(m)
		stats := f.vppStatsSocket
		if stats == "" && f.vppAPISocket != "" {
			stats = filepath.Join(filepath.Dir(f.vppAPISocket), "stats.sock")
		}
		maxInFlight := f.vppMaxInFlight
		if maxInFlight == 0 {
			maxInFlight = -1 // vpp.Config's "no bound"
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return vpp.New(cctx, vpp.Config{
			APISocket: f.vppAPISocket, StatsSocket: stats, Bin: f.vppBin, PluginPath: f.vppPluginPath,
			PollSleepUsec: f.vppPollSleepUsec, MemifReserve: f.vppMemifReserve, MainHeapSize: f.vppMainHeap,
			MaxInFlight: maxInFlight,
			StateDir:    cmp.Or(f.vppStateDir, filepath.Join(g.stateDir, "vpp")), Uplink: f.uplink, TunnelIP: tunnel,
			Grace: f.grace, Logger: g.log.With("dataplane", "vpp"), Metrics: m,
		})
	default:
		return nil, fmt.Errorf("--dataplane %q: want kernel, vpp or auto", f.dataplane)
	}
}

func runForwarder(ctx context.Context, g *globals, f forwarderFlags) error {
	if f.nodeName == "" {
		mf := managerFlags{}
		if err := mf.resolveNodeName(); err != nil {
			return err
		}
		f.nodeName = mf.nodeName
	}
	if f.name == "" {
		f.name = "forwarder-" + f.nodeName
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return err
	}
	var tunnel netip.Addr
	if f.tunnelIP != "" {
		if tunnel, err = netip.ParseAddr(f.tunnelIP); err != nil {
			return fmt.Errorf("--tunnel-ip %q: %w", f.tunnelIP, err)
		}
	} else if ip, err := defaultRouteIP(); err == nil {
		tunnel, _ = netip.AddrFromSlice(ip.To4())
	} else {
		g.log.Warn("no tunnel address: remote vWires are not possible on this node", "err", err)
	}
	var public netip.Addr
	if f.publicIP != "" {
		if public, err = netip.ParseAddr(f.publicIP); err != nil {
			return fmt.Errorf("--public-ip %q: %w", f.publicIP, err)
		}
	}
	src, err := g.identitySource(ctx, "forwarder", true)
	if err != nil {
		return err
	}
	defer src.Close()
	authz := identity.AuthorizeTrustDomain(src)

	dp, err := openDataplane(ctx, g, f, tunnel)
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	pool := grpcutil.NewPool(src, authz)
	defer pool.Close()
	fwd, err := forwarder.New(forwarder.Config{Name: f.name, Dataplane: dp, Source: src, Pool: pool, MaxTokenLifetime: f.maxTokenLifetime,
		PublicIP: public, Logger: g.log.With("component", "forwarder")})
	if err != nil {
		return err
	}
	g.metrics.MustRegister(fwd.Collector())
	// Stopping leaves the dataplane as it is: a restarted forwarder takes
	// its vWires back on their next refresh.
	defer fwd.Shutdown()
	gs := grpcutil.NewServer(src, authz, g.log)
	fwd.Register(gs)

	mgr, err := regpath.DialRegistrant(f.connectTo, src, authz)
	if err != nil {
		return err
	}
	defer mgr.Close()
	go registration.Keep(ctx, regapi.NewNetworkServiceEndpointRegistryClient(mgr), &regapi.NetworkServiceEndpoint{
		Name: f.name, Url: f.listen, NetworkServiceNames: []string{forwarder.ServiceName},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{forwarder.ServiceName: {Labels: labels}},
	}, 30*time.Second, g.log.With("component", "forwarder"), nil, mgr.Reconnected(ctx))
	return serveAll(ctx, g, gs, []string{f.listen}, "forwarder", "name", f.name, "tunnel_ip", tunnel, "manager", f.connectTo)
}
