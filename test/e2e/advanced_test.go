package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The advanced features of the architecture document (composition,
// selective composition, topology-aware selection), with the example
// YAML under deployments/examples/ and real endpoints in namespaces.

// sendUDP sends one UDP datagram from ns to addr:port (bash's /dev/udp).
func sendUDP(t *testing.T, ns *Netns, addr string, port int) {
	t.Helper()
	if out, err := ns.Exec("bash", "-c", fmt.Sprintf("echo x > /dev/udp/%s/%d", addr, port)); err != nil {
		t.Fatalf("%s: send udp: %v: %s", ns.Label, err, out)
	}
}

// A passthrough between a client and an icmp-responder: the client gets the
// far endpoint's addresses, ping crosses both vWires, the deny rule drops
// and counts, and closing the client closes the onward connection.
func TestAdvancedPassthrough(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 1})
	n := m.Nodes[0]
	clientNS, ptNS, epNS := l.Netns("nsc1"), l.Netns("ips"), l.Netns("vl3")
	before := l.MustSnapshot()
	m.Apply(ExampleYAML(l, "passthrough"))

	n.StartICMPResponder(epNS, EndpointOptions{Name: "vl3", Service: "filtered", CIDR: "172.16.5.0/24", Labels: "provides=vl3"})
	pt := n.StartPassthrough(ptNS, PassthroughOptions{Name: "ips", Service: "filtered",
		Advertise: "provides=ips", Labels: "provided=ips", Deny: []string{"udp:9999"}})

	url := "kernel://filtered/nsm-1"
	c := n.StartNSC(clientNS, "nsc1", url)
	v := connect(t, l, c, clientNS, epNS, url)
	if v.Report.Endpoint != "ips" {
		t.Errorf("client landed on %q, want the passthrough ips", v.Report.Endpoint)
	}
	pt.WaitLogLine(StartTimeout, "cross-connected")
	got := WaitCounters(pt, pingTimeout, "ping passed", func(c PassthroughCounters) bool { return c.Passed >= 6 })
	if got.Dropped != 0 {
		t.Errorf("dropped %d before any denied packet", got.Dropped)
	}
	sendUDP(t, clientNS, Addr(v.Report.DstIPs[0]), 9999)
	sendUDP(t, clientNS, Addr(v.Report.DstIPs[0]), 9999)
	WaitCounters(pt, pingTimeout, "udp:9999 dropped", func(c PassthroughCounters) bool { return c.Dropped >= 2 })

	stopClient(t, c)
	pt.WaitLogLine(cleanupTimeout, "passthrough closed")
	waitNoVwireLinks(t, ptNS, epNS)
	if err := pt.Stop(); err != nil {
		t.Errorf("%s: stopped with %v", pt, err)
	}
	l.WaitNoLeak(cleanupTimeout, before)
}

// waitNoVwireLinks waits until the namespaces hold no vWire link: closing
// the incoming connection closed the onward one too.
func waitNoVwireLinks(t *testing.T, nss ...*Netns) {
	t.Helper()
	Eventually(t, cleanupTimeout, "the vWires are gone", func() error {
		n, err := CountVwireLinks(nss...)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d vwire links left", n)
		}
		return err
	})
}

// Composition (the service-mesh example): a client without labels lands on
// the envoy-proxy passthrough, whose onward request (service=envoy-proxy)
// lands on the vl3; ping crosses both, with the vl3's addresses.
func TestAdvancedCompositionServiceMesh(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 1})
	n := m.Nodes[0]
	clientNS, proxyNS, vl3NS := l.Netns("nsc1"), l.Netns("envoy"), l.Netns("vl3")
	m.Apply(ExampleYAML(l, "service-mesh"))

	n.StartICMPResponder(vl3NS, EndpointOptions{Name: "vl3", Service: "service-mesh", CIDR: "172.16.6.0/24", Labels: "service=vl3"})
	proxy := n.StartPassthrough(proxyNS, PassthroughOptions{Name: "envoy-proxy", Service: "service-mesh",
		Advertise: "service=envoy-proxy", Labels: "service=envoy-proxy"})

	url := "kernel://service-mesh/nsm-1"
	c := n.StartNSC(clientNS, "nsc1", url)
	v := connect(t, l, c, clientNS, vl3NS, url)
	if v.Report.Endpoint != "envoy-proxy" {
		t.Errorf("client landed on %q, want envoy-proxy", v.Report.Endpoint)
	}
	if !strings.HasPrefix(v.Report.SrcIPs[0], "172.16.6.") {
		t.Errorf("client address %s, want one of the vl3's 172.16.6.0/24", v.Report.SrcIPs[0])
	}
	WaitCounters(proxy, pingTimeout, "ping passed through the proxy", func(c PassthroughCounters) bool { return c.Passed >= 6 })
	stopClient(t, c)
	proxy.WaitLogLine(cleanupTimeout, "passthrough closed")
	waitNoVwireLinks(t, proxyNS, vl3NS, clientNS)
}

// Selective composition (the secure-vl3 example as intended): foo v1.1 goes
// through the IPS, whose counters grow; v1.2 goes straight to the vl3 and
// the IPS's counters do not move; both reach the vl3.
func TestAdvancedSelectiveComposition(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 1})
	n := m.Nodes[0]
	oldNS, newNS, ipsNS, vl3NS := l.Netns("foo-v11"), l.Netns("foo-v12"), l.Netns("ips"), l.Netns("vl3")
	m.Apply(ExampleYAML(l, "secure-vl3"))
	// No IPv6 on the workloads' links: its solicitations would cross the
	// IPS at any time and blur the counters.
	for _, ns := range []*Netns{oldNS, newNS, ipsNS, vl3NS} {
		noIPv6(t, ns)
	}

	n.StartICMPResponder(vl3NS, EndpointOptions{Name: "vl3", Service: "secure-vl3", CIDR: "172.16.7.0/24", Labels: "provides=vl3"})
	ips := n.StartPassthrough(ipsNS, PassthroughOptions{Name: "ips", Service: "secure-vl3",
		Advertise: "provides=ips", Labels: "provided=ips"})

	oldURL := "kernel://secure-vl3/nsm-1?app=foo&version=v1.1"
	c11 := n.StartNSC(oldNS, "foo-v11", oldURL)
	v11 := connect(t, l, c11, oldNS, vl3NS, oldURL)
	if v11.Report.Endpoint != "ips" {
		t.Errorf("foo v1.1 landed on %q, want the IPS", v11.Report.Endpoint)
	}
	WaitCounters(ips, pingTimeout, "v1.1's pings passed the IPS", func(c PassthroughCounters) bool { return c.Passed >= 6 })
	through := settledCounters(t, ips)

	newURL := "kernel://secure-vl3/nsm-1?app=foo&version=v1.2"
	c12 := n.StartNSC(newNS, "foo-v12", newURL)
	v12 := connect(t, l, c12, newNS, vl3NS, newURL)
	if v12.Report.Endpoint != "vl3" {
		t.Errorf("foo v1.2 landed on %q, want the vl3 directly", v12.Report.Endpoint)
	}
	// None of v1.2's pings (3 each way, 12 packets with the ones of
	// connect: at least 20) may cross the IPS. v1.1's idle vWire still
	// carries the ARP probes that confirm its two neighbour entries a few
	// seconds after its last ping (4 packets): allow fewer than 12.
	if err := v12.Client.Ping(Addr(v12.Report.DstIPs[0])); err != nil {
		t.Fatal(err)
	}
	after := settledCounters(t, ips)
	if d := after.Passed - through.Passed; d >= 12 {
		t.Errorf("IPS counters moved by %d while only v1.2 talked: %+v -> %+v", d, through, after)
	} else {
		t.Logf("IPS counters while only v1.2 talked: %+v -> %+v", through, after)
	}
	// v1.1 still goes through the IPS.
	v11.ping(t)
	WaitCounters(ips, pingTimeout, "v1.1's new pings passed the IPS", func(c PassthroughCounters) bool { return c.Passed >= after.Passed+6 })
}

// settledCounters waits until p's counters stay the same for two seconds
// (longer than the log period) and returns them.
func settledCounters(t *testing.T, p *Proc) PassthroughCounters {
	t.Helper()
	var last PassthroughCounters
	var since time.Time
	Eventually(t, pingTimeout, p.Name+"'s counters settle", func() error {
		c, err := Counters(p)
		if err != nil {
			return Permanent(err)
		}
		if c != last || since.IsZero() {
			last, since = c, time.Now()
		}
		if time.Since(since) < 2*time.Second {
			return fmt.Errorf("counters %+v changed %v ago", c, time.Since(since).Round(time.Millisecond))
		}
		return nil
	})
	return last
}

// noIPv6 turns IPv6 off for the links made later in ns.
func noIPv6(t *testing.T, ns *Netns) {
	t.Helper()
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"} {
		if out, err := ns.Exec("sysctl", "-qw", k); err != nil {
			t.Fatalf("%s: sysctl %s: %v: %s", ns.Label, k, err, out)
		}
	}
}

// Topology-aware selection (the local-vl3 example): one endpoint per node,
// and every client lands on the endpoint of its own node.
func TestAdvancedTopologyLocalVL3(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	m.Apply(ExampleYAML(l, "local-vl3"))
	eps := map[string]*Netns{}
	for i, n := range m.Nodes {
		ns := l.Netns("vl3-" + n.Name)
		eps[n.Name] = ns
		n.StartICMPResponder(ns, EndpointOptions{Name: "vl3-" + n.Name, Service: "local-vl3",
			CIDR: fmt.Sprintf("172.16.%d.0/24", 10+i), Labels: "nodeName=" + n.Name})
	}
	for _, n := range m.Nodes {
		for k := range 2 {
			name := fmt.Sprintf("nsc%d-%s", k+1, n.Name)
			ns := l.Netns(name)
			url := "kernel://local-vl3/nsm-1?nodeName=" + n.Name
			c := n.StartNSC(ns, name, url)
			v := connect(t, l, c, ns, eps[n.Name], url)
			if want := "vl3-" + n.Name; v.Report.Endpoint != want {
				t.Errorf("%s on %s landed on %q, want %s", name, n.Name, v.Report.Endpoint, want)
			}
		}
	}
}
