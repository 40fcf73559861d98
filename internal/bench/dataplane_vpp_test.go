package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vwire/vwire/forwarder/vpp"
)

// TestRunDataplane runs `vwire bench dataplane` on real VPPs with the
// shortest trials and a coarse search: every topology (the chain of three
// CNFs too), built by vwire and by hand, must carry frames, give a search
// result with the source's rate, and leave no namespace or VPP behind. It
// needs VPP_BIN and root.
func TestRunDataplane(t *testing.T) {
	bin := os.Getenv("VPP_BIN")
	if bin == "" {
		t.Skip("VPP_BIN not set: this test runs VPPs (a VPP 25.10 binary, and VPP_PLUGIN_PATH for its plugins)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, a veth and VPPs")
	}
	if err := vpp.SetupGovpp(DataplaneHealthCheck, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultDataplaneConfig()
	cfg.VPPBin, cfg.VPPPluginPath = bin, os.Getenv("VPP_PLUGIN_PATH")
	cfg.FrameSizes = []FrameSize{{Bytes: 64}}
	cfg.TrialDuration, cfg.Precision, cfg.PollSleepUsec, cfg.LatencyPings = 300*time.Millisecond, 0.4, 100, 10
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	rep, err := RunDataplane(ctx, cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.VPPVersion, "vpp v") {
		t.Errorf("VPP version %q", rep.VPPVersion)
	}
	if len(rep.Results) != 2*len(AllTopologies) {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), 2*len(AllTopologies), rep.Results)
	}
	for _, topo := range AllTopologies {
		for _, by := range []string{BuiltByVwire, BuiltByHand} {
			r := rep.find(topo, FrameSize{Bytes: 64}, by)
			if r == nil {
				t.Errorf("%s by %s: no result", topo, by)
				continue
			}
			// What holds whatever the host's load: the path carried frames
			// (RunDataplane's warm-up), the source sent, the search kept
			// NDR ≤ PDR ≤ the source's rate, and latency was measured at
			// every load. Whether frames or pings get through a starved
			// VPP in a given trial is the host's doing, and only logged.
			first := r.Trials[0]
			if r.Error != "" || r.SourceMax <= 0 || first.Rate != 0 || first.Sent == 0 {
				t.Errorf("%s by %s: %+v", topo, by, r)
			}
			if r.NDR > r.PDR || r.PDR > r.SourceMax*1.01 {
				t.Errorf("%s by %s: NDR %.0f, PDR %.0f, source %.0f: want NDR ≤ PDR ≤ source", topo, by, r.NDR, r.PDR, r.SourceMax)
			}
			if len(r.Latency) != len(LatencyLoads) {
				t.Errorf("%s by %s: latency at %d loads, want %d", topo, by, len(r.Latency), len(LatencyLoads))
			}
			for _, l := range r.Latency {
				if l.Sent != cfg.LatencyPings || l.Received > l.Sent || l.P50 > l.P99 || (l.Received > 0) != (l.P50 > 0) {
					t.Errorf("%s by %s: latency %+v", topo, by, l)
				}
				t.Logf("%s by %s: %.0f %% NDR: %d/%d pings answered, p50 %v p99 %v", topo, by, l.Load*100, l.Received, l.Sent, l.P50, l.P99)
			}
			t.Logf("%s by %s: NDR %.3f PDR %.3f source %.3f Mpps in %d trials", topo, by, Mpps(r.NDR), Mpps(r.PDR), Mpps(r.SourceMax), len(r.Trials))
		}
	}
	// The chain: four vWires, eight memifs cross-connected, by either
	// builder.
	// The KERNEL side (af_packet here: no /dev/vhost-net): a VLAN of a
	// trunk by either builder; trunk-cost's hand-made one a plain veth.
	const subif = "af_packet_vlan_subif(mtu 1500, up true, l2xc→memif)"
	trunk := strings.Contains(rep.KernelSide, "trunk")
	for _, o := range rep.Objects {
		switch o.Topology {
		case TopoChain:
			if n := strings.Count(o.Vwire, "memif(mtu 1500, up true, l2xc→memif)"); n != 2*(ChainCNFs+1) || !o.Same {
				t.Errorf("chain objects: %d cross-connected memifs by vwire, want %d, the same by hand: %+v", n, 2*(ChainCNFs+1), o)
			}
		case TopoKernel:
			if trunk && !strings.Contains(o.Vwire, subif) || !o.Same {
				t.Errorf("kernel objects: want %s by vwire, the same by hand: %+v", subif, o)
			}
		case TopoTrunkCost:
			if trunk && !strings.Contains(o.Vwire, subif) || !strings.Contains(o.Hand, "af_packet(mtu 1500, up true, l2xc→memif)") {
				t.Errorf("trunk-cost objects: want %s by vwire, a plain af_packet by hand: %+v", subif, o)
			}
		}
	}
	if rep.KernelSide == "" {
		t.Error("the report does not say what the KERNEL side was")
	}
	var table, svg bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if prefix := fmt.Sprintf("%s%d-b-dp", NamePrefix, os.Getpid()); strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
}
