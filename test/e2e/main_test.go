package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// suite is what TestMain found out, read-only once the tests run.
var suite struct {
	skip string // why tests that need namespaces skip; empty when they can run
	bin  string // the vwire binary
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suite.skip = prerequisites()
	if suite.skip != "" {
		return m.Run()
	}
	if removed, err := RemoveStaleNamespaces(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	} else if len(removed) > 0 {
		fmt.Fprintln(os.Stderr, "e2e: removed namespaces of earlier runs:", strings.Join(removed, " "))
	}
	if bin := os.Getenv("VWIRE_E2E_BIN"); bin != "" {
		suite.bin = bin
	} else {
		dir, err := os.MkdirTemp("", "vwire-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		suite.bin = filepath.Join(dir, "vwire")
		build := exec.Command("go", "build", "-o", suite.bin, "github.com/vwire/vwire/cmd/vwire")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build vwire: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// prerequisites says why the tests cannot run here, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "e2e tests make network namespaces: run them as root"
	}
	for _, prog := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Sprintf("e2e tests need %s (iproute2, iputils-ping): %v", prog, err)
		}
	}
	probe := fmt.Sprintf("%s%d-probe", NamePrefix, os.Getpid())
	if out, err := run("ip", "netns", "add", probe); err != nil {
		return fmt.Sprintf("cannot make a network namespace (ip netns add): %v: %s", err, out)
	}
	if out, err := run("ip", "netns", "del", probe); err != nil {
		return fmt.Sprintf("cannot delete a network namespace (ip netns del): %v: %s", err, out)
	}
	return ""
}

// newLab skips the test when namespaces cannot be made here, and returns a
// Lab for it.
func newLab(t testing.TB) *Lab {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
	return NewLab(t, suite.bin)
}

// newMesh skips the test when namespaces cannot be made here, and starts a
// mesh.
func newMesh(t testing.TB, opts MeshOptions) (*Lab, *Mesh) {
	t.Helper()
	l := newLab(t)
	return l, NewMesh(l, opts)
}
