// Package layering checks the package boundaries the design names: the
// registry and the manager never depend on a dataplane (VPP, netlink), and
// mechanisms stay free of dataplane imports so every side can share them.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

func TestNoDataplaneImports(t *testing.T) {
	forbidden := []string{"go.fd.io/govpp", "github.com/vwire/vwire/forwarder/vpp", "github.com/vwire/vwire/forwarder/kernel", "github.com/vishvananda/netlink"}
	for _, pkg := range []string{"github.com/vwire/vwire/registry/...", "github.com/vwire/vwire/manager/...", "github.com/vwire/vwire/mechanisms/..."} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

// TestNSMSdkOnlyInTests: NSM's sdk is there to test compatibility with
// NSM's workloads; vwire's own code implements the protocol itself.
func TestNSMSdkOnlyInTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/vwire/vwire/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/networkservicemesh/sdk") {
			t.Errorf("a non-test package depends on %s", dep)
		}
	}
}
