package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The restart suites of the heal issue. Each starts a mesh of two nodes
// with 100 live vWires (10 client namespaces, each running one `vwire nsc`
// with 10 connections; two endpoints of one service on node2; half the
// clients on node1, their vWires crossing the fabric in kernel vxlans, half
// on node2 beside the endpoints), disrupts one kind of process, and checks
// what must hold:
//
//   - registry (etcd store) killed and started again: every record is
//     still there, no one registers anything again by hand, a new client
//     is served at once, the 100 vWires keep their connections;
//   - a manager killed with SIGKILL and started again (each node's in
//     turn): every vWire carries ping while no manager runs, and the new
//     manager knows every connection it had again from the clients'
//     refreshes, on the same links, with the same connection ids;
//   - a forwarder killed with SIGKILL and started again (each node's in
//     turn): every vWire carries ping again, and once the reconcile grace
//     has passed the links are exactly those of before: none lost, none
//     leaked;
//   - an endpoint killed: every client of it is moved to the service's
//     other endpoint, with ping across the new vWire, and no link is left
//     in the dead endpoint's namespace. (A client on the other node is
//     moved only once its connection has expired and it requested anew:
//     the test logs how many; see killEndpoint.)
//
// Throughout, probers ping 10 of the vWires (one per client namespace)
// every ProbeInterval over raw ICMP sockets; each suite logs the longest
// interruption they saw (a figure, not an assertion). BenchmarkRestart
// reports the same figure as interrupt-s:
//
//	go test -run '^$' -bench Restart -benchtime 1x ./test/e2e/

const (
	restartClients        = 10 // client namespaces, one `vwire nsc` each
	restartConnsPerClient = 10 // connections per client
	restartVwires         = restartClients * restartConnsPerClient
	// restartLifetime is the managers' and forwarders' token lifetime:
	// clients refresh every third of it. Short, so that a restarted
	// manager must have its forwarder and endpoints back well before the
	// vWires it carried expire: they register again as soon as their
	// connection to it is back (grpcutil.Conn.Reconnected).
	restartLifetime = 10 * time.Second
	// restartLifetimeVPP is the token lifetime on the VPP dataplane: this
	// machine's two cores run two VPPs beside every other process, and
	// building a node's 50 kernel vWires there takes longer than 10 s.
	restartLifetimeVPP = 30 * time.Second
	// restartGrace is the forwarders' --reconcile-grace: a restarted
	// forwarder's manager heals every connection through it at once, so
	// the claims come well within it.
	restartGrace    = 15 * time.Second
	restartGraceVPP = 30 * time.Second
	restartService  = "restart"
	// managerMetrics is where managers serve metrics, on their node's
	// loopback.
	managerMetrics = "127.0.0.1:9101"
)

// restartLab is a mesh with restartVwires live vWires and probers on them.
type restartLab struct {
	// lifetime is the managers' and forwarders' token lifetime, grace the
	// forwarders' reconcile grace (restartLifetime and restartGrace, or
	// their VPP values).
	lifetime, grace time.Duration
	l               *Lab
	m               *Mesh
	clientNode      *MeshNode
	epNode          *MeshNode
	eps             map[string]*Endpoint
	clients         []*NSC
	// before is the links of every namespace, and vppBefore what each
	// node's VPP held (on a VPP mesh), before any endpoint or client
	// started.
	before    Snapshot
	vppBefore VPPSnapshot
	probes    *probeSet
}

// newRestartLab starts the mesh (the registry on etcd when etcd is set; on
// the VPP dataplane when dp.Bin is set), two endpoints and the clients,
// checks that every vWire carries ping and starts the probers.
func newRestartLab(tb testing.TB, etcd bool, dp VPPEnv) *restartLab {
	tb.Helper()
	lifetime, grace := restartLifetime, restartGrace
	if dp.Bin != "" {
		lifetime, grace = restartLifetimeVPP, restartGraceVPP
	}
	opts := MeshOptions{
		Nodes: 2, MaxTokenLifetime: lifetime, LogLevel: "info", VPP: dp,
		ForwarderArgs: []string{"--reconcile-grace", grace.String()},
		ManagerArgs:   []string{"--metrics-listen", managerMetrics},
	}
	if dp.Bin != "" {
		// A manager waits this long for a restarted forwarder (its own or
		// a peer's) before it moves vWires elsewhere. Taking 50 vWires back
		// after a restart takes VPP longer on this machine than the 15 s
		// default: the suites check that nothing moves, not how fast this
		// machine's VPP is.
		opts.ManagerArgs = append(opts.ManagerArgs, "--reselect-timeout", lifetime.String())
	}
	if etcd {
		opts.BeforeStart = func(m *Mesh) { StartEtcd(m.Lab, m.Nodes[0].Netns) }
		opts.RegistryArgs = []string{"--store", "etcd", "--etcd-endpoints", fmt.Sprintf("http://127.0.0.1:%d", EtcdClientPort)}
	}
	l, m := newMesh(tb, opts)
	tb.Cleanup(m.ReportVPPHang) // runs before the lab's clean-up stops the VPPs
	r := &restartLab{lifetime: lifetime, grace: grace, l: l, m: m, clientNode: m.Nodes[0], epNode: m.Nodes[1], eps: map[string]*Endpoint{}}
	epNS := []*Netns{l.Netns("nse-a"), l.Netns("nse-b")}
	var clientNS []*Netns
	for i := range restartClients {
		clientNS = append(clientNS, l.Netns(fmt.Sprintf("c%d", i)))
	}
	r.before = l.MustSnapshot()
	r.vppBefore = m.MustVPPSnapshot()

	for i, ns := range epNS {
		r.eps[ns.Label] = r.epNode.StartICMPResponder(ns, EndpointOptions{
			Name: ns.Label, Service: restartService, CIDR: fmt.Sprintf("172.16.%d.0/22", 64+4*i)})
	}
	var urls []string
	for j := range restartConnsPerClient {
		urls = append(urls, fmt.Sprintf("kernel://%s/nsm-%d", restartService, j))
	}
	for i, ns := range clientNS {
		// Half the clients on node1 (remote vWires), half beside the
		// endpoints (local ones).
		c := m.Nodes[i%2].StartNSC(ns, ns.Label, urls...)
		r.clients = append(r.clients, c)
		if dp.Bin != "" {
			// On VPP, one client's 10 vWires at a time: all 100 at once
			// take longer than the clients' 15 s request timeout on this
			// machine (see restartLifetimeVPP).
			c.WaitConnected()
		}
	}
	for _, c := range r.clients {
		c.WaitConnected()
	}
	requirePingAll(tb, r.targets(tb), pingTimeout)

	var whats []string
	var targets []func() (string, error)
	for _, c := range r.clients {
		url := c.URLs[0]
		whats = append(whats, c.Name+" "+url)
		targets = append(targets, func() (string, error) {
			conns, err := c.Current()
			if err != nil {
				return "", err
			}
			if r, ok := conns[url]; ok && len(r.DstIPs) > 0 {
				return Addr(r.DstIPs[0]), nil
			}
			return "", fmt.Errorf("%s: no connection for %s", c, url)
		})
	}
	r.probes = startProbes(tb, clientNS, whats, targets)
	// Let the probers see the vWires up before anything happens.
	time.Sleep(10 * ProbeInterval)
	return r
}

// targets is one ping target per vWire: the endpoint's address of each
// client connection, as the client last reported it.
func (r *restartLab) targets(tb testing.TB) []pingTarget {
	tb.Helper()
	var ts []pingTarget
	for _, c := range r.clients {
		conns, err := c.Current()
		if err != nil {
			tb.Fatal(err)
		}
		for _, u := range c.URLs {
			rep, ok := conns[u]
			if !ok || len(rep.DstIPs) == 0 {
				tb.Fatalf("%s: no connection with addresses for %s", c, u)
			}
			ts = append(ts, pingTarget{NS: c.NS, Addr: Addr(rep.DstIPs[0]), What: c.Name + " " + u})
		}
	}
	return ts
}

// connections maps each vWire ("client url") to the client's latest
// report of it.
func (r *restartLab) connections(tb testing.TB) map[string]nscReport {
	tb.Helper()
	out := map[string]nscReport{}
	for _, c := range r.clients {
		conns, err := c.Connections()
		if err != nil {
			tb.Fatal(err)
		}
		for u, rep := range conns {
			out[c.Name+" "+u] = nscReport{ID: rep.ID, Endpoint: rep.Endpoint}
		}
	}
	return out
}

// nscReport is what the suites compare of a client's connection.
type nscReport struct{ ID, Endpoint string }

// requireKept fails the test unless every vWire still has the connection
// it had in was, to the same endpoint, and no client saw one expire.
func (r *restartLab) requireKept(tb testing.TB, was map[string]nscReport) {
	tb.Helper()
	now := r.connections(tb)
	for k, w := range was {
		if now[k].ID != w.ID {
			tb.Errorf("%s: connection %s became %q: the client had to request it anew", k, w.ID, now[k].ID)
		}
		if now[k].Endpoint != w.Endpoint {
			tb.Errorf("%s: connection %s moved from endpoint %s to %q", k, w.ID, w.Endpoint, now[k].Endpoint)
		}
	}
	for _, c := range r.clients {
		reps, err := c.Reports()
		if err != nil {
			tb.Fatal(err)
		}
		for _, rep := range reps {
			if rep.Event == "expired" {
				tb.Errorf("%s: connection %s for %s expired", c, rep.ID, rep.URL)
			}
		}
		if c.Exited() {
			tb.Fatalf("%s exited", c)
		}
	}
}

// finish stops the probers and the clients (which close their
// connections) and checks that every link the vWires made is gone.
func (r *restartLab) finish(tb testing.TB) {
	tb.Helper()
	r.probes.stop()
	var wg sync.WaitGroup
	for _, c := range r.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Stop(); err != nil {
				tb.Errorf("%s: stopped with %v", c, err)
			}
		}()
	}
	wg.Wait()
	r.l.WaitNoLeak(2*cleanupTimeout, r.before)
	r.m.WaitNoVPPLeak(2*cleanupTimeout, r.vppBefore)
}

// managerConnections is the number of connections n's manager holds, from
// its metrics.
func (r *restartLab) managerConnections(n *MeshNode) (int, error) {
	ms, err := scrapeMetrics(n.Netns, managerMetrics)
	if err != nil {
		return 0, err
	}
	return int(ms["vwire_manager_connections"]), nil
}

// registryRecords lists what the registry holds, as "kind name url"
// lines, sorted, through `vwire get`.
func (r *restartLab) registryRecords(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, kind := range []string{"ns", "nse"} {
		p := r.l.Start(r.clientNode.Netns, "get-"+kind, r.m.common("get", kind, "-o", "json", "--registry", r.m.Registry)...)
		if err, ok := p.Wait(StartTimeout); !ok || err != nil {
			tb.Fatalf("vwire get %s: ended %v, %v: %s", kind, ok, err, p.Log())
		}
		type object struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				URL string `json:"url"`
			} `json:"spec"`
		}
		var objs []object
		text := strings.TrimSpace(p.Output())
		if strings.HasPrefix(text, "{") {
			text = "[" + text + "]"
		}
		if text != "" {
			if err := json.Unmarshal([]byte(text), &objs); err != nil {
				tb.Fatalf("vwire get %s -o json: %v: %s", kind, err, text)
			}
		}
		for _, o := range objs {
			out = append(out, strings.TrimSpace(kind+" "+o.Metadata.Name+" "+o.Spec.URL))
		}
	}
	slices.Sort(out)
	return out
}

// restartScenario is one suite: it disrupts the lab, checks what must hold
// and returns what the probers saw.
type restartScenario struct {
	name string
	etcd bool // the registry keeps its records in etcd
	run  func(*restartLab, testing.TB) outage
}

var restartScenarios = []restartScenario{
	{"registry", true, (*restartLab).restartRegistry},
	{"manager", false, (*restartLab).restartManagers},
	{"forwarder", false, (*restartLab).restartForwarders},
	{"endpoint", false, (*restartLab).killEndpoint},
}

// restartRegistry kills the registry and starts it again on the same etcd.
func (r *restartLab) restartRegistry(tb testing.TB) outage {
	tb.Helper()
	records := r.registryRecords(tb)
	if !slices.ContainsFunc(records, func(s string) bool { return strings.HasPrefix(s, "nse nse-a ") }) ||
		!slices.ContainsFunc(records, func(s string) bool { return strings.HasPrefix(s, "nse nse-b ") }) ||
		!slices.ContainsFunc(records, func(s string) bool { return s == "ns "+restartService }) {
		tb.Fatalf("registry records before the restart: %q, want the service and both endpoints", records)
	}
	was := r.connections(tb)
	start := time.Now()
	tb.Logf("killing %s", r.m.RegistryProc)
	r.m.RegistryProc.Kill()
	r.m.StartRegistry()
	// Asked at once, before any endpoint's next registration: the new
	// registry serves what etcd kept.
	if got := r.registryRecords(tb); !slices.Equal(got, records) {
		tb.Errorf("registry records after the restart:\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(records, "\n\t"))
	}
	// A new client finds the service's endpoints at once.
	ns := r.l.Netns("late")
	late := r.clientNode.StartNSC(ns, "late", "kernel://"+restartService+"/nsm-late")
	rep := late.WaitConnected()[late.URLs[0]]
	requirePingAll(tb, []pingTarget{{NS: ns, Addr: Addr(rep.DstIPs[0]), What: "late client"}}, pingTimeout)
	if err := late.Stop(); err != nil {
		tb.Errorf("%s: stopped with %v", late, err)
	}
	// The vWires went on through a refresh or more.
	time.Sleep(r.lifetime / 2)
	requirePingAll(tb, r.targets(tb), pingTimeout)
	r.requireKept(tb, was)
	return r.probes.outage(start, time.Now())
}

// restartManagers kills each node's manager in turn and starts it again.
func (r *restartLab) restartManagers(tb testing.TB) outage {
	tb.Helper()
	var worst outage
	for _, n := range []*MeshNode{r.clientNode, r.epNode} {
		was := r.connections(tb)
		up, upVPP := r.l.MustSnapshot(), r.m.MustVPPSnapshot()
		held, err := r.managerConnections(n)
		if err != nil {
			tb.Fatal(err)
		}
		start := time.Now()
		tb.Logf("killing %s, which holds %d connections", n.Manager, held)
		n.Manager.Kill()
		// The dataplane does not need the manager: every vWire carries
		// ping while none runs on the node.
		requirePingAll(tb, r.targets(tb), pingTimeout)
		n.StartManager()
		// It knows nothing at start; the clients' refreshes (through
		// node1's manager for node2's) tell it every connection again.
		Eventually(tb, 3*r.lifetime, fmt.Sprintf("%s holds %d connections again", n.Manager, held), func() error {
			got, err := r.managerConnections(n)
			if err != nil {
				return err
			}
			if got != held {
				return fmt.Errorf("%d connections", got)
			}
			return nil
		})
		requirePingAll(tb, r.targets(tb), pingTimeout)
		// Rebuilt on the same links (and VPP objects), with the same
		// connection ids.
		r.l.WaitNoLeak(pingTimeout, up)
		r.m.WaitNoVPPLeak(pingTimeout, upVPP)
		r.requireKept(tb, was)
		o := r.probes.outage(start, time.Now())
		tb.Logf("%s manager: %v", n.Name, o)
		worst = worseOutage(worst, o)
	}
	return worst
}

// restartForwarders kills each node's forwarder in turn and starts it
// again.
func (r *restartLab) restartForwarders(tb testing.TB) outage {
	tb.Helper()
	var worst outage
	for _, n := range []*MeshNode{r.clientNode, r.epNode} {
		was := r.connections(tb)
		up, upVPP := r.l.MustSnapshot(), r.m.MustVPPSnapshot()
		start := time.Now()
		tb.Logf("killing %s", n.Forwarder)
		n.Forwarder.Kill()
		n.StartForwarder()
		requirePingAll(tb, r.targets(tb), pingTimeout)
		o := r.probes.outage(start, time.Now())
		// Past the reconcile grace the restarted forwarder has removed
		// what no refresh claimed: that must be nothing, and nothing may
		// have been made twice.
		time.Sleep(time.Until(start.Add(r.grace + time.Second)))
		requirePingAll(tb, r.targets(tb), pingTimeout)
		r.l.WaitNoLeak(pingTimeout, up)
		r.m.WaitNoVPPLeak(pingTimeout, upVPP)
		r.requireKept(tb, was)
		tb.Logf("%s forwarder: %v", n.Name, o)
		worst = worseOutage(worst, o)
	}
	return worst
}

// killEndpoint kills the endpoint that serves the most vWires: its clients
// move to the other one.
func (r *restartLab) killEndpoint(tb testing.TB) outage {
	tb.Helper()
	was := r.connections(tb)
	per := map[string]int{}
	for _, c := range was {
		per[c.Endpoint]++
	}
	victim := "nse-a"
	if per["nse-b"] > per["nse-a"] {
		victim = "nse-b"
	}
	other := map[string]string{"nse-a": "nse-b", "nse-b": "nse-a"}[victim]
	tb.Logf("vWires per endpoint: %v; killing %s", per, victim)
	ep := r.eps[victim]
	start := time.Now()
	ep.Kill()
	// The manager notices the dead endpoint and heals (local clients), or
	// the connection expires and the client requests it anew (remote ones).
	moveTimeout := 2 * r.lifetime
	Eventually(tb, moveTimeout, fmt.Sprintf("every client of %s is moved to %s", victim, other), func() error {
		var left []string
		for k, c := range r.connections(tb) {
			if c.Endpoint != other {
				left = append(left, k+" on "+c.Endpoint)
			}
		}
		if len(left) > 0 {
			slices.Sort(left)
			return fmt.Errorf("%d not moved: %s", len(left), strings.Join(left, ", "))
		}
		return nil
	})
	requirePingAll(tb, r.targets(tb), pingTimeout)
	o := r.probes.outage(start, time.Now())
	// A local client is healed by its manager and keeps its connection.
	// A remote one is not healed in place: the endpoint's manager holds
	// the connection pinned to the dead endpoint (the client's manager
	// chose it) and refuses the reselection, so the client gets its new
	// vWire only after the old connection expired, under a new id.
	now := r.connections(tb)
	var anew []string
	for k, c := range was {
		if c.Endpoint == victim && now[k].ID != c.ID {
			anew = append(anew, k)
		}
	}
	slices.Sort(anew)
	tb.Logf("%d of %d moved vWires were requested anew after expiring: %s", len(anew), per[victim], strings.Join(anew, ", "))
	// Nothing is left plugged into the dead endpoint's namespace.
	err := Poll(cleanupTimeout, func() error {
		links, err := ep.NS.VwireLinks()
		if err != nil {
			return Permanent(err)
		}
		if len(links) > 0 {
			return fmt.Errorf("%d links: %v", len(links), links)
		}
		return nil
	})
	if err != nil {
		tb.Errorf("links left in the dead endpoint's namespace %s: %v", victim, err)
	}
	return o
}

func worseOutage(a, b outage) outage {
	if b.Longest > a.Longest {
		a.Longest, a.Worst = b.Longest, b.Worst
	}
	a.Sent += b.Sent
	a.Lost += b.Lost
	return a
}

func TestRestartRegistry(t *testing.T)  { runRestartTest(t, restartScenarios[0], VPPEnv{}) }
func TestRestartManager(t *testing.T)   { runRestartTest(t, restartScenarios[1], VPPEnv{}) }
func TestRestartForwarder(t *testing.T) { runRestartTest(t, restartScenarios[2], VPPEnv{}) }
func TestRestartEndpoint(t *testing.T)  { runRestartTest(t, restartScenarios[3], VPPEnv{}) }

// TestRestartVPP runs the four suites on the VPP dataplane: each node's
// VPP runs on its own, so a killed forwarder leaves the vWires in it, and
// at every step VPP must hold exactly the objects it held before (make
// test-vpp).
func TestRestartVPP(t *testing.T) {
	dp := LookupVPP()
	if dp.Skip != "" {
		t.Skip(dp.Skip)
	}
	for _, s := range restartScenarios {
		t.Run(s.name, func(t *testing.T) {
			runRestartTest(t, s, dp)
		})
	}
}

func runRestartTest(t *testing.T, s restartScenario, dp VPPEnv) {
	r := newRestartLab(t, s.etcd, dp)
	o := s.run(r, t)
	t.Logf("%s restart with %d vWires: %v", s.name, restartVwires, o)
	r.finish(t)
}

// BenchmarkRestart reports, for each suite, the longest interruption the
// probers saw (interrupt-s) and the probes lost. Each iteration builds
// its own lab, outside the timer.
func BenchmarkRestart(b *testing.B) { benchmarkRestart(b, VPPEnv{}) }

// BenchmarkRestartVPP is BenchmarkRestart on the VPP dataplane.
func BenchmarkRestartVPP(b *testing.B) {
	dp := LookupVPP()
	if dp.Skip != "" {
		b.Skip(dp.Skip)
	}
	benchmarkRestart(b, dp)
}

func benchmarkRestart(b *testing.B, dp VPPEnv) {
	for _, s := range restartScenarios {
		b.Run(s.name, func(b *testing.B) {
			var worst outage
			b.StopTimer()
			for range b.N {
				r := newRestartLab(b, s.etcd, dp)
				b.StartTimer()
				worst = worseOutage(worst, s.run(r, b))
				b.StopTimer()
				r.finish(b)
			}
			b.ReportMetric(worst.Longest.Seconds(), "interrupt-s")
			b.ReportMetric(float64(worst.Lost)/float64(b.N), "lost-probes/op")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s restart with %d vWires: %v", s.name, restartVwires, worst)
		})
	}
}

// Traffic checks and measurements made from the test process itself: ICMP
// echo over raw sockets opened inside the workloads' namespaces (no process
// per ping), and metrics scraped from daemons listening on a namespace's
// loopback.

// inNetns runs f with ns as the namespace of the sockets it creates.
func inNetns[T any](ns *Netns, f func() (T, error)) (T, error) { return inNamespace(ns.Name, f) }

// icmpSocket is a raw ICMP socket in one namespace.
type icmpSocket struct {
	ns *Netns
	c  *net.IPConn
}

func openICMP(ns *Netns) (*icmpSocket, error) {
	c, err := inNetns(ns, func() (*net.IPConn, error) {
		return net.ListenIP("ip4:icmp", &net.IPAddr{IP: net.IPv4zero})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: icmp socket: %w", ns.Label, err)
	}
	return &icmpSocket{ns: ns, c: c}, nil
}

func (s *icmpSocket) Close() error { return s.c.Close() }

// send sends an echo request with id and seq to dst.
func (s *icmpSocket) send(dst string, id, seq uint16) error {
	ip := net.ParseIP(dst)
	if ip == nil {
		return fmt.Errorf("address %q", dst)
	}
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	_, err := s.c.WriteToIP(b, &net.IPAddr{IP: ip})
	return err
}

// recv returns the next echo reply (its id, seq and sender) or an error
// when the deadline passes or the socket is closed.
func (s *icmpSocket) recv(deadline time.Time) (id, seq uint16, from string, err error) {
	b := make([]byte, 1500)
	s.c.SetReadDeadline(deadline)
	for {
		n, addr, err := s.c.ReadFromIP(b)
		if err != nil {
			return 0, 0, "", err
		}
		if n >= 8 && b[0] == 0 { // echo reply; the IPv4 header is stripped
			return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), addr.IP.String(), nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pingTarget is one address to reach from one namespace.
type pingTarget struct {
	NS   *Netns
	Addr string
	What string // for messages: the vWire
}

// pingAll sends echo requests to every target, again every 200ms to those
// that have not answered, until all have answered or timeout has passed;
// it returns the ones that never answered. Targets in one namespace share
// a socket; namespaces are pinged in parallel.
func pingAll(targets []pingTarget, timeout time.Duration) ([]pingTarget, error) {
	byNS := map[*Netns][]pingTarget{}
	for _, t := range targets {
		byNS[t.NS] = append(byNS[t.NS], t)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards failed, errs
		failed []pingTarget
		errs   []error
	)
	for ns, ts := range byNS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := pingFrom(ns, ts, timeout)
			mu.Lock()
			defer mu.Unlock()
			failed = append(failed, f...)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return failed, errors.Join(errs...)
}

func pingFrom(ns *Netns, ts []pingTarget, timeout time.Duration) ([]pingTarget, error) {
	s, err := openICMP(ns)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	id := uint16(rand.N(1 << 16))
	answered := make([]bool, len(ts))
	left := len(ts)
	deadline := time.Now().Add(timeout)
	for seq := uint16(0); left > 0 && time.Now().Before(deadline); seq++ {
		for i, t := range ts {
			if !answered[i] {
				// A send fails while there is no route yet: try again.
				_ = s.send(t.Addr, id, seq)
			}
		}
		round := time.Now().Add(200 * time.Millisecond)
		for left > 0 {
			rid, _, from, err := s.recv(round)
			if err != nil {
				break // the round is over
			}
			if rid != id {
				continue
			}
			for i, t := range ts {
				if !answered[i] && t.Addr == from {
					answered[i] = true
					left--
				}
			}
		}
	}
	var failed []pingTarget
	for i, t := range ts {
		if !answered[i] {
			failed = append(failed, t)
		}
	}
	return failed, nil
}

// requirePingAll fails the test unless every target answers within
// timeout.
func requirePingAll(tb testing.TB, targets []pingTarget, timeout time.Duration) {
	tb.Helper()
	failed, err := pingAll(targets, timeout)
	if err != nil {
		tb.Fatal(err)
	}
	if len(failed) > 0 {
		var names []string
		for _, f := range failed {
			names = append(names, fmt.Sprintf("%s (%s: %s)", f.What, f.NS.Label, f.Addr))
		}
		tb.Fatalf("%d of %d vWires carry no ping within %v: %s", len(failed), len(targets), timeout, strings.Join(names, ", "))
	}
}

// ProbeInterval is how often a prober sends an echo request.
const ProbeInterval = 50 * time.Millisecond

// prober pings one vWire continuously and records when replies come, to
// measure how long its traffic stops. Its target may move (a vWire healed
// to another endpoint gets new addresses): target is asked again every
// retargetEvery.
type prober struct {
	what   string
	sock   *icmpSocket
	target func() (string, error)
	id     uint16

	mu      sync.Mutex  // guards replies, sent
	replies []time.Time // when each reply came, in order
	sent    []probe     // every probe sent, in order
	bySeq   map[uint16]int
}

// probe is one echo request a prober sent.
type probe struct {
	at       time.Time
	answered bool
}

const retargetEvery = 250 * time.Millisecond

// probeSet runs probers until stopped.
type probeSet struct {
	probers []*prober
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startProbes starts a prober per target function; each runs in ns[i].
func startProbes(tb testing.TB, nss []*Netns, whats []string, targets []func() (string, error)) *probeSet {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ps := &probeSet{cancel: cancel}
	for i, ns := range nss {
		s, err := openICMP(ns)
		if err != nil {
			cancel()
			ps.stop()
			tb.Fatal(err)
		}
		p := &prober{what: whats[i], sock: s, target: targets[i], id: uint16(rand.N(1 << 16)), bySeq: map[uint16]int{}}
		ps.probers = append(ps.probers, p)
		ps.wg.Add(2)
		go func() { defer ps.wg.Done(); p.sendLoop(ctx) }()
		go func() { defer ps.wg.Done(); p.recvLoop(ctx) }()
	}
	tb.Cleanup(ps.stop)
	return ps
}

// stop ends every prober; safe to call twice.
func (ps *probeSet) stop() {
	ps.cancel()
	for _, p := range ps.probers {
		p.sock.Close()
	}
	ps.wg.Wait()
}

func (p *prober) sendLoop(ctx context.Context) {
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	var dst string
	var asked time.Time
	for seq := uint16(0); ; seq++ {
		if time.Since(asked) >= retargetEvery {
			if d, err := p.target(); err == nil && d != "" {
				dst = d
			}
			asked = time.Now()
		}
		if dst != "" {
			p.mu.Lock()
			p.bySeq[seq] = len(p.sent)
			p.sent = append(p.sent, probe{at: time.Now()})
			p.mu.Unlock()
			_ = p.sock.send(dst, p.id, seq)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *prober) recvLoop(ctx context.Context) {
	for ctx.Err() == nil {
		id, seq, _, err := p.sock.recv(time.Now().Add(time.Second))
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || id != p.id {
			continue
		}
		p.mu.Lock()
		p.replies = append(p.replies, time.Now())
		if i, ok := p.bySeq[seq]; ok {
			p.sent[i].answered = true
		}
		p.mu.Unlock()
	}
}

// outage is what the probers saw between two instants.
type outage struct {
	// Longest is the longest time without a reply on any probed vWire,
	// less one probe interval: zero when no probe went unanswered.
	Longest time.Duration
	Worst   string // the vWire it was seen on
	// Sent and Lost count the probes of every prober.
	Sent, Lost int
}

func (o outage) String() string {
	return fmt.Sprintf("longest interruption %v (on %s), %d of %d probes lost", o.Longest.Round(time.Millisecond), o.Worst, o.Lost, o.Sent)
}

// outage measures [from, to] across every prober. A probe counts as lost
// when no reply came within probeTimeout; outage waits that long past to
// when needed.
func (ps *probeSet) outage(from, to time.Time) outage {
	time.Sleep(time.Until(to.Add(probeTimeout)))
	var o outage
	for _, p := range ps.probers {
		p.mu.Lock()
		points := []time.Time{from}
		for _, r := range p.replies {
			if r.After(from) && r.Before(to) {
				points = append(points, r)
			}
		}
		points = append(points, to)
		for _, s := range p.sent {
			if s.at.After(from) && s.at.Before(to) {
				o.Sent++
				if !s.answered {
					o.Lost++
				}
			}
		}
		p.mu.Unlock()
		for i := 1; i < len(points); i++ {
			if gap := points[i].Sub(points[i-1]) - ProbeInterval; gap > o.Longest {
				o.Longest, o.Worst = gap, p.what
			}
		}
	}
	return o
}

// probeTimeout is how long a probe's reply may take before it is lost.
const probeTimeout = time.Second

// scrapeMetrics fetches the Prometheus text at http://addr/metrics, addr
// being an address on ns's loopback, and sums each metric's samples over
// their labels.
func scrapeMetrics(ns *Netns, addr string) (map[string]float64, error) {
	conn, err := inNetns(ns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		return nil, fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: metrics at %s: %s", ns.Label, addr, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[strings.TrimSpace(name)] += v
	}
	return out, sc.Err()
}
