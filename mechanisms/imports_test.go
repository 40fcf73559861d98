package mechanisms

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDataplaneImports keeps the mechanism packages free of any dataplane
// (govpp, netlink, vwire's forwarder) and of the manager, so that every
// component can share them.
func TestNoDataplaneImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool on PATH (it runs `go list -deps`): ", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"go.fd.io/govpp",
		"git.fd.io/govpp",
		"github.com/vishvananda/netlink",
		"github.com/vishvananda/netns",
		"github.com/vwire/vwire/forwarder",
		"github.com/vwire/vwire/manager",
		"github.com/vwire/vwire/binapi",
		"github.com/vwire/vwire/cmd",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("mechanisms/... depends on %s", dep)
			}
		}
	}
}
