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
// userspace on a kernel without WireGuard): ping both ways, an iperf3
// figure each way (logged), and nothing left on either node after the
// clients close.
func TestMixedKernelVPP(t *testing.T) {
	dp := LookupVPP()
	if dp.Skip != "" {
		t.Skip(dp.Skip)
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
			// The kernel sends GSO super-packets (UDP tunnels' included) down
			// the fabric's veths whole; VPP's af_packet on the other end
			// takes them as one truncated frame. A NIC would have cut them:
			// make node1's fabric device cut them.
			kn.Netns.MustIP("link", "set", NodeDev, "gso_max_segs", "1")
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
			if _, err := exec.LookPath("iperf3"); err == nil {
				for _, p := range paths {
					r, _ := p.client.Connections()
					dst := Addr(r[p.url].DstIPs[0])
					srv := l.StartProgram(p.epNS, "iperf3-"+strings.ReplaceAll(p.name, " ", "-"), "iperf3", "--server", "--forceflush", "--one-off")
					Eventually(t, StartTimeout, srv.String()+" listens", func() error {
						if strings.Contains(srv.Output(), "Server listening") {
							return nil
						}
						if srv.Exited() {
							return Permanent(ErrExited)
						}
						return fmt.Errorf("not yet")
					})
					t.Logf("%s over %s: %s; iperf3 %.0f Mbit/s", p.name, tc.name, rtt(p.clientNS, dst),
						iperf3Mbps(t, throughputPath{name: p.name, from: p.clientNS, to: p.epNS, addr: dst}))
				}
			}
			for _, p := range paths {
				stopClient(t, p.client)
			}
			l.WaitNoLeak(cleanupTimeout, before)
			m.WaitNoVPPLeak(cleanupTimeout, vppBefore)
		})
	}
}
