package e2e

import (
	"fmt"
	"testing"
	"time"
)

// livenessInterval is the clients' datapath check period in these tests.
const livenessInterval = 300 * time.Millisecond

// StartNSCWithLiveness starts a client as StartNSC does, with the datapath
// check on (--liveness-interval, --liveness-failures 3).
func (n *MeshNode) StartNSCWithLiveness(ws *Netns, name, url string, interval time.Duration) *NSC {
	m := n.mesh
	m.Lab.T.Helper()
	args := []string{"--name", name, "--connect-to", n.ConnectTo(), "--output", "json",
		"--liveness-interval", interval.String(), "--liveness-failures", "3", url}
	return &NSC{Proc: m.Lab.Start(ws, name, m.common("nsc", args...)...), URLs: []string{url}}
}

// The datapath dies while the control plane still answers: the endpoint's
// side of the vWire goes down in its namespace, the manager and the
// endpoint stay up. The client's liveness check notices, asks for another
// endpoint (RESELECT_REQUESTED), lands on the other icmp-responder, and
// pings again; the old vWire is removed.
func TestLivenessReselects(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 1})
	n := m.Nodes[0]
	clientNS := l.Netns("nsc1")
	epNS := map[string]*Netns{"nse-a": l.Netns("nse-a"), "nse-b": l.Netns("nse-b")}
	before := l.MustSnapshot()

	n.StartICMPResponder(epNS["nse-a"], EndpointOptions{Name: "nse-a", Service: "icmp-live", CIDR: "172.16.21.0/24"})
	n.StartICMPResponder(epNS["nse-b"], EndpointOptions{Name: "nse-b", Service: "icmp-live", CIDR: "172.16.22.0/24"})
	url := "kernel://icmp-live/nsm-1"
	c := n.StartNSCWithLiveness(clientNS, "nsc1", url, livenessInterval)
	first := c.WaitConnected()[url].Endpoint
	other := map[string]string{"nse-a": "nse-b", "nse-b": "nse-a"}[first]
	if other == "" {
		t.Fatalf("client landed on %q", first)
	}
	v := connect(t, l, c, clientNS, epNS[first], url)

	// Break the datapath, not the control plane.
	links, err := epNS[first].VwireLinks()
	if err != nil || len(links) != 1 {
		t.Fatalf("%s: vwire links %v (%v), want one", first, links, err)
	}
	t.Logf("setting %s down in %s", links[0].Name, epNS[first].Label)
	epNS[first].MustIP("link", "set", links[0].Name, "down")

	var moved string
	Eventually(t, pingTimeout, "the client to move to "+other, func() error {
		conns, err := c.Connections()
		if err != nil {
			return Permanent(err)
		}
		if c.Exited() {
			return Permanent(fmt.Errorf("%s exited", c))
		}
		r := conns[url]
		if r.Endpoint != other {
			return fmt.Errorf("on %s", r.Endpoint)
		}
		moved = r.DstIPs[0]
		return nil
	})
	if _, ok := c.FindLogLine("datapath dead", "RESELECT_REQUESTED"); !ok {
		t.Errorf("%s did not log the dead datapath", c)
	}
	if _, ok := n.Manager.FindLogLine("client requested reselection"); !ok {
		t.Errorf("%s did not log the reselection", n.Manager)
	}
	v.Report = c.WaitConnected()[url]
	v.Endpoint = epNS[other]
	CheckClientSide(l, clientNS, v.Report)
	clientNS.WaitPing(pingTimeout, Addr(moved))
	v.ping(t)
	// The old path was closed: nothing is left in the failed endpoint's
	// namespace.
	Eventually(t, cleanupTimeout, "the old vWire to go", func() error {
		n, err := CountVwireLinks(epNS[first])
		if err == nil && n > 0 {
			err = fmt.Errorf("%d vwire links left in %s", n, first)
		}
		return err
	})

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}
