package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestMixedKernelVPP is a mesh of two dataplanes: node1 on the kernel
// dataplane, node2 on VPP (make test-vpp). vWires go both ways, a client
// on each node asking for an endpoint on the other, over WireGuard (IP
// payload; VPP's WireGuard against the kernel forwarder's, userspace on a
// kernel without WireGuard): ping both ways, the round trip logged, and
// nothing left on either node after the clients close.
//
// Not here because it does not work yet: VXLAN between a kernel node and a
// VPP node. Both IP and ETHERNET payloads were built on both nodes and
// carried no ping in the runs made here (cause not found; WireGuard over
// the same fabric works). Not checked: TCP bulk kernel->VPP over
// WireGuard (iperf3 stalled in the runs made here while ping worked).
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
			kind := wireguardKind(t, kn)
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
				t.Logf("%s over %s: %s", p.name, tc.name, rtt(p.clientNS, Addr(r[p.url].DstIPs[0])))
			}
			for _, p := range paths {
				stopClient(t, p.client)
			}
			l.WaitNoLeak(cleanupTimeout, before)
			m.WaitNoVPPLeak(cleanupTimeout, vppBefore)
		})
	}
}
