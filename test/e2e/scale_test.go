package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestAdvancedScaleFromZero: no endpoint runs on the client's node; the
// supplier starts one there and the client's Request lands on it. Unused,
// the started endpoint exits; the next client starts one again.
func TestAdvancedScaleFromZero(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 1})
	m.Apply(ExampleYAML(l, "scale-from-zero"))
	n := m.Nodes[0]
	supNS := l.Netns("supplier")
	started := []string{
		l.Bin, "nse", "icmp-responder", "--service", "local-vl3", "--name", "vl3-started",
		"--connect-to", n.ConnectTo(), "--listen", "unix://" + filepath.Join(l.Dir, "vl3-started.sock"),
		"--cidr", "172.16.30.0/24", "--idle-timeout", "3s", "--state-dir", l.Dir,
	}
	args := append([]string{"--name", "supplier", "--service", "local-vl3", "--labels", "supplier=true",
		"--connect-to", n.ConnectTo(), "--listen", "unix://" + filepath.Join(l.Dir, "supplier.sock"), "--"}, started...)
	// The supplier's own flags come before "--"; common flags go after the command's.
	sup := l.Start(supNS, "supplier", append([]string{"nse", "supplier", "--state-dir", l.Dir, "--log-level", m.Opts.LogLevel}, args...)...)
	n.Manager.WaitLogLine(StartTimeout, "endpoint registered", "name=supplier")

	const url = "kernel://local-vl3/nsm-1"
	for round := 1; round <= 2; round++ {
		ns := l.Netns("client" + string(rune('0'+round)))
		c := n.StartNSC(ns, "client", url)
		v := connect(t, l, c, ns, supNS, url)
		if v.Report.Endpoint != "vl3-started" {
			t.Fatalf("round %d: landed on %q, want the endpoint the supplier started", round, v.Report.Endpoint)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		// Unused, it exits (and unregisters itself); the next round's
		// client makes the supplier start it again.
		sup.WaitLogLine(30*time.Second, "started endpoint exited")
	}
}

// TestAdvancedVL3: two clients of one vL3 endpoint reach each other.
func TestAdvancedVL3(t *testing.T) {
	l, m := newMesh(t, MeshOptions{Nodes: 2})
	vl3NS := l.Netns("vl3")
	n1 := m.Nodes[0]
	l.Start(vl3NS, "vl3", m.common("nse vl3", "--name", "vl3", "--service", "vl3", "--prefix", "172.31.7.0/24",
		"--connect-to", n1.ConnectTo(), "--listen", "unix://"+filepath.Join(l.Dir, "vl3.sock"))...)
	n1.Manager.WaitLogLine(StartTimeout, "endpoint registered", "name=vl3")
	const url = "kernel://vl3/nsm-1"
	var vs []vwire
	for _, n := range m.Nodes { // one local client, one remote
		ns := l.Netns("c" + n.Name)
		c := n.StartNSC(ns, "c"+n.Name, url)
		vs = append(vs, connect(t, l, c, ns, vl3NS, url))
	}
	a, b := vs[0], vs[1]
	a.Client.WaitPing(pingTimeout, Addr(b.Report.SrcIPs[0]))
	b.Client.WaitPing(pingTimeout, Addr(a.Report.SrcIPs[0]))
}
