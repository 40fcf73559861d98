package bench

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/mechanisms/kernel"
)

const (
	// startTimeout bounds the wait for a daemon to serve or an endpoint to
	// register.
	startTimeout = 60 * time.Second
	// requestTimeout bounds one Request or Close of the bench's client.
	requestTimeout = 30 * time.Second
	// tokenLifetime is how long the bench's connections live without a
	// refresh: longer than any run.
	tokenLifetime = time.Hour
	managerPort   = 5001
	registryPort  = 5002
	metricsPort   = 5003
	bridge        = "br0"
)

// fabricPrefix is the network between the bench's nodes; it exists only
// inside the bench's namespaces.
var fabricPrefix = netip.MustParsePrefix("10.113.0.0/24")

// mesh is vwire deployed in a World: a fabric namespace with a bridge, and
// one `vwire node` per node namespace (node1 embeds the registry), on the
// kernel dataplane.
type mesh struct {
	w     *World
	nodes []*node
	src   identity.Source // the bench client's identity, from the nodes' CA
}

// node is one `vwire node`.
type node struct {
	ns     *Netns
	name   string
	ip     netip.Addr
	socket string // the manager's unix socket
	proc   *Proc
	cc     *grpcutil.Conn // the bench's connection to the manager
	// metrics is the node's --metrics-listen address, inside ns (empty
	// unless meshOptions.Metrics).
	metrics string
}

// meshOptions choose the nodes' dataplane.
type meshOptions struct {
	// WireGuard is the kernel dataplane's --wireguard.
	WireGuard string
	// VPPBin, when set, puts the nodes on the VPP dataplane: each
	// forwarder starts a VPP (VPPPluginPath) with eth0 as its uplink.
	VPPBin, VPPPluginPath string
	// MemifReserve, when above 0, is each VPP node's --vpp-memif-reserve.
	MemifReserve int
	// Metrics makes each node serve /metrics on its fabric address
	// (metricsPort), inside its namespace.
	Metrics bool
}

// newMesh makes the fabric and starts n nodes on the kernel dataplane,
// WireGuard off.
func newMesh(ctx context.Context, w *World, n int) (*mesh, error) {
	return newMeshWith(ctx, w, n, meshOptions{WireGuard: "off"})
}

// newMeshWith makes the fabric and starts n nodes as o says.
func newMeshWith(ctx context.Context, w *World, n int, o meshOptions) (_ *mesh, err error) {
	m := &mesh{w: w}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	fabric, err := w.Netns("fabric")
	if err != nil {
		return nil, err
	}
	gw := fabricPrefix.Addr().Next()
	if err := ipAll(fabric,
		[]string{"link", "add", "name", bridge, "type", "bridge"},
		[]string{"addr", "add", netip.PrefixFrom(gw, 24).String(), "dev", bridge},
		[]string{"link", "set", bridge, "up"},
	); err != nil {
		return nil, err
	}
	registry := ""
	for i := range n {
		name := fmt.Sprintf("node%d", i+1)
		ns, err := w.Netns(name)
		if err != nil {
			return nil, err
		}
		b := fabricPrefix.Addr().As4()
		b[3] = byte(11 + i)
		nd := &node{ns: ns, name: name, ip: netip.AddrFrom4(b), socket: filepath.Join(w.Dir, name, "manager.sock")}
		port := fmt.Sprintf("p%d", i+1)
		if err := ipAll(fabric,
			[]string{"link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", ns.Name},
			[]string{"link", "set", port, "master", bridge, "up"},
		); err != nil {
			return nil, err
		}
		if err := ipAll(ns,
			[]string{"addr", "add", netip.PrefixFrom(nd.ip, 24).String(), "dev", "eth0"},
			[]string{"link", "set", "eth0", "up"},
			[]string{"route", "add", "default", "via", gw.String(), "dev", "eth0"},
		); err != nil {
			return nil, err
		}
		args := []string{"node",
			"--node-name", name,
			"--socket", nd.socket,
			"--manager-listen", net.JoinHostPort(nd.ip.String(), fmt.Sprint(managerPort)),
			"--advertise-url", "tcp://" + net.JoinHostPort(nd.ip.String(), fmt.Sprint(managerPort)),
			"--forwarder-socket", "unix://" + filepath.Join(w.Dir, name, "forwarder.sock"),
			"--tunnel-ip", nd.ip.String(),
			"--max-token-lifetime", tokenLifetime.String(),
			"--state-dir", w.Dir,
			"--log-level", logLevel(),
		}
		args = append(args, o.dataplaneArgs(filepath.Join(w.Dir, name, "vpp"))...)
		if o.Metrics {
			nd.metrics = net.JoinHostPort(nd.ip.String(), fmt.Sprint(metricsPort))
			args = append(args, "--metrics-listen", nd.metrics)
		}
		if i == 0 {
			registry = net.JoinHostPort(nd.ip.String(), fmt.Sprint(registryPort))
			args = append(args, "--registry-listen", registry)
		} else {
			args = append(args, "--registry", registry)
		}
		if err := mkdirAll(filepath.Join(w.Dir, name)); err != nil {
			return nil, err
		}
		if nd.proc, err = w.Start(ns, name, w.Bin, args...); err != nil {
			return nil, err
		}
		// node1 must have made the development CA before node2 starts.
		if err := nd.proc.WaitLog(ctx, startTimeout, "forwarder registered"); err != nil {
			return nil, err
		}
		m.nodes = append(m.nodes, nd)
	}
	src, err := identity.New(ctx, identity.Config{StateDir: w.Dir, Component: "bench"})
	if err != nil {
		return nil, err
	}
	m.src = src
	for _, nd := range m.nodes {
		if nd.cc, err = grpcutil.DialPeer("unix://"+nd.socket, src, identity.AuthorizeTrustDomain(src)); err != nil {
			return nil, fmt.Errorf("%s: %w", nd.name, err)
		}
	}
	return m, nil
}

// dataplaneArgs are a node's dataplane flags; vppDir is its VPP's state
// directory.
func (o meshOptions) dataplaneArgs(vppDir string) []string {
	if o.VPPBin == "" {
		// The default mesh's rows say VXLAN: the kernel dataplane would
		// otherwise take WireGuard (userspace here) for remote IP vWires.
		return []string{"--dataplane", "kernel", "--wireguard", cmp.Or(o.WireGuard, "off")}
	}
	args := []string{"--dataplane", "vpp", "--vpp-bin", o.VPPBin, "--vpp-state-dir", vppDir,
		"--uplink", "eth0", "--vpp-poll-sleep-usec", "100"}
	if o.VPPPluginPath != "" {
		args = append(args, "--vpp-plugin-path", o.VPPPluginPath)
	}
	if o.MemifReserve > 0 {
		args = append(args, "--vpp-memif-reserve", fmt.Sprint(o.MemifReserve))
	}
	return args
}

// close releases the bench's connections; the World stops the processes.
func (m *mesh) close() {
	for _, nd := range m.nodes {
		if nd.cc != nil {
			nd.cc.Close()
		}
	}
	if m.src != nil {
		m.src.Close()
	}
}

// logLevel is the --log-level of the bench's processes: info, or
// VWIRE_BENCH_LOG_LEVEL (debug logs each gRPC call with its duration; with
// VWIRE_BENCH_KEEP the logs stay in the world's directory).
func logLevel() string { return cmp.Or(os.Getenv("VWIRE_BENCH_LOG_LEVEL"), "info") }

func ipAll(ns *Netns, cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := ns.IP(c...); err != nil {
			return err
		}
	}
	return nil
}

// endpoint is a running `vwire nse icmp-responder`.
type endpoint struct {
	name, service, cidr string
	ns                  *Netns
	node                *node
	proc                *Proc
	args                []string // more flags of `vwire nse icmp-responder`
}

// startEndpoint starts an icmp-responder in ns registered through nd's
// manager and waits until it is registered.
func (m *mesh) startEndpoint(ctx context.Context, nd *node, ns *Netns, name, service, cidr string) (*endpoint, error) {
	e := &endpoint{name: name, service: service, cidr: cidr, ns: ns, node: nd}
	return e, m.restartEndpoint(ctx, e)
}

// restartEndpoint starts e's process (again).
func (m *mesh) restartEndpoint(ctx context.Context, e *endpoint) error {
	args := append([]string{"nse", "icmp-responder",
		"--name", e.name, "--service", e.service, "--cidr", e.cidr,
		"--connect-to", "unix://" + e.node.socket,
		"--listen", "unix://" + filepath.Join(m.w.Dir, e.name+".sock"),
		"--state-dir", m.w.Dir, "--log-level", logLevel()}, e.args...)
	var err error
	e.proc, err = m.w.Start(e.ns, fmt.Sprintf("%s-%d", e.name, time.Now().UnixNano()), m.w.Bin, args...)
	if err != nil {
		return err
	}
	return e.proc.WaitLog(ctx, startTimeout, "msg=registered", "nse="+e.name)
}

// request asks nd's manager for service with a kernel interface ifname in
// ns, as an NSM client would, and returns the connection once the manager
// replies: both forwarders have built the vWire by then.
func (m *mesh) request(ctx context.Context, nd *node, ns *Netns, service, ifname string) (*networkservice.Connection, error) {
	return m.requestMech(ctx, nd, service, kernel.New(kernel.Params{Name: ifname, NetNSURL: "file://" + ns.Path()}))
}

// requestMech asks nd's manager for service with the client's mechanism
// mech (a KERNEL interface, a MEMIF socket...), as request does.
func (m *mesh) requestMech(ctx context.Context, nd *node, service string, mech *networkservice.Mechanism) (*networkservice.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	id := uuid.NewString()
	seg := &networkservice.PathSegment{Name: "bench", Id: id, Expires: timestamppb.New(time.Now().Add(tokenLifetime))}
	req := &networkservice.NetworkServiceRequest{
		Connection: &networkservice.Connection{
			Id: id, NetworkService: service,
			Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{seg}},
		},
		MechanismPreferences: []*networkservice.Mechanism{mech},
	}
	aud, err := nd.cc.PeerID(ctx)
	if err != nil {
		return nil, err
	}
	svid, err := m.src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	if ctx, err = token.Stamp(ctx, seg, svid, aud, seg.GetExpires().AsTime()); err != nil {
		return nil, err
	}
	conn, err := networkservice.NewNetworkServiceClient(nd.cc).Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("request %s on %s: %w", service, nd.name, err)
	}
	return conn, nil
}

// closeConn closes conn through nd's manager.
func (m *mesh) closeConn(ctx context.Context, nd *node, conn *networkservice.Connection) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	if _, err := networkservice.NewNetworkServiceClient(nd.cc).Close(ctx, conn); err != nil {
		return fmt.Errorf("close %s: %w", conn.GetId(), err)
	}
	return nil
}

// dstAddr is the endpoint's address of conn, without its prefix length.
func dstAddr(conn *networkservice.Connection) (string, error) {
	ips := conn.GetContext().GetIpContext().GetDstIpAddrs()
	if len(ips) == 0 {
		return "", fmt.Errorf("connection %s has no destination address", conn.GetId())
	}
	p, err := netip.ParsePrefix(ips[0])
	if err != nil {
		return ips[0], nil
	}
	return p.Addr().String(), nil
}

// pingUntilReply pings addr from ns until one reply comes.
func pingUntilReply(ctx context.Context, ns *Netns, addr string, timeout time.Duration) error {
	return poll(ctx, timeout, func() error {
		out, err := ns.Exec(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
		if err != nil {
			return fmt.Errorf("%s: ping %s: %v: %s", ns.Label, addr, err, tail(out, 2))
		}
		return nil
	})
}
