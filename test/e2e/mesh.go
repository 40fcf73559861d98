package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vwire/vwire/workload/nsc"
)

// Ports every node uses on its fabric address.
const (
	ManagerPort  = 5001
	RegistryPort = 5002
)

// StartTimeout bounds the wait for a daemon to serve, an endpoint to
// register or a client to connect.
const StartTimeout = 60 * time.Second

// MeshOptions shape a Mesh.
type MeshOptions struct {
	// Nodes is the number of nodes, node1... (at least 1).
	Nodes int
	// Embedded runs each node as one `vwire node` process (node1 embedding
	// the registry) instead of a registry and, per node, a manager and a
	// forwarder.
	Embedded bool
	// MaxTokenLifetime is given to managers and forwarders when set.
	MaxTokenLifetime time.Duration
	// LogLevel of the daemons (default debug: the logs are only shown when
	// a test fails).
	LogLevel string
	// Fabric is k of the fabric's 10.111.<k>.0/24 (default 1).
	Fabric int
	// ForwarderArgs are more flags for each forwarder (or `vwire node`).
	ForwarderArgs []string
	// ManagerArgs and RegistryArgs are more flags for each manager and
	// for the registry (not used with Embedded).
	ManagerArgs  []string
	RegistryArgs []string
	// BeforeStart, when set, runs once the nodes' namespaces exist and
	// before any vwire process starts (e.g. to start an etcd the registry
	// uses).
	BeforeStart func(*Mesh)
	// VPP, when its Bin is set, runs each node on the VPP dataplane: the
	// harness starts the node's VPP and the forwarder attaches to it.
	VPP VPPEnv
	// VPPNodes, when set with VPP, names the nodes (by index, node1 is 0)
	// that run VPP; the others run the kernel dataplane: a mixed mesh.
	VPPNodes []int
	// WireGuard is each kernel forwarder's --wireguard; "off" when empty,
	// so that remote vWires are VXLAN unless a test asks for WireGuard.
	WireGuard string
	// AutoAddress leaves out --advertise-url and --tunnel-ip, and listens
	// on every address (":port"): the daemons find the node's address from
	// its default route, as on a real host.
	AutoAddress bool
}

// Mesh is vwire deployed on a Lab's fabric: a registry on node1, and a
// manager and a kernel forwarder on each node (or one `vwire node` each).
type Mesh struct {
	Lab      *Lab
	Fabric   *Fabric
	Opts     MeshOptions
	Registry string // host:port on node1's fabric address
	// RegistryProc is the registry process; nil when node1 embeds it.
	RegistryProc *Proc
	Nodes        []*MeshNode
}

// MeshNode is one node of a Mesh.
type MeshNode struct {
	*Node
	Name            string // --node-name
	ManagerSocket   string // unix socket for workloads
	ForwarderSocket string
	ManagerURL      string // tcp://<fabric address>:ManagerPort
	// Manager is the manager process, or the `vwire node` process when
	// embedded; Forwarder is nil then.
	Manager   *Proc
	Forwarder *Proc
	// VPP is the node's VPP process on a VPP mesh.
	VPP *Proc

	mesh *Mesh
}

// ConnectTo is the --connect-to URL of the node's manager.
func (n *MeshNode) ConnectTo() string { return "unix://" + n.ManagerSocket }

// NewMesh makes a fabric with opts.Nodes nodes and starts vwire on them,
// returning once every manager serves and has its forwarder.
func NewMesh(l *Lab, opts MeshOptions) *Mesh {
	l.T.Helper()
	if opts.Nodes < 1 {
		opts.Nodes = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if lvl := os.Getenv("VWIRE_E2E_LOG_LEVEL"); lvl != "" {
		opts.LogLevel = lvl // to debug a test that asks for less
	}
	if opts.Fabric == 0 {
		opts.Fabric = 1
	}
	if opts.WireGuard == "" {
		opts.WireGuard = "off"
	}
	m := &Mesh{Lab: l, Fabric: l.Fabric(opts.Fabric), Opts: opts}
	for i := range opts.Nodes {
		name := fmt.Sprintf("node%d", i+1)
		node := m.Fabric.AddNode(name)
		dir := filepath.Join(l.Dir, name)
		mkdir(l, dir)
		m.Nodes = append(m.Nodes, &MeshNode{
			Node:            node,
			Name:            name,
			ManagerSocket:   filepath.Join(dir, "manager.sock"),
			ForwarderSocket: filepath.Join(dir, "forwarder.sock"),
			ManagerURL:      "tcp://" + net.JoinHostPort(node.IP.String(), fmt.Sprint(ManagerPort)),
			mesh:            m,
		})
	}
	m.Registry = net.JoinHostPort(m.Nodes[0].IP.String(), fmt.Sprint(RegistryPort))
	if opts.BeforeStart != nil {
		opts.BeforeStart(m)
	}
	for _, n := range m.Nodes {
		if n.OnVPP() {
			n.StartVPP()
		}
	}

	if opts.Embedded {
		for i, n := range m.Nodes {
			n.startEmbedded(i == 0)
		}
	} else {
		m.StartRegistry()
		for _, n := range m.Nodes {
			n.StartManager()
			n.StartForwarder()
		}
	}
	for _, n := range m.Nodes {
		n.Manager.WaitLogLine(StartTimeout, "forwarder registered")
	}
	return m
}

func mkdir(l *Lab, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.T.Fatal(err)
	}
}

// common prepends the subcommand and appends the flags every vwire process
// of the mesh takes.
func (m *Mesh) common(sub string, args ...string) []string {
	out := append(strings.Fields(sub), args...)
	return append(out, "--state-dir", m.Lab.Dir, "--log-level", m.Opts.LogLevel)
}

func (m *Mesh) lifetime() []string {
	if m.Opts.MaxTokenLifetime == 0 {
		return nil
	}
	return []string{"--max-token-lifetime", m.Opts.MaxTokenLifetime.String()}
}

func (n *MeshNode) managerFlags() []string {
	if n.mesh.Opts.AutoAddress {
		return []string{"--node-name", n.Name, "--socket", n.ManagerSocket, "--manager-listen", fmt.Sprintf(":%d", ManagerPort)}
	}
	return []string{
		"--node-name", n.Name,
		"--socket", n.ManagerSocket,
		"--manager-listen", net.JoinHostPort(n.IP.String(), fmt.Sprint(ManagerPort)),
		"--advertise-url", n.ManagerURL,
	}
}

func (n *MeshNode) tunnelFlags() []string {
	if n.mesh.Opts.AutoAddress {
		return nil
	}
	return []string{"--tunnel-ip", n.IP.String()}
}

// StartRegistry starts the registry on node1 (again, after a kill) and
// waits until it serves.
func (m *Mesh) StartRegistry() *Proc {
	m.Lab.T.Helper()
	args := append(m.common("registry", "--listen", m.Registry), m.Opts.RegistryArgs...)
	m.RegistryProc = m.Lab.Start(m.Nodes[0].Netns, "registry", args...)
	m.RegistryProc.WaitLogLine(StartTimeout, "registry serving")
	return m.RegistryProc
}

// StartManager starts the node's manager (again, after a kill) and waits
// until it serves on its unix socket.
func (n *MeshNode) StartManager() *Proc {
	m := n.mesh
	m.Lab.T.Helper()
	args := m.common("manager", append(n.managerFlags(), "--registry", m.Registry)...)
	args = append(append(args, m.lifetime()...), m.Opts.ManagerArgs...)
	n.Manager = m.Lab.Start(n.Netns, n.Name+"-manager", args...)
	WaitUnixSocket(m.Lab.T, n.Manager, n.ManagerSocket)
	return n.Manager
}

func (n *MeshNode) startEmbedded(withRegistry bool) {
	m := n.mesh
	args := append(n.managerFlags(),
		"--forwarder-socket", "unix://"+n.ForwarderSocket)
	args = append(args, n.dataplaneFlags()...)
	args = append(args, n.tunnelFlags()...)
	switch {
	case withRegistry && m.Opts.AutoAddress:
		args = append(args, "--registry-listen", fmt.Sprintf(":%d", RegistryPort))
	case withRegistry:
		args = append(args, "--registry-listen", m.Registry)
	default:
		args = append(args, "--registry", m.Registry)
	}
	args = append(m.common("node", args...), m.lifetime()...)
	args = append(args, m.Opts.ForwarderArgs...)
	n.Manager = m.Lab.Start(n.Netns, n.Name, args...)
	WaitUnixSocket(m.Lab.T, n.Manager, n.ManagerSocket)
}

// StartForwarder starts the node's forwarder (again, after a kill)
// and waits until it serves. Its manager learns of it by itself.
func (n *MeshNode) StartForwarder() *Proc {
	m := n.mesh
	m.Lab.T.Helper()
	args := m.common("forwarder",
		"--listen", "unix://"+n.ForwarderSocket,
		"--connect-to", n.ConnectTo(),
		"--node-name", n.Name)
	args = append(append(append(append(args, n.dataplaneFlags()...), n.tunnelFlags()...), m.lifetime()...), m.Opts.ForwarderArgs...)
	n.Forwarder = m.Lab.Start(n.Netns, n.Name+"-forwarder", args...)
	WaitUnixSocket(m.Lab.T, n.Forwarder, n.ForwarderSocket)
	return n.Forwarder
}

// WaitUnixSocket waits until something accepts connections on the unix
// socket at path (p, if not nil, must not exit meanwhile). A pathname
// socket is reachable from every network namespace.
func WaitUnixSocket(t testing.TB, p *Proc, path string) {
	t.Helper()
	err := Poll(StartTimeout, func() error {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return Permanent(fmt.Errorf("%s: %w: %v", p, ErrExited, p.err))
		}
		return err
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", path, err)
	}
}

// EndpointOptions describe an icmp-responder.
type EndpointOptions struct {
	Name    string // --name, required
	Service string // --service, required
	CIDR    string // --cidr (the responder's default when empty)
	Payload string // --payload IP or ETHERNET (IP when empty)
	Labels  string // --labels k=v,...
	Args    []string
}

// Endpoint is a running icmp-responder.
type Endpoint struct {
	*Proc
	Opts EndpointOptions
	Node *MeshNode
}

// StartICMPResponder starts an icmp-responder in the workload namespace ws,
// registered through n's manager, and waits until the manager has
// registered it.
func (n *MeshNode) StartICMPResponder(ws *Netns, o EndpointOptions) *Endpoint {
	m := n.mesh
	m.Lab.T.Helper()
	args := []string{
		"--name", o.Name,
		"--service", o.Service,
		"--connect-to", n.ConnectTo(),
		"--listen", "unix://" + filepath.Join(m.Lab.Dir, o.Name+".sock"),
	}
	if o.CIDR != "" {
		args = append(args, "--cidr", o.CIDR)
	}
	if o.Payload != "" {
		args = append(args, "--payload", o.Payload)
	}
	if o.Labels != "" {
		args = append(args, "--labels", o.Labels)
	}
	args = append(args, o.Args...)
	p := m.Lab.Start(ws, o.Name, m.common("nse icmp-responder", args...)...)
	n.Manager.WaitLogLine(StartTimeout, "endpoint registered", "name="+o.Name)
	return &Endpoint{Proc: p, Opts: o, Node: n}
}

// NSC is a running `vwire nsc --output json`.
type NSC struct {
	*Proc
	URLs []string
}

// StartNSC starts a client in the workload namespace ws, asking n's manager
// for urls (kernel://SERVICE/IFNAME...).
func (n *MeshNode) StartNSC(ws *Netns, name string, urls ...string) *NSC {
	m := n.mesh
	m.Lab.T.Helper()
	args := append([]string{"--name", name, "--connect-to", n.ConnectTo(), "--output", "json"}, urls...)
	return &NSC{Proc: m.Lab.Start(ws, name, m.common("nsc", args...)...), URLs: urls}
}

// Reports parses what the client printed so far.
func (c *NSC) Reports() ([]nsc.Report, error) {
	var rs []nsc.Report
	out := c.Output()
	// The client may be writing a line as we read: only whole lines count.
	out = out[:strings.LastIndexByte(out, '\n')+1]
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var r nsc.Report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: output line %q: %w", c, line, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Connections returns, per URL, the latest "connected" or "changed" report.
func (c *NSC) Connections() (map[string]nsc.Report, error) {
	rs, err := c.Reports()
	if err != nil {
		return nil, err
	}
	conns := map[string]nsc.Report{}
	for _, r := range rs {
		if r.Event == "connected" || r.Event == "changed" {
			conns[r.URL] = r
		}
	}
	return conns, nil
}

// Current returns, per URL, the latest view of its connection the client
// printed: its own Request's ("connected", "changed") or, newer, its
// manager's MonitorConnections event with the connection UP (a heal the
// client has not refreshed yet). Use it for addresses, not for ids.
func (c *NSC) Current() (map[string]nsc.Report, error) {
	rs, err := c.Reports()
	if err != nil {
		return nil, err
	}
	conns := map[string]nsc.Report{}
	for _, r := range rs {
		if r.Event == "connected" || r.Event == "changed" || (r.Event == "monitor" && r.State == "UP") {
			conns[r.URL] = r
		}
	}
	return conns, nil
}

// WaitConnected waits until every URL of the client is connected and
// returns their reports.
func (c *NSC) WaitConnected() map[string]nsc.Report {
	t := c.lab.T
	t.Helper()
	var conns map[string]nsc.Report
	Eventually(t, StartTimeout, fmt.Sprintf("%s is connected to %s", c, strings.Join(c.URLs, ", ")), func() error {
		var err error
		if conns, err = c.Connections(); err != nil {
			return Permanent(err)
		}
		var missing []string
		for _, u := range c.URLs {
			if _, ok := conns[u]; !ok {
				missing = append(missing, u)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if c.Exited() {
			return Permanent(fmt.Errorf("%w: %v", ErrExited, c.err))
		}
		return fmt.Errorf("not connected: %s", strings.Join(missing, ", "))
	})
	return conns
}

// Addr strips the prefix length from an address of an IP context.
func Addr(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	return s
}

// CheckClientSide fails the test unless the client's namespace holds the
// connection's interface, up, with its source addresses.
func CheckClientSide(l *Lab, ws *Netns, r nsc.Report) {
	l.T.Helper()
	ifname := r.Parameters["name"]
	link, ok, err := ws.Link(ifname)
	if err != nil {
		l.T.Fatal(err)
	}
	if !ok {
		l.T.Fatalf("%s: no interface %q for %s (report %+v)", ws.Label, ifname, r.URL, r)
	}
	if !link.Up() {
		l.T.Errorf("%s: interface %s is not up: %v", ws.Label, ifname, link.Flags)
	}
	addrs, err := ws.Addrs(ifname)
	if err != nil {
		l.T.Fatal(err)
	}
	for _, src := range r.SrcIPs {
		if !slices.Contains(addrs, src) {
			l.T.Errorf("%s: %s has %v, want %s among them", ws.Label, ifname, addrs, src)
		}
	}
}
