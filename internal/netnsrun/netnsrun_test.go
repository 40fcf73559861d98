package netnsrun

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// newNS makes a network namespace of the test's own (root only) and
// leaves the calling thread where it was.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func TestInRunsInTheNamespace(t *testing.T) {
	ns := newNS(t)
	var inside []net.Interface
	if err := In(ns, func() (err error) { inside, err = net.Interfaces(); return err }); err != nil {
		t.Fatal(err)
	}
	// A new namespace has its loopback only.
	if len(inside) != 1 || inside[0].Name != "lo" {
		t.Fatalf("interfaces inside: %v", inside)
	}
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	if here.Equal(ns) {
		t.Fatal("the caller was left in the namespace")
	}
	boom := errors.New("boom")
	if err := In(ns, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
}

func TestInPathRefusesMissingPath(t *testing.T) {
	err := InPath("/nonexistent/netns", func() error { t.Fatal("fn ran"); return nil })
	if err == nil {
		t.Fatal("no error for a missing namespace path")
	}
}
