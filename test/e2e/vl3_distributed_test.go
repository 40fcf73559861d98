package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// The distributed vL3 (deployments/examples/vl3-distributed): one vl3
// endpoint on each of two nodes, sharing 172.16.0.0/16 with a subnet each,
// connected to each other through vwire; a client on each node lands on its
// node's endpoint, and the two clients reach each other across the peer
// vWire, which is refreshed. The peer on node2 stops (its routes go at
// node1) and comes back (they return). At the end every interface is gone.
func TestVL3Distributed(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	m.Apply(ExampleYAML(l, "vl3-distributed"))
	const (
		service = "distributed-vl3"
		url     = "kernel://" + service + "/nsm-1"
	)
	type site struct {
		node   *MeshNode
		name   string // the vl3 endpoint's
		subnet netip.Prefix
		epNS   *Netns
		cNS    *Netns
	}
	var sites []*site
	for i, n := range m.Nodes {
		sites = append(sites, &site{
			node:   n,
			name:   "vl3-" + n.Name,
			subnet: netip.MustParsePrefix(fmt.Sprintf("172.16.%d.0/24", i+1)),
			epNS:   l.Netns("vl3-" + n.Name),
			cNS:    l.Netns("nsc-" + n.Name),
		})
	}
	s1, s2 := sites[0], sites[1]
	before := l.MustSnapshot()

	eps := map[*site]*Proc{}
	for _, s := range sites {
		eps[s] = startVL3(t, m, s.node, s.epNS, s.name, s.subnet)
	}
	// vl3-node1 sorts first: it asks vl3-node2 for the peer vWire.
	eps[s1].WaitLogLine(StartTimeout, "vl3 peer connected", "peer="+s2.name, "side=asked")
	eps[s2].WaitLogLine(StartTimeout, "vl3 peer connected", "peer="+s1.name, "side=answered")
	if _, ok := eps[s2].FindLogLine("vl3 peer connected", "side=asked"); ok {
		t.Errorf("%s asked for a peer vWire too: one per pair is enough", s2.name)
	}
	waitRoute(t, s1.epNS, s2.subnet, true)
	waitRoute(t, s2.epNS, s1.subnet, true)

	clients := map[*site]*NSC{}
	conns := map[*site]vwire{}
	connectSite := func(s *site) {
		t.Helper()
		clients[s] = s.node.StartNSC(s.cNS, "nsc-"+s.node.Name, url)
		v := connect(t, l, clients[s], s.cNS, s.epNS, url)
		if v.Report.Endpoint != s.name {
			t.Errorf("the client on %s landed on %q, want %s", s.node.Name, v.Report.Endpoint, s.name)
		}
		if a := netip.MustParseAddr(Addr(v.Report.SrcIPs[0])); !s.subnet.Contains(a) {
			t.Errorf("the client on %s got %s, want an address of %s", s.node.Name, a, s.subnet)
		}
		conns[s] = v
	}
	crossPing := func() {
		t.Helper()
		s1.cNS.WaitPing(pingTimeout, Addr(conns[s2].Report.SrcIPs[0]))
		s2.cNS.WaitPing(pingTimeout, Addr(conns[s1].Report.SrcIPs[0]))
	}
	connectSite(s1)
	connectSite(s2)
	crossPing()
	// The peer vWire is refreshed end to end (at a third of its 6s).
	eps[s2].WaitLogLine(StartTimeout, "connection refreshed", "service=distributed-vl3-peers")
	crossPing()

	// The peer on node2 leaves (its client first, which would otherwise
	// fall through to node1's endpoint): node1 closes the peer vWire and
	// the route to 172.16.2.0/24 goes with it.
	stopClient(t, clients[s2])
	waitNoVwireLinks(t, s2.cNS)
	if err := eps[s2].Stop(); err != nil {
		t.Errorf("%s: stopped with %v", eps[s2], err)
	}
	eps[s1].WaitLogLine(cleanupTimeout, "vl3 peer disconnected", "peer="+s2.name)
	waitRoute(t, s1.epNS, s2.subnet, false)
	waitNoVwireLinks(t, s2.epNS)

	// It comes back under the same name: the peer vWire and the routes
	// return, and the clients reach each other again.
	eps[s2] = startVL3(t, m, s2.node, s2.epNS, s2.name, s2.subnet)
	Eventually(t, StartTimeout, s1.name+" connects to "+s2.name+" again", func() error {
		if n := countLogLines(eps[s1], "vl3 peer connected", "peer="+s2.name); n < 2 {
			return fmt.Errorf("%d peer connections logged", n)
		}
		return nil
	})
	waitRoute(t, s1.epNS, s2.subnet, true)
	waitRoute(t, s2.epNS, s1.subnet, true)
	connectSite(s2)
	crossPing()

	// Closing everything removes every interface.
	for _, s := range sites {
		stopClient(t, clients[s])
	}
	for _, s := range sites {
		if err := eps[s].Stop(); err != nil {
			t.Errorf("%s: stopped with %v", eps[s], err)
		}
	}
	eps[s1].WaitLogLine(cleanupTimeout, "vl3 peer disconnected", "peer="+s2.name)
	l.WaitNoLeak(cleanupTimeout, before)
}

// startVL3 starts a vl3 endpoint sharing 172.16.0.0/16, with subnet, in
// ns, registered through n's manager for its node, and waits until the
// manager has registered it.
func startVL3(t *testing.T, m *Mesh, n *MeshNode, ns *Netns, name string, subnet netip.Prefix) *Proc {
	t.Helper()
	p := m.Lab.Start(ns, name, m.common("nse vl3",
		"--name", name,
		"--service", "distributed-vl3",
		"--prefix", "172.16.0.0/16",
		"--subnet", subnet.String(),
		"--labels", "nodeName="+n.Name,
		"--peer-lifetime", "6s",
		"--connect-to", n.ConnectTo(),
		"--listen", "unix://"+filepath.Join(m.Lab.Dir, name+".sock"))...)
	n.Manager.WaitLogLine(StartTimeout, "endpoint registered", "name="+name)
	return p
}

// waitRoute waits until ns has (or no longer has) a route to dst.
func waitRoute(t *testing.T, ns *Netns, dst netip.Prefix, present bool) {
	t.Helper()
	what := fmt.Sprintf("%s routes %s", ns.Label, dst)
	if !present {
		what = fmt.Sprintf("%s no longer routes %s", ns.Label, dst)
	}
	Eventually(t, pingTimeout, what, func() error {
		out, err := ns.IP("route", "show", "exact", dst.String())
		if err != nil {
			return err
		}
		if (strings.TrimSpace(out) != "") != present {
			return fmt.Errorf("routes: %q", strings.TrimSpace(out))
		}
		return nil
	})
}

// countLogLines counts the lines of p's log that hold every substring.
func countLogLines(p *Proc, substrs ...string) int {
	n := 0
	for line := range strings.SplitSeq(p.Log(), "\n") {
		all := true
		for _, s := range substrs {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all && line != "" {
			n++
		}
	}
	return n
}
