package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// iperfSeconds is the length of each iperf3 run (after a first second
// that is left out, TCP's slow start).
const iperfSeconds = 3

// requireIperf3 skips the benchmark without iperf3.
func requireIperf3(b *testing.B) {
	b.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 is not installed (apt-get install -y iperf3): ", err)
	}
}

// throughputPath is one way from a client namespace to a server one.
type throughputPath struct {
	name     string
	from, to *Netns
	addr     string // the server's address, seen from the client
	reverse  bool   // the server sends (iperf3 --reverse)
	// bytes, when set, is what to send instead of sending for
	// iperfSeconds: a stalled connection then fails (command timeout)
	// rather than giving a small figure.
	bytes string
}

// BenchmarkThroughput measures TCP throughput (iperf3) across a plain veth
// pair between two namespaces, across a local vWire (client and endpoint on
// one node) and across a remote one (kernel vxlan between two nodes), and
// reports each in Mbit/s and the vWires' ratios to the veth.
func BenchmarkThroughput(b *testing.B) {
	requireIperf3(b)
	l, m := newMesh(b, MeshOptions{Nodes: 2, LogLevel: "info"})
	n1, n2 := m.Nodes[0], m.Nodes[1]
	clientNS, localEP, remoteEP := l.Netns("nsc1"), l.Netns("nse-local"), l.Netns("nse-remote")
	vethA, vethB := l.Netns("veth-a"), l.Netns("veth-b")
	l.VethPair(vethA, vethB, "veth0", netip.MustParsePrefix("10.112.0.1/30"), netip.MustParsePrefix("10.112.0.2/30"))

	n1.StartICMPResponder(localEP, EndpointOptions{Name: "nse-local", Service: "svc-local", CIDR: "172.16.20.0/24"})
	n2.StartICMPResponder(remoteEP, EndpointOptions{Name: "nse-remote", Service: "svc-remote", CIDR: "172.16.21.0/24"})
	urlL, urlR := "kernel://svc-local/nsm-l", "kernel://svc-remote/nsm-r"
	conns := n1.StartNSC(clientNS, "nsc1", urlL, urlR).WaitConnected()

	paths := []throughputPath{
		{name: "veth", from: vethA, to: vethB, addr: "10.112.0.2"},
		{name: "local", from: clientNS, to: localEP, addr: Addr(conns[urlL].DstIPs[0])},
		{name: "remote", from: clientNS, to: remoteEP, addr: Addr(conns[urlR].DstIPs[0])},
	}
	for _, p := range paths {
		startIperf3Server(b, l, p.to, "iperf3-"+p.name)
		p.from.WaitPing(pingTimeout, p.addr)
	}

	b.ResetTimer()
	mbps := map[string]float64{}
	for range b.N {
		for _, p := range paths {
			mbps[p.name] += iperf3Mbps(b, p)
		}
	}
	b.StopTimer()
	for _, p := range paths {
		mbps[p.name] /= float64(b.N)
		b.ReportMetric(mbps[p.name], p.name+"-Mbit/s")
	}
	b.ReportMetric(mbps["local"]/mbps["veth"], "local/veth")
	b.ReportMetric(mbps["remote"]/mbps["veth"], "remote/veth")
	b.ReportMetric(0, "ns/op")
	b.Logf("veth %.0f Mbit/s, local vWire %.0f Mbit/s (%.2f of veth), remote vWire %.0f Mbit/s (%.2f of veth)",
		mbps["veth"], mbps["local"], mbps["local"]/mbps["veth"], mbps["remote"], mbps["remote"]/mbps["veth"])
}

// startIperf3Server runs an iperf3 server, named name, in ns until the
// caller kills it (or the test ends) and waits until it listens.
func startIperf3Server(t testing.TB, l *Lab, ns *Netns, name string) *Proc {
	t.Helper()
	srv := l.StartProgram(ns, name, "iperf3", "--server", "--forceflush")
	Eventually(t, StartTimeout, srv.String()+" listens", func() error {
		if strings.Contains(srv.Output(), "Server listening") {
			return nil
		}
		if srv.Exited() {
			return Permanent(ErrExited)
		}
		return fmt.Errorf("not yet")
	})
	return srv
}

// iperf3Mbps runs one iperf3 client along p and returns what the server
// received, in Mbit/s.
func iperf3Mbps(b testing.TB, p throughputPath) float64 {
	b.Helper()
	args := []string{"--client", p.addr, "--time", fmt.Sprint(iperfSeconds), "--omit", "1", "--json"}
	if p.bytes != "" {
		args = []string{"--client", p.addr, "--bytes", p.bytes, "--json"}
	}
	if p.reverse {
		args = append(args, "--reverse")
	}
	out, err := p.from.Exec("iperf3", args...)
	if err != nil {
		b.Fatalf("%s: iperf3 to %s: %v: %s", p.name, p.addr, err, Tail(out, 10))
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.Fatalf("%s: iperf3 output: %v: %s", p.name, err, Tail(out, 10))
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("%s: iperf3: %q, %v bit/s", p.name, res.Error, res.End.SumReceived.BitsPerSecond)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6
}

// BenchmarkRequestToPing measures the time from starting `vwire nsc` to
// the first ping reply across its vWire: process start, identity, Request
// through both managers and forwarders, the dataplane's work, and the
// first packet. Between runs the client closes and the links go.
func BenchmarkRequestToPing(b *testing.B) {
	for _, remote := range []bool{false, true} {
		name := "local"
		if remote {
			name = "remote"
		}
		b.Run(name, func(b *testing.B) {
			l, m := newMesh(b, MeshOptions{Nodes: 2, LogLevel: "info"})
			epNode := m.Nodes[0]
			if remote {
				epNode = m.Nodes[1]
			}
			clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
			before := l.MustSnapshot()
			epNode.StartICMPResponder(epNS, EndpointOptions{Name: "nse1", Service: "icmp-bench", CIDR: "172.16.22.0/24"})
			url := "kernel://icmp-bench/nsm-1"

			b.ResetTimer()
			var total time.Duration
			for range b.N {
				start := time.Now()
				c := m.Nodes[0].StartNSC(clientNS, "nsc1", url)
				dst := waitDst(b, c, url)
				pingUntilReply(b, clientNS, dst)
				total += time.Since(start)

				b.StopTimer()
				if err := c.Stop(); err != nil {
					b.Fatalf("%s: %v", c, err)
				}
				l.WaitNoLeak(cleanupTimeout, before)
				b.StartTimer()
			}
			b.StopTimer()
			ms := float64(total) / float64(time.Millisecond) / float64(b.N)
			b.ReportMetric(ms, "ms/ping")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// waitDst waits, polling the client's output closely, for the endpoint's
// address of its connection to url.
func waitDst(b *testing.B, c *NSC, url string) string {
	b.Helper()
	deadline := time.Now().Add(StartTimeout)
	for time.Now().Before(deadline) {
		conns, err := c.Connections()
		if err != nil {
			b.Fatal(err)
		}
		if r, ok := conns[url]; ok && len(r.DstIPs) > 0 {
			return Addr(r.DstIPs[0])
		}
		if c.Exited() {
			b.Fatalf("%s exited before connecting", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%s not connected to %s within %v", c, url, StartTimeout)
	return ""
}

// pingUntilReply pings addr every 50ms until the first reply.
func pingUntilReply(b *testing.B, ns *Netns, addr string) {
	b.Helper()
	var err error
	var out string
	deadline := time.Now().Add(pingTimeout)
	for time.Now().Before(deadline) {
		// Sends until one reply, for up to 5s; fails at once while there is
		// no route yet.
		if out, err = ns.Exec("ping", "-n", "-c", "1", "-i", "0.05", "-w", "5", addr); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%s: no reply from %s within %v: %v: %s", ns.Label, addr, pingTimeout, err, Tail(out, 3))
}
