package e2e

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests check the harness itself; they need no vwire command beyond
// the binary's existence.

func TestFabricConnectsNodes(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		l := newLab(t)
		f := l.Fabric(1)
		n1, n2 := f.AddNode("node1"), f.AddNode("node2")
		w := l.Netns("nsc1")
		for _, ns := range l.Namespaces() {
			names = append(names, ns.Name)
		}

		if want := netip.MustParseAddr("10.111.1.11"); n1.IP != want {
			t.Errorf("node1 address %s, want %s", n1.IP, want)
		}
		addrs, err := n2.Addrs(NodeDev)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(addrs, "10.111.1.12/24") {
			t.Errorf("node2 %s addresses %v, want 10.111.1.12/24", NodeDev, addrs)
		}
		if out := n1.MustIP("route", "show", "default"); !strings.Contains(out, "via 10.111.1.1") {
			t.Errorf("node1 default route %q, want via 10.111.1.1", out)
		}
		n1.WaitPing(10*time.Second, n2.IP.String())
		n2.WaitPing(10*time.Second, f.Gateway.String())

		links, err := w.Links()
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 1 || links[0].Name != "lo" || !links[0].Up() {
			t.Errorf("workload namespace links %v, want only lo, up", links)
		}
		// The workload has no route anywhere: the fabric is not reachable.
		if err := w.PingOnce(n1.IP.String()); err == nil {
			t.Errorf("workload namespace reaches node1 without a vWire")
		}
	})
	out, err := run("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(out, n) {
			t.Errorf("namespace %s still exists after its test", n)
		}
	}
}

func TestVethPairBaseline(t *testing.T) {
	l := newLab(t)
	a, b := l.Netns("a"), l.Netns("b")
	l.VethPair(a, b, "v0", netip.MustParsePrefix("10.112.0.1/30"), netip.MustParsePrefix("10.112.0.2/30"))
	a.WaitPing(10*time.Second, "10.112.0.2")
}

func TestProcLifecycle(t *testing.T) {
	l := newLab(t)
	ns := l.Netns("w")

	echo := l.StartProgram(ns, "echo", "sh", "-c", "echo out; echo line one >&2; echo line two >&2")
	if err, ok := echo.Wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("echo: ended %v, err %v", ok, err)
	}
	if got := echo.Output(); got != "out\n" {
		t.Errorf("stdout %q, want %q", got, "out\n")
	}
	if line := echo.WaitLogLine(time.Second, "line", "two"); line != "line two" {
		t.Errorf("log line %q, want %q", line, "line two")
	}
	if Tail(echo.Log(), 1) != "line two" {
		t.Errorf("tail %q", Tail(echo.Log(), 1))
	}

	// A process runs inside its namespace.
	ip := l.StartProgram(ns, "links", "ip", "-o", "link")
	ip.Wait(10 * time.Second)
	if out := ip.Output(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
		t.Errorf("links seen by a process in the namespace: %q, want lo only", out)
	}

	sleep := l.StartProgram(ns, "sleep", "sleep", "60")
	if sleep.Exited() {
		t.Fatal("sleep exited at once")
	}
	if err := sleep.Stop(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("stopped sleep: %v, want terminated", err)
	}
	again := l.StartProgram(ns, "sleep", "sleep", "60")
	if again.Stderr == sleep.Stderr {
		t.Errorf("two processes share the log %s", again.Stderr)
	}
	again.Kill()
	if err, _ := again.Wait(0); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("killed sleep: %v, want killed", err)
	}

	// Waiting on the log of a process that ended fails at once.
	err := Poll(time.Minute, func() error {
		if _, ok := echo.FindLogLine("never"); ok {
			return nil
		}
		if echo.Exited() {
			return Permanent(ErrExited)
		}
		return errors.New("not yet")
	})
	if !errors.Is(err, ErrExited) {
		t.Errorf("Poll: %v, want ErrExited", err)
	}
}

func TestLeakCheckSeesVwireLinks(t *testing.T) {
	l := newLab(t)
	f := l.Fabric(1)
	n := f.AddNode("node1")
	w := l.Netns("nsc1")
	before := l.MustSnapshot()
	if got := before["fabric1"]; len(got) != 1 || !strings.HasPrefix(got[0], "p1 (veth)") {
		t.Errorf("fabric links %v, want the node's port", got)
	}

	n.MustIP("link", "add", "name", "vw0", "type", "veth", "peer", "name", "nsm0", "netns", w.Name)
	n.MustIP("link", "set", "vw0", "alias", "vwire/test/conn-1")
	n.MustIP("link", "add", "name", "vx1", "type", "vxlan", "id", "7", "dstport", "4789", "local", n.IP.String())

	diff := before.Diff(l.MustSnapshot())
	want := []string{
		"+ node1: vw0 (veth) alias vwire/test/conn-1",
		"+ node1: vx1 (vxlan)",
		"+ nsc1: nsm0 (veth)",
	}
	if !slices.Equal(diff, want) {
		t.Errorf("diff\n%s\nwant\n%s", strings.Join(diff, "\n"), strings.Join(want, "\n"))
	}
	if c, err := CountVwireLinks(n.Netns, w); err != nil || c != 1 {
		t.Errorf("CountVwireLinks = %d, %v; want 1", c, err)
	}

	n.MustIP("link", "del", "vw0")
	n.MustIP("link", "del", "vx1")
	l.WaitNoLeak(5*time.Second, before)
}
