package e2e

import (
	"testing"
)

// A client closes while its node's forwarder is down (killed with SIGKILL,
// not yet back). Nothing may leak: the Close reaches what it can (the peer
// node's side of the remote vWire), and once the forwarder is started
// again, its reconcile removes what nobody claims after --reconcile-grace:
// the local vWire's veth pair in the two workloads' namespaces, and node1's
// side of the remote one.
func TestCloseWhileForwarderDown(t *testing.T) {
	const grace = shortLifetime
	l, m := newMesh(t, MeshOptions{Nodes: 2, MaxTokenLifetime: shortLifetime,
		ForwarderArgs: []string{"--reconcile-grace", grace.String()}})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, localEP, remoteEP := l.Netns("nsc1"), l.Netns("nse-local"), l.Netns("nse-remote")
	before := l.MustSnapshot()

	n1.StartICMPResponder(localEP, EndpointOptions{Name: "nse-local", Service: "svc-local", CIDR: "172.16.11.0/24"})
	n2.StartICMPResponder(remoteEP, EndpointOptions{Name: "nse-remote", Service: "svc-remote", CIDR: "172.16.12.0/24"})
	urlL, urlR := "kernel://svc-local/nsm-l", "kernel://svc-remote/nsm-r"
	c := n1.StartNSC(clientNS, "nsc1", urlL, urlR)
	connect(t, l, c, clientNS, localEP, urlL)
	connect(t, l, c, clientNS, remoteEP, urlR)
	requireVwireLinks(t, clientNS, localEP, remoteEP, n1.Netns, n2.Netns)

	t.Logf("killing %s", n1.Forwarder)
	n1.Forwarder.Kill()
	// The client's Close cannot reach node1's dataplane; whether it
	// reports that is the client's business, what must hold is below.
	if err := c.Stop(); err != nil {
		t.Logf("%s: stopped with %v while its forwarder was down", c, err)
	}
	// Node2's side went with the Close (node1's manager still passes it
	// on), before node1's forwarder is back.
	waitNoVwireLinks(t, n2.Netns, remoteEP)

	n1.StartForwarder()
	n1.Manager.WaitLogLine(StartTimeout, "forwarder registered")
	// Everything else goes once the restarted forwarder's grace has
	// passed with no refresh claiming it.
	l.WaitNoLeak(grace+cleanupTimeout, before)
}
