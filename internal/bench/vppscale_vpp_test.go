package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunVPPScale runs the vpp-scale group with a few vWires on real VPPs
// (two `vwire node`s on the VPP dataplane and one on the kernel
// dataplane): every row must be measured with a positive figure (the
// group checks in the VPPs that each run's vWires stood and were removed),
// and no namespace of the run may be left. It needs VPP_BIN and root.
func TestRunVPPScale(t *testing.T) {
	vppBin := os.Getenv("VPP_BIN")
	if vppBin == "" {
		t.Skip("VPP_BIN not set: this test runs VPPs (a VPP 25.10 binary, and VPP_PLUGIN_PATH for its plugins)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces and VPPs")
	}
	bin := filepath.Join(t.TempDir(), "vwire")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vwire/vwire/cmd/vwire").CombinedOutput(); err != nil {
		t.Fatalf("build vwire: %v\n%s", err, out)
	}
	cfg := DefaultConfig()
	cfg.Bin, cfg.Version = bin, "test"
	cfg.Only = []string{GroupVPPScale}
	cfg.VPPScaleN, cfg.VPPScaleParallel = 6, 3
	cfg.VPPBin, cfg.VPPPluginPath = vppBin, os.Getenv("VPP_PLUGIN_PATH")
	var progress bytes.Buffer
	cfg.Progress = newProgressTo(&progress, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("vpp-scale: %v\nprogress:\n%s", err, progress.String())
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if len(rep.Rows) != 41 {
		t.Errorf("%d rows, want 41 (21 local, 10 for each remote kind)", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		switch {
		case r.Group != GroupVPPScale:
			t.Errorf("%s: group %q", r.Name, r.Group)
		case r.Skipped != "":
			t.Errorf("%s: skipped: %s", r.Name, r.Skipped)
		case r.Value <= 0:
			t.Errorf("%s = %v, want a positive figure", r.Name, r.Value)
		case r.Baseline != nil && *r.Baseline <= 0:
			t.Errorf("%s: baseline %s = %v, want a positive figure", r.Name, r.BaselineName, *r.Baseline)
		case strings.HasPrefix(r.Name, "request→vWire-up") && r.Samples != cfg.VPPScaleN:
			t.Errorf("%s: %d samples, want %d", r.Name, r.Samples, cfg.VPPScaleN)
		}
	}
	for _, want := range []string{"local memif from 1 clients: node1's VPP API calls per vWire: ", "remote WireGuard: VPP API calls per vWire: node1 "} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if prefix := fmt.Sprintf("%s%d-b-", NamePrefix, os.Getpid()); strings.Contains(string(out), prefix) {
		t.Errorf("namespaces %s* left behind:\n%s", prefix, out)
	}
}
