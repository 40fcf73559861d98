package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// wireguardKind is the kind of link a node's WireGuard device is, from
// what its forwarder logged it uses.
func wireguardKind(t *testing.T, n *MeshNode) string {
	t.Helper()
	if _, ok := n.Forwarder.FindLogLine("userspace WireGuard"); ok {
		return "tun"
	}
	if _, ok := n.Forwarder.FindLogLine("kernel WireGuard available"); ok {
		return "wireguard"
	}
	t.Fatalf("%s: the forwarder did not log which WireGuard it uses", n.Forwarder)
	return ""
}

// rtt pings addr from ns 20 times and returns ping's summary line.
func rtt(ns *Netns, addr string) string {
	out, err := ns.Exec("ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", addr)
	if err != nil {
		return fmt.Sprintf("ping failed: %v", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "rtt") {
			return strings.TrimSpace(l)
		}
	}
	return "no summary"
}

// TestRemoteKernelWireguardKernel is TestRemoteKernelVxlanKernel over
// WireGuard, as the kernel dataplane picks it by default (--wireguard
// auto): the kernel's where it has WireGuard, else wireguard-go in the
// forwarder's process, with strict reverse-path filtering on the nodes.
// The payload is dual stack: ping both ways over IPv4
// and IPv6, iperf3 across (a figure, logged). Then each node's forwarder is
// killed and started again: a userspace device goes with its process, and
// the next refresh (or the manager's heal) negotiates the vWire anew; the
// test logs the interruption probers saw, and checks that once the
// reconcile grace has passed the links are those of before. A Close
// leaves nothing.
func TestRemoteKernelWireguardKernel(t *testing.T) {
	const grace = shortLifetime // a refresh comes within a lifetime
	l, m := newMesh(t, MeshOptions{Nodes: 2, MaxTokenLifetime: shortLifetime, WireGuard: "auto",
		ForwarderArgs: []string{"--reconcile-grace", grace.String()}})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
	// Strict reverse-path filtering on the nodes, as some distributions
	// set it: the forwarders need no exception (nor set any).
	for _, n := range m.Nodes {
		if out, err := n.Netns.Exec("sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"); err != nil {
			t.Fatalf("%s: rp_filter: %v: %s", n.Name, err, out)
		}
	}
	before := l.MustSnapshot()

	n2.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-wg", CIDR: "172.16.30.0/24", Args: []string{"--cidr", "fd00:30::/64"}})
	url := "kernel://icmp-wg/nsm-1"
	c := n1.StartNSC(clientNS, "nsc1", url)
	v := connect(t, l, c, clientNS, epNS, url)
	if len(v.Report.SrcIPs) != 2 || len(v.Report.DstIPs) != 2 {
		t.Fatalf("want an IPv4 and an IPv6 pair, got %v -> %v", v.Report.SrcIPs, v.Report.DstIPs)
	}
	src6, dst6 := Addr(v.Report.SrcIPs[1]), Addr(v.Report.DstIPs[1])
	clientNS.WaitPing(pingTimeout, dst6)
	epNS.WaitPing(pingTimeout, src6)
	kind := wireguardKind(t, n1)
	requireKind(t, n1.Netns, kind)
	requireKind(t, n2.Netns, kind)
	for _, n := range []*MeshNode{n1, n2} {
		if links, _ := n.Netns.VwireLinks(); strings.Contains(fmt.Sprint(links), "vxlan") {
			t.Errorf("%s: a VXLAN device on a WireGuard vWire: %v", n.Name, links)
		}
	}
	dst4 := Addr(v.Report.DstIPs[0])
	t.Logf("WireGuard (%s): IPv4 %s; IPv6 %s", kind, rtt(clientNS, dst4), rtt(clientNS, dst6))
	if _, err := exec.LookPath("iperf3"); err == nil {
		srv := startIperf3Server(t, l, epNS, "iperf3")
		for _, addr := range []string{dst4, dst6} {
			t.Logf("WireGuard (%s): iperf3 to %s: %.0f Mbit/s", kind, addr, iperf3Mbps(t, throughputPath{name: "wireguard", from: clientNS, to: epNS, addr: addr}))
		}
		srv.Kill()
	} else {
		t.Log("no iperf3 here: no throughput figure")
	}

	probes := startProbes(t, []*Netns{clientNS}, []string{url}, []func() (string, error){func() (string, error) { return dst4, nil }})
	for _, n := range []*MeshNode{n1, n2} {
		up := l.MustSnapshot()
		start := time.Now()
		t.Logf("killing %s", n.Forwarder)
		n.Forwarder.Kill()
		n.StartForwarder()
		clientNS.WaitPing(pingTimeout, dst4)
		clientNS.WaitPing(pingTimeout, dst6)
		o := probes.outage(start, time.Now())
		t.Logf("%s forwarder restarted: %v", n.Name, o)
		// Past the reconcile grace the restarted forwarder has removed
		// what no refresh claimed: nothing may be lost or doubled.
		time.Sleep(time.Until(start.Add(grace + time.Second)))
		v.ping(t)
		epNS.WaitPing(pingTimeout, src6)
		l.WaitNoLeak(pingTimeout, up)
		if c.Exited() {
			t.Fatalf("%s exited", c)
		}
	}
	probes.stop()

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}

// BenchmarkRemoteWireguard compares a remote vWire over WireGuard (as
// --wireguard auto picks it: userspace on a kernel without WireGuard) with
// one over VXLAN on the same pair of nodes: ping round trip, TCP
// throughput (iperf3) and the longest gap in 50 ms probes while node1's
// forwarder is killed and started again. Figures, not assertions:
//
//	go test -run '^$' -bench RemoteWireguard -benchtime 1x ./test/e2e/
func BenchmarkRemoteWireguard(b *testing.B) {
	requireIperf3(b)
	for _, mode := range []struct{ name, wireguard string }{{"vxlan", "off"}, {"wireguard", "auto"}} {
		b.Run(mode.name, func(b *testing.B) {
			l, m := newMesh(b, MeshOptions{Nodes: 2, LogLevel: "info", MaxTokenLifetime: shortLifetime, WireGuard: mode.wireguard})
			n1, n2 := m.Nodes[0], m.Nodes[1]
			clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
			n2.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-bench", CIDR: "172.16.31.0/24"})
			url := "kernel://icmp-bench/nsm-1"
			dst := Addr(n1.StartNSC(clientNS, "nsc1", url).WaitConnected()[url].DstIPs[0])
			clientNS.WaitPing(pingTimeout, dst)
			startIperf3Server(b, l, epNS, "iperf3")
			b.ResetTimer()
			var mbps float64
			for range b.N {
				mbps += iperf3Mbps(b, throughputPath{name: mode.name, from: clientNS, to: epNS, addr: dst})
			}
			b.StopTimer()
			mbps /= float64(b.N)
			summary := rtt(clientNS, dst)
			probes := startProbes(b, []*Netns{clientNS}, []string{url}, []func() (string, error){func() (string, error) { return dst, nil }})
			start := time.Now()
			n1.Forwarder.Kill()
			n1.StartForwarder()
			clientNS.WaitPing(pingTimeout, dst)
			o := probes.outage(start, time.Now())
			probes.stop()
			b.ReportMetric(mbps, "Mbit/s")
			b.ReportMetric(o.Longest.Seconds(), "restart-gap-s")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: %.0f Mbit/s; %s; node1 forwarder restart: %v", mode.name, mbps, summary, o)
		})
	}
}
