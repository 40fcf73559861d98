package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestMixedKernelVPP is a mesh of two dataplanes: node1 on the kernel
// dataplane, node2 on VPP (make test-vpp). vWires go both ways, a client
// on each node asking for an endpoint on the other, over VXLAN (IP and
// ETHERNET payloads; the kernel forwarder's WireGuard off) and over
// WireGuard (IP payload; VPP's WireGuard against the kernel forwarder's,
// userspace on a kernel without WireGuard): ping both ways, the round trip
// logged, 64 MB of TCP each way along each vWire (iperf3; a stall fails
// the test, the rate is logged), and nothing left on either node after the
// clients close.
func TestMixedKernelVPP(t *testing.T) {
	dp := LookupVPP()
	if dp.Skip != "" {
		t.Skip(dp.Skip)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatal("iperf3 not found: the test measures TCP across each vWire (.ci/run installs it)")
	}
	for i, tc := range []struct {
		name      string
		wireguard string // the kernel forwarder's --wireguard
		payloads  []string
	}{
		{name: "vxlan", wireguard: "off", payloads: []string{"IP", "ETHERNET"}},
		{name: "wireguard", wireguard: "auto", payloads: []string{"IP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, m := newMesh(t, MeshOptions{Nodes: 2, VPP: dp, VPPNodes: []int{1}, WireGuard: tc.wireguard})
			t.Cleanup(m.ReportVPPHang)
			kn, vn := m.Nodes[0], m.Nodes[1]
			if kn.OnVPP() || !vn.OnVPP() {
				t.Fatal("want node1 on the kernel dataplane and node2 on VPP")
			}
			before, vppBefore := l.MustSnapshot(), m.MustVPPSnapshot()
			kind := "vxlan"
			if tc.wireguard != "off" {
				kind = wireguardKind(t, kn)
			}
			type path struct {
				name       string
				clientNode *MeshNode
				client     *NSC
				clientNS   *Netns
				epNS       *Netns
				url        string
			}
			var paths []path
			for j, payload := range tc.payloads {
				for k, dir := range []struct {
					name       string
					clientNode *MeshNode
					epNode     *MeshNode
				}{{"kernel->vpp", kn, vn}, {"vpp->kernel", vn, kn}} {
					id := fmt.Sprintf("%d%d", j, k)
					svc := fmt.Sprintf("mixed-%s-%s", strings.ToLower(payload), id)
					clientNS, epNS := l.Netns("nsc"+id), l.Netns("nse"+id)
					dir.epNode.StartICMPResponder(epNS, EndpointOptions{Name: "nse" + id, Service: svc, Payload: payload,
						CIDR: fmt.Sprintf("172.16.%d.0/24", 40+10*i+2*j+k)})
					url := "kernel://" + svc + "/nsm-1"
					c := dir.clientNode.StartNSC(clientNS, "nsc"+id, url)
					connect(t, l, c, clientNS, epNS, url)
					paths = append(paths, path{name: dir.name + " " + payload, clientNode: dir.clientNode, client: c, clientNS: clientNS, epNS: epNS, url: url})
				}
			}
			links, err := kn.Netns.VwireLinks()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, lk := range links {
				if lk.Kind() == kind {
					n++
				}
			}
			if n != len(paths) {
				t.Errorf("%s: %d %s links for %d remote vWires: %v", kn.Name, n, kind, len(paths), links)
			}
			for _, p := range paths {
				r, _ := p.client.Connections()
				dst := Addr(r[p.url].DstIPs[0])
				t.Logf("%s over %s: %s", p.name, tc.name, rtt(p.clientNS, dst))
				// TCP both ways along the vWire: client to endpoint, then
				// the endpoint sending (iperf3 --reverse).
				srv := startIperf3Server(t, l, p.epNS, "iperf3")
				for _, reverse := range []bool{false, true} {
					from := "client->endpoint"
					if reverse {
						from = "endpoint->client"
					}
					mbps := iperf3Mbps(t, throughputPath{name: p.name + " " + from, from: p.clientNS, to: p.epNS, addr: dst, reverse: reverse, bytes: "64M"})
					t.Logf("%s over %s: iperf3 %s %.0f Mbit/s", p.name, tc.name, from, mbps)
				}
				srv.Kill()
			}
			for _, p := range paths {
				stopClient(t, p.client)
			}
			l.WaitNoLeak(cleanupTimeout, before)
			m.WaitNoVPPLeak(cleanupTimeout, vppBefore)
		})
	}
}
