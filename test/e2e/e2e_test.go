package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vwire/vwire/workload/nsc"
)

// Bounds of the waits in the scenarios: generous, they only end a wait
// that would otherwise hang.
const (
	pingTimeout    = 30 * time.Second // a new or healed vWire carries traffic
	cleanupTimeout = 30 * time.Second // links go after a Close
	expiryTimeout  = 60 * time.Second // links go after an expiry
	// shortLifetime is the managers' and forwarders' token lifetime where
	// expiry or refresh matters.
	shortLifetime = 5 * time.Second
)

// vwire is one client's connection, as the tests check it.
type vwire struct {
	Report nsc.Report
	Client *Netns
	// Endpoint is where the endpoint's side of the vWire is plugged.
	Endpoint *Netns
}

// connect waits until c is connected to url and checks the vWire: the
// client's interface with its addresses, and ping both ways.
func connect(t *testing.T, l *Lab, c *NSC, clientNS, epNS *Netns, url string) vwire {
	t.Helper()
	r, ok := c.WaitConnected()[url]
	if !ok {
		t.Fatalf("%s: no connection for %s", c, url)
	}
	if len(r.SrcIPs) == 0 || len(r.DstIPs) == 0 {
		t.Fatalf("%s: connection without addresses: %+v", url, r)
	}
	t.Logf("%s: %s via %s, %s -> %s (%s)", clientNS.Label, url, r.Endpoint, r.SrcIPs[0], r.DstIPs[0], r.Parameters["name"])
	CheckClientSide(l, clientNS, r)
	v := vwire{Report: r, Client: clientNS, Endpoint: epNS}
	v.ping(t)
	return v
}

// ping checks traffic both ways across the vWire.
func (v vwire) ping(t *testing.T) {
	t.Helper()
	v.Client.WaitPing(pingTimeout, Addr(v.Report.DstIPs[0]))
	if err := v.Endpoint.Ping(Addr(v.Report.SrcIPs[0])); err != nil {
		t.Error(err)
	}
}

// requireVwireLinks fails the test unless each namespace holds at least one
// link the dataplane made.
func requireVwireLinks(t *testing.T, nss ...*Netns) {
	t.Helper()
	for _, ns := range nss {
		links, err := ns.VwireLinks()
		if err != nil {
			t.Fatal(err)
		}
		if len(links) == 0 {
			t.Errorf("%s: no vwire link while a vWire is up", ns.Label)
		}
	}
}

// requireKind fails the test unless ns holds a vwire link of that kind.
func requireKind(t *testing.T, ns *Netns, kind string) {
	t.Helper()
	links, err := ns.VwireLinks()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Kind() == kind {
			return
		}
	}
	t.Errorf("%s: no vwire %s link among %v", ns.Label, kind, links)
}

// stopClient stops c with SIGTERM (it closes its connections) and checks
// it exits cleanly.
func stopClient(t *testing.T, c *NSC) {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Errorf("%s: stopped with %v", c, err)
	}
}

// Scenario 1: a client and an endpoint on one node, for each payload.
func TestLocalKernelToKernel(t *testing.T) {
	for _, payload := range []string{"IP", "ETHERNET"} {
		t.Run(payload, func(t *testing.T) {
			l, m := newMesh(t, MeshOptions{Nodes: 1})
			n := m.Nodes[0]
			clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
			before := l.MustSnapshot()

			svc := "icmp-" + strings.ToLower(payload)
			ep := n.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: svc, CIDR: "172.16.1.0/24", Payload: payload})
			if _, ok := ep.FindLogLine("registered network service", "payload="+payload); !ok {
				t.Errorf("%s did not register %s with payload %s", ep, svc, payload)
			}
			url := "kernel://" + svc + "/nsm-1"
			c := n.StartNSC(clientNS, "nsc1", url)
			v := connect(t, l, c, clientNS, epNS, url)
			if got := v.Report.Parameters["name"]; got != "nsm-1" {
				t.Errorf("client interface %q, want nsm-1 from the URL", got)
			}
			requireVwireLinks(t, clientNS, epNS)
			requireKind(t, clientNS, "veth")

			stopClient(t, c)
			l.WaitNoLeak(cleanupTimeout, before)
		})
	}
}

// Scenario 2: client on node1, endpoint on node2, kernel vxlan between.
func TestRemoteKernelVxlanKernel(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
	before := l.MustSnapshot()

	n2.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-remote", CIDR: "172.16.2.0/24"})
	url := "kernel://icmp-remote/nsm-1"
	c := n1.StartNSC(clientNS, "nsc1", url)
	connect(t, l, c, clientNS, epNS, url)
	requireVwireLinks(t, clientNS, epNS, n1.Netns, n2.Netns)
	requireKind(t, n1.Netns, "vxlan")
	requireKind(t, n2.Netns, "vxlan")

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}

// Scenario 3a: two clients, one on each node, share one endpoint.
func TestTwoClientsOneEndpoint(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	c1NS, c2NS, epNS := l.Netns("nsc1"), l.Netns("nsc2"), l.Netns("nse1")
	before := l.MustSnapshot()

	n2.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-shared", CIDR: "172.16.3.0/24"})
	url := "kernel://icmp-shared/nsm-1"
	c1 := n1.StartNSC(c1NS, "nsc1", url) // remote
	c2 := n2.StartNSC(c2NS, "nsc2", url) // local
	v1 := connect(t, l, c1, c1NS, epNS, url)
	v2 := connect(t, l, c2, c2NS, epNS, url)
	if v1.Report.DstIPs[0] == v2.Report.DstIPs[0] || v1.Report.SrcIPs[0] == v2.Report.SrcIPs[0] {
		t.Errorf("two connections share addresses: %v->%v and %v->%v",
			v1.Report.SrcIPs, v1.Report.DstIPs, v2.Report.SrcIPs, v2.Report.DstIPs)
	}
	if links, _ := epNS.VwireLinks(); len(links) != 2 {
		t.Errorf("endpoint namespace has %d vwire links, want 2: %v", len(links), links)
	}

	// Closing one leaves the other working.
	stopClient(t, c1)
	Eventually(t, cleanupTimeout, "nsc1's interface is gone", func() error {
		if _, ok, err := c1NS.Link(v1.Report.Parameters["name"]); err != nil || ok {
			return fmt.Errorf("still there (err %v)", err)
		}
		return nil
	})
	v2.ping(t)

	stopClient(t, c2)
	l.WaitNoLeak(cleanupTimeout, before)
}

// Scenario 3b: one client asks for two services: one local, one remote.
func TestOneClientTwoServices(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, epA, epB := l.Netns("nsc1"), l.Netns("nse-a"), l.Netns("nse-b")
	before := l.MustSnapshot()

	n1.StartICMPResponder(epA, EndpointOptions{Name: "nse-a", Service: "svc-a", CIDR: "172.16.4.0/24"})
	n2.StartICMPResponder(epB, EndpointOptions{Name: "nse-b", Service: "svc-b", CIDR: "172.16.5.0/24"})
	urlA, urlB := "kernel://svc-a/nsm-a", "kernel://svc-b/nsm-b"
	c := n1.StartNSC(clientNS, "nsc1", urlA, urlB)
	a := connect(t, l, c, clientNS, epA, urlA)
	b := connect(t, l, c, clientNS, epB, urlB)
	if a.Report.ID == b.Report.ID {
		t.Errorf("both services got connection %s", a.Report.ID)
	}
	requireVwireLinks(t, epA, epB, n2.Netns)

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}

// Scenario 4a: a Close removes every interface on every node.
func TestCloseRemovesEverything(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, localEP, remoteEP := l.Netns("nsc1"), l.Netns("nse-local"), l.Netns("nse-remote")
	before := l.MustSnapshot()

	n1.StartICMPResponder(localEP, EndpointOptions{Name: "nse-local", Service: "svc-local", CIDR: "172.16.6.0/24"})
	n2.StartICMPResponder(remoteEP, EndpointOptions{Name: "nse-remote", Service: "svc-remote", CIDR: "172.16.7.0/24"})
	urlL, urlR := "kernel://svc-local/nsm-l", "kernel://svc-remote/nsm-r"
	c := n1.StartNSC(clientNS, "nsc1", urlL, urlR)
	connect(t, l, c, clientNS, localEP, urlL)
	connect(t, l, c, clientNS, remoteEP, urlR)
	requireVwireLinks(t, clientNS, localEP, remoteEP, n1.Netns, n2.Netns)
	if d := before.Diff(l.MustSnapshot()); len(d) == 0 {
		t.Fatal("two vWires up and no new link anywhere")
	}

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
	// The endpoints keep serving: a new client gets a new vWire.
	c2 := n1.StartNSC(clientNS, "nsc1-again", urlR)
	connect(t, l, c2, clientNS, remoteEP, urlR)
	stopClient(t, c2)
	l.WaitNoLeak(cleanupTimeout, before)
}

// Scenario 4b: a client that dies without closing: its connection is kept
// while refreshed, and removed everywhere once it expires.
func TestExpiryAfterClientKilled(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2, MaxTokenLifetime: shortLifetime})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
	before := l.MustSnapshot()

	n2.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-expiry", CIDR: "172.16.8.0/24"})
	url := "kernel://icmp-expiry/nsm-1"
	c := n1.StartNSC(clientNS, "nsc1", url)
	v := connect(t, l, c, clientNS, epNS, url)

	// Past the lifetime, refreshes keep the vWire.
	time.Sleep(shortLifetime + 2*time.Second)
	v.ping(t)
	if c.Exited() {
		t.Fatalf("%s exited", c)
	}

	c.Kill()
	l.WaitNoLeak(expiryTimeout, before)
	// The client's manager expired the connection; node2's may have done
	// the same or been told by node1's Close, whichever came first.
	if _, ok := n1.Manager.FindLogLine("connection expired"); !ok {
		t.Errorf("%s: the manager did not log the expiry", n1.Name)
	}
}

// Scenario 5: a forwarder killed with SIGKILL and started again: the vWire
// carries traffic again after the next refresh, with the same links. The
// restarted forwarder keeps the links it finds for --reconcile-grace
// only; the test waits that out, so the links it sees afterwards are ones
// a refresh claimed.
func TestForwarderRestart(t *testing.T) {
	const grace = shortLifetime // a refresh comes within a lifetime
	l, m := newMesh(t, MeshOptions{Nodes: 2, MaxTokenLifetime: shortLifetime,
		ForwarderArgs: []string{"--reconcile-grace", grace.String()}})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, localEP, remoteEP := l.Netns("nsc1"), l.Netns("nse-local"), l.Netns("nse-remote")
	before := l.MustSnapshot()

	n1.StartICMPResponder(localEP, EndpointOptions{Name: "nse-local", Service: "svc-local", CIDR: "172.16.9.0/24"})
	n2.StartICMPResponder(remoteEP, EndpointOptions{Name: "nse-remote", Service: "svc-remote", CIDR: "172.16.10.0/24"})
	urlL, urlR := "kernel://svc-local/nsm-l", "kernel://svc-remote/nsm-r"
	c := n1.StartNSC(clientNS, "nsc1", urlL, urlR)
	local := connect(t, l, c, clientNS, localEP, urlL)
	remote := connect(t, l, c, clientNS, remoteEP, urlR)
	up := l.MustSnapshot()

	for _, n := range []*MeshNode{n1, n2} {
		t.Logf("killing %s", n.Forwarder)
		n.Forwarder.Kill()
		n.StartForwarder()
		time.Sleep(grace + time.Second)
		local.ping(t)
		remote.ping(t)
		// The links are those of before the kill: none lost, none doubled.
		l.WaitNoLeak(pingTimeout, up)
		if c.Exited() {
			t.Fatalf("%s exited", c)
		}
	}

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}

// Scenario 6: `vwire node`, the embedded default: registry, manager and
// forwarder in one process. With two nodes, node2's uses node1's registry
// (--registry), the vWire crosses the fabric, and neither is told its
// address: each finds it from its default route.
func TestNodeEmbedded(t *testing.T) {
	for _, nodes := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d-node", nodes), func(t *testing.T) {
			l, m := newMesh(t, MeshOptions{Nodes: nodes, Embedded: true, AutoAddress: nodes > 1})
			clientNode, epNode := m.Nodes[0], m.Nodes[nodes-1]
			clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
			before := l.MustSnapshot()

			epNode.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-node", CIDR: "172.16.11.0/24"})
			url := "kernel://icmp-node/nsm-1"
			c := clientNode.StartNSC(clientNS, "nsc1", url)
			connect(t, l, c, clientNS, epNS, url)
			requireVwireLinks(t, clientNS, epNS)
			if nodes > 1 {
				requireKind(t, clientNode.Netns, "vxlan")
				requireKind(t, epNode.Netns, "vxlan")
			}

			stopClient(t, c)
			l.WaitNoLeak(cleanupTimeout, before)
			for _, n := range m.Nodes {
				if err := n.Manager.Stop(); err != nil {
					t.Errorf("%s: stopped with %v", n.Manager, err)
				}
			}
			l.WaitNoLeak(cleanupTimeout, before)
		})
	}
}
