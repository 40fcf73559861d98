package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry/dnssrv/dnstest"
)

// Interdomain world: each registry domain is its own trust domain (its own
// development CA and state directory) and its own internal network; the
// nodes also sit on a shared "internet" fabric with public addresses. Only
// public addresses cross between domains, so a vWire between domains works
// only if the forwarders tunnel between their --public-ip addresses. Every
// registry finds the others through a real DNS server (miekg/dns) on its
// namespace's loopback serving their SRV records.

const internetFabric = 3

type domain struct {
	name     string // registry domain and trust domain
	dir      string // --state-dir
	ns       *Netns // the node (or, for the floating domain, the registry)
	internal netip.Addr
	public   netip.Addr
	dns      *dnstest.Server
	proc     *Proc
}

type interdomainWorld struct {
	l       *Lab
	inet    *Fabric
	domains map[string]*domain
	dnss    []*dnstest.Server
}

func newInterdomainWorld(t *testing.T, l *Lab) *interdomainWorld {
	return &interdomainWorld{l: l, inet: l.Fabric(internetFabric), domains: map[string]*domain{}}
}

// newDomain makes a domain's state directory and CA (so that the others can
// federate with its bundle before it starts).
func (w *interdomainWorld) newDomain(name string) *domain {
	w.l.T.Helper()
	d := &domain{name: name, dir: filepath.Join(w.l.Dir, name)}
	mkdir(w.l, d.dir)
	if _, err := identity.OpenCA(d.dir, name, true); err != nil {
		w.l.T.Fatal(err)
	}
	w.domains[name] = d
	return d
}

func (d *domain) bundle() string { return filepath.Join(d.dir, "ca", "ca.pem") }

// federation is --federate-with for every other domain.
func (w *interdomainWorld) federation(self string) []string {
	var args []string
	for name, d := range w.domains {
		if name != self {
			args = append(args, "--federate-with", name+"="+d.bundle())
		}
	}
	return args
}

// attach gives ns a public address on the internet fabric (no default
// route: its internal fabric keeps that).
func (w *interdomainWorld) attach(ns *Netns, i int) netip.Addr {
	w.l.T.Helper()
	return w.plug(ns, fmt.Sprintf("pub%d", i), netip.AddrFrom4([4]byte{10, 111, internetFabric, byte(100 + i)}))
}

// plug joins ns to the internet fabric's bridge (port) with addr on pub0.
func (w *interdomainWorld) plug(ns *Netns, port string, addr netip.Addr) netip.Addr {
	w.l.T.Helper()
	w.inet.MustIP("link", "add", "name", port, "type", "veth", "peer", "name", "pub0", "netns", ns.Name)
	w.inet.MustIP("link", "set", port, "master", FabricBridge, "up")
	ns.MustIP("addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", "pub0")
	ns.MustIP("link", "set", "pub0", "up")
	return addr
}

// startDNS serves the world's records on ns's loopback.
func (w *interdomainWorld) startDNS(ns *Netns) *dnstest.Server {
	w.l.T.Helper()
	s, err := inNetns(ns, func() (*dnstest.Server, error) { return dnstest.Start("127.0.0.1:0") })
	if err != nil {
		w.l.T.Fatalf("DNS server in %s: %v", ns.Label, err)
	}
	w.l.T.Cleanup(s.Close)
	w.dnss = append(w.dnss, s)
	return s
}

// publish sets domain's SRV record (TTL 5s) on every DNS server.
func (w *interdomainWorld) publish(domain string, addr netip.Addr, port int) {
	w.l.T.Helper()
	for _, s := range w.dnss {
		if err := s.Set(
			fmt.Sprintf("_registry._tcp.%s. 5 IN SRV 0 0 %d registry.%s.", domain, port, domain),
			fmt.Sprintf("registry.%s. 5 IN A %s", domain, addr),
		); err != nil {
			w.l.T.Fatal(err)
		}
	}
}

func (d *domain) common(sub string, args ...string) []string {
	out := append(strings.Fields(sub), args...)
	return append(out, "--state-dir", d.dir, "--trust-domain", d.name, "--log-level", "debug")
}

func (d *domain) socket() string { return filepath.Join(d.dir, "manager.sock") }

// startNode runs `vwire node` for the domain: registry, manager, forwarder.
func (w *interdomainWorld) startNode(d *domain, extra ...string) {
	w.l.T.Helper()
	args := d.common("node",
		"--node-name", d.name+"-node",
		"--domain", d.name,
		"--registry-listen", ":5002",
		"--manager-listen", ":5001",
		"--advertise-url", fmt.Sprintf("tcp://%s:5001", d.public),
		"--socket", d.socket(),
		"--forwarder-socket", "unix://"+filepath.Join(d.dir, "forwarder.sock"),
		"--dataplane", "kernel",
		// These tests check VXLAN tunnels between public addresses;
		// WireGuard across a NAT is not covered here.
		"--wireguard", "off",
		"--tunnel-ip", d.internal.String(),
		"--public-ip", d.public.String(),
		"--dns-server", d.dns.Addr,
	)
	args = append(append(args, w.federation(d.name)...), extra...)
	d.proc = w.l.Start(d.ns, d.name, args...)
	WaitUnixSocket(w.l.T, d.proc, d.socket())
	d.proc.WaitLogLine(StartTimeout, "forwarder registered")
}

func (d *domain) startICMPResponder(l *Lab, ws *Netns, name, service, cidr string) *Proc {
	l.T.Helper()
	p := l.Start(ws, name, d.common("nse icmp-responder",
		"--name", name, "--service", service, "--cidr", cidr,
		"--connect-to", "unix://"+d.socket(),
		"--listen", "unix://"+filepath.Join(d.dir, name+".sock"))...)
	d.proc.WaitLogLine(StartTimeout, "endpoint registered", "name="+name)
	return p
}

func (d *domain) startNSC(l *Lab, ws *Netns, name string, urls ...string) *NSC {
	args := append([]string{"--name", name, "--connect-to", "unix://" + d.socket(), "--output", "json"}, urls...)
	return &NSC{Proc: l.Start(ws, name, d.common("nsc", args...)...), URLs: urls}
}

// requestOnce runs `vwire nsc --once` and returns its exit error and output.
func (d *domain) requestOnce(l *Lab, ws *Netns, url string) (string, error) {
	p := l.Start(ws, "nsc-once", d.common("nsc", "--once", "--request-timeout", "20s", "--connect-to", "unix://"+d.socket(), url)...)
	err, ok := p.Wait(StartTimeout)
	if !ok {
		l.T.Fatalf("%s did not finish", p)
	}
	return p.Output() + p.Log(), err
}

// reach starts endpoint name for service in domain to and a client in
// domain from asking for url, each in a namespace of its own, and checks
// that they connect (through endpoint want) and ping both ways.
func reach(t *testing.T, l *Lab, from, to *domain, name, service, url, want string) (*NSC, vwire) {
	t.Helper()
	ep, cl := l.Netns("nse-"+name), l.Netns("nsc-"+name)
	to.startICMPResponder(l, ep, name, service, fmt.Sprintf("172.16.%d.0/24", 2+len(l.Namespaces())))
	c := from.startNSC(l, cl, "nsc-"+name, url)
	v := connect(t, l, c, cl, ep, url)
	if v.Report.Endpoint != want {
		t.Errorf("endpoint %q, want %s", v.Report.Endpoint, want)
	}
	return c, v
}

// tunnelEnds returns the local and remote addresses of the vxlan devices
// in ns.
func tunnelEnds(t *testing.T, ns *Netns) []string {
	t.Helper()
	out := ns.MustIP("-d", "link", "show", "type", "vxlan")
	var ends []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var remote, local string
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "remote":
				remote = f[i+1]
			case "local":
				local = f[i+1]
			}
		}
		if remote != "" || local != "" {
			ends = append(ends, local+"->"+remote)
		}
	}
	return ends
}

// worldOptions shape an interdomain world: domains a.test and b.test, one
// node each, and optionally the registry of floating.test.
type worldOptions struct {
	natA       bool   // A's node has only its internal address, behind a NAT
	floating   bool   // run floating.test's registry on the internet fabric
	bPolicy    string // B's policy file, when set
	bFederates bool   // B accepts the other domains' peers
}

// startWorld builds the world, starts its registries and nodes, and returns
// the domains (fl nil without opts.floating).
func startWorld(t *testing.T, opts worldOptions) (l *Lab, a, b, fl *domain) {
	t.Helper()
	l = newLab(t)
	w := newInterdomainWorld(t, l)
	a, b = w.newDomain("a.test"), w.newDomain("b.test")
	doms := []*domain{a, b}
	if opts.floating {
		fl = w.newDomain("floating.test")
		doms = append(doms, fl)
	}
	fa := l.Fabric(1)
	na := fa.AddNode(a.name)
	a.ns, a.internal = na.Netns, na.IP
	if opts.natA {
		a.public = w.natRouter(fa, na, 1)
	} else {
		a.public = w.attach(a.ns, 1)
	}
	nb := l.Fabric(2).AddNode(b.name)
	b.ns, b.internal, b.public = nb.Netns, nb.IP, w.attach(nb.Netns, 2)
	if fl != nil {
		fnode := w.inet.AddNode("floating")
		fl.ns, fl.internal, fl.public = fnode.Netns, fnode.IP, fnode.IP
	}
	for _, d := range doms {
		d.dns = w.startDNS(d.ns)
	}
	for _, d := range doms {
		w.publish(d.name, d.public, 5002)
	}
	w.publish("down.test", w.inet.Gateway, 5999) // nothing listens there
	// Internal fabrics are not routed between domains.
	if err := a.ns.PingOnce(b.internal.String()); err == nil {
		t.Fatalf("domain A reaches B's internal address %s: the test would prove nothing", b.internal)
	}
	if fl != nil {
		fl.proc = l.Start(fl.ns, "floating-registry", append(fl.common("registry",
			"--domain", fl.name, "--listen", ":5002", "--dns-server", fl.dns.Addr), w.federation(fl.name)...)...)
		fl.proc.WaitLogLine(StartTimeout, "registry serving")
	}
	w.startNode(a)
	var extra []string
	if opts.bPolicy != "" {
		file := filepath.Join(b.dir, "policy.yaml")
		if err := os.WriteFile(file, []byte(opts.bPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, "--policy", file)
	}
	if !opts.bFederates {
		delete(w.domains, a.name)
		defer func() { w.domains[a.name] = a }()
	}
	w.startNode(b, extra...)
	return l, a, b, fl
}

// waitNoTunnels waits until no vxlan device is left on the domains' nodes.
func waitNoTunnels(t *testing.T, doms ...*domain) {
	t.Helper()
	Eventually(t, cleanupTimeout, "no vxlan left on the nodes", func() error {
		for _, d := range doms {
			if ends := tunnelEnds(t, d.ns); len(ends) > 0 {
				return fmt.Errorf("%s: %v", d.name, ends)
			}
		}
		return nil
	})
}

// TestInterdomain: a client in A reaches an endpoint of B; an endpoint of
// A registered in floating.test is reached from B and from A; B's policy,
// an unknown domain and a registry that is down give clear refusals.
func TestInterdomain(t *testing.T) {
	// B's own workloads may request anything, domain A's clients only icmp.
	l, a, b, fl := startWorld(t, worldOptions{floating: true, bFederates: true, bPolicy: `request:
  - name: own
    ids: ["spiffe://b.test/**"]
    services: ["*"]
  - name: a-may-ping
    ids: ["spiffe://a.test/**"]
    services: ["icmp"]
`})

	// A client in A reaches an endpoint registered in B.
	c, _ := reach(t, l, a, b, "icmp-b", "icmp", "kernel://icmp@b.test/nsm0", "icmp-b@b.test")
	wantEnds := []string{a.public.String() + "->" + b.public.String()}
	if got := tunnelEnds(t, a.ns); len(got) != 1 || got[0] != wantEnds[0] {
		t.Errorf("A's tunnel %v, want %v: interdomain vWires use public addresses", got, wantEnds)
	}
	if got := tunnelEnds(t, b.ns); len(got) != 1 || got[0] != b.public.String()+"->"+a.public.String() {
		t.Errorf("B's tunnel %v, want %s->%s", got, b.public, a.public)
	}

	// Floating: an endpoint in A registers in floating.test; a client in B
	// reaches it, and so does a client in A (locally).
	flURL := "kernel://fl@floating.test/nsm1"
	cb, vb := reach(t, l, b, a, "fl-a", "fl@floating.test", flURL, "fl-a@floating.test")
	nseA := vb.Endpoint
	if got := tunnelEnds(t, b.ns); len(got) != 2 {
		t.Errorf("B's tunnels %v, want two (to A, for each vWire)", got)
	}
	nscA2 := l.Netns("nsc-a2")
	ca2 := a.startNSC(l, nscA2, "nsc-a2", flURL)
	connect(t, l, ca2, nscA2, nseA, flURL)
	if got := tunnelEnds(t, a.ns); len(got) != 2 {
		t.Errorf("A's tunnels %v, want two: A's own client of the floating service stays local", got)
	}

	// B's policy refuses A's clients another service.
	probe := l.Netns("nsc-probe")
	b.startICMPResponder(l, l.Netns("nse-b2"), "secret-b", "secret", "172.16.4.0/24")
	out, err := a.requestOnce(l, probe, "kernel://secret@b.test/nsm9")
	if err == nil || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "spiffe://a.test/") {
		t.Errorf("A's client asking for secret@b.test: err %v, output %q; want PermissionDenied naming the client", err, out)
	}

	// Failures name the domain.
	for _, tc := range []struct{ url, want string }{
		{"kernel://icmp@nope.test/nsm9", `domain "nope.test"`},
		{"kernel://icmp@down.test/nsm9", `domain "down.test": no registry answered`},
	} {
		out, err := a.requestOnce(l, probe, tc.url)
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "Unavailable") {
			t.Errorf("%s: err %v, output %q; want a failure with Unavailable and %q", tc.url, err, out, tc.want)
		}
	}
	// The floating registry goes down: new clients are told which domain.
	if err := fl.proc.Stop(); err != nil {
		t.Logf("floating registry stopped: %v", err)
	}
	out, err = b.requestOnce(l, probe, "kernel://fl@floating.test/nsm9")
	if err == nil || !strings.Contains(out, `domain "floating.test"`) {
		t.Errorf("with the floating registry down: err %v, output %q; want a failure naming floating.test", err, out)
	}
	// The vWires already made do not depend on it.
	vb.ping(t)

	for _, c := range []*NSC{c, cb, ca2} {
		stopClient(t, c)
	}
	waitNoTunnels(t, a, b)
}

// TestInterdomainUnfederated: B does not federate with A, so A's
// registry cannot reach B's: the peer is refused in the handshake.
func TestInterdomainUnfederated(t *testing.T) {
	l, a, b, _ := startWorld(t, worldOptions{})
	b.startICMPResponder(l, l.Netns("nse-b"), "icmp-b", "icmp", "172.16.2.0/24")
	out, err := a.requestOnce(l, l.Netns("nsc-a"), "kernel://icmp@b.test/nsm0")
	if err == nil || !strings.Contains(out, `domain "b.test"`) {
		t.Fatalf("err %v, output %q; want a refusal naming b.test", err, out)
	}
	t.Logf("A's client saw: %s", out)
}

// natRouter turns the fabric's namespace into the NAT in front of node: it
// gets public address 10.111.3.(200+i) on the internet fabric, forwards,
// masquerades what leaves the fabric, and maps the public address's VXLAN,
// manager and registry ports to node.
func (w *interdomainWorld) natRouter(f *Fabric, node *Node, i int) netip.Addr {
	w.l.T.Helper()
	addr := w.plug(f.Netns, fmt.Sprintf("nat%d", i), netip.AddrFrom4([4]byte{10, 111, internetFabric, byte(200 + i)}))
	for _, args := range [][]string{
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"iptables", "-t", "nat", "-A", "PREROUTING", "-i", "pub0", "-p", "udp", "--dport", "4789", "-j", "DNAT", "--to-destination", node.IP.String()},
		{"iptables", "-t", "nat", "-A", "PREROUTING", "-i", "pub0", "-p", "tcp", "-m", "multiport", "--dports", "5001,5002", "-j", "DNAT", "--to-destination", node.IP.String()},
		{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "pub0", "-s", f.Prefix.String(), "-j", "MASQUERADE"},
	} {
		if out, err := f.Exec(args[0], args[1:]...); err != nil {
			w.l.T.Fatalf("%s: %s: %v: %s", f.Label, strings.Join(args, " "), err, out)
		}
	}
	return addr
}

// TestInterdomainBehindNAT: domain A's node has only an internal address,
// behind a NAT whose public address maps VXLAN and the control plane to it
// (--public-ip is the NAT's address); domain B's node holds its public
// address. vWires both ways cross the NAT.
func TestInterdomainBehindNAT(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("the NAT needs iptables (Debian package iptables; .ci/run installs it)")
	}
	l, a, b, _ := startWorld(t, worldOptions{natA: true, floating: true, bFederates: true})
	if _, ok := a.proc.FindLogLine("public address for vWires", "on_this_host=false"); !ok {
		t.Errorf("A's forwarder does not say its public address is not on this host")
	}

	// A (behind the NAT) → B.
	c, _ := reach(t, l, a, b, "icmp-b", "icmp", "kernel://icmp@b.test/nsm0", "icmp-b@b.test")
	// A binds its internal address; B sends to the NAT's.
	if got, want := tunnelEnds(t, a.ns), a.internal.String()+"->"+b.public.String(); len(got) != 1 || got[0] != want {
		t.Errorf("A's tunnel %v, want %s", got, want)
	}
	if got, want := tunnelEnds(t, b.ns), b.public.String()+"->"+a.public.String(); len(got) != 1 || got[0] != want {
		t.Errorf("B's tunnel %v, want %s", got, want)
	}

	// B → A's floating endpoint: B's forwarder calls A's manager through
	// the NAT.
	cb, _ := reach(t, l, b, a, "fl-a", "fl@floating.test", "kernel://fl@floating.test/nsm1", "fl-a@floating.test")

	for _, c := range []*NSC{c, cb} {
		stopClient(t, c)
	}
	waitNoTunnels(t, a, b)
}
