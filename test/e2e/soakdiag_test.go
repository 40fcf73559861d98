package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"
)

// What a failed soak keeps to find the cause by: each forwarder's VPP
// metrics (vwire_vpp_*: the API latency per message, errors, connection
// events, health-check misses) and each VPP's view of its interfaces,
// cross-connects and error counters, written to files in the lab's
// directory (kept with VWIRE_E2E_KEEP=1).

// soakVPPShows are the VPP CLI commands whose output a failed soak keeps.
var soakVPPShows = []string{
	"show interface", "show interface address", "show hardware-interfaces brief",
	"show l3xc", "show mode", "show ip fib summary", "show errors", "show memory main-heap",
	"show ip neighbors", "show ip6 neighbors",
}

// keepSoakDiagnostics keeps those when
// the test has failed. It runs while the mesh still runs (registered
// after it, so before its teardown).
func keepSoakDiagnostics(m *Mesh) {
	t := m.Lab.T
	if !t.Failed() {
		return
	}
	for _, n := range m.Nodes {
		if text, err := rawMetrics(n.Netns, forwarderMetrics, "vwire_vpp_"); err != nil {
			t.Logf("%s: forwarder metrics: %v", n.Name, err)
		} else {
			keepFile(t, m.Lab, n.Name+"-forwarder-metrics.txt", text)
		}
		if n.VPP == nil || n.VPP.Exited() {
			continue
		}
		var b strings.Builder
		for _, cmd := range soakVPPShows {
			out, err := vppCLI(n, cmd)
			fmt.Fprintf(&b, "### %s\n%s\n", cmd, out)
			if err != nil {
				fmt.Fprintf(&b, "(error: %v)\n", err)
				break
			}
		}
		keepFile(t, m.Lab, n.Name+"-vpp-show.txt", b.String())
	}
}

func keepFile(t interface{ Logf(string, ...any) }, l *Lab, name, text string) {
	path := filepath.Join(l.Dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Logf("keep %s: %v", name, err)
		return
	}
	t.Logf("kept %s", path)
}

// vppCLI runs one CLI command on node n's VPP.
func vppCLI(n *MeshNode, cmd string) (string, error) {
	conn, err := core.Connect(socketclient.NewVppClient(n.VPPAPISocket()))
	if err != nil {
		return "", fmt.Errorf("%s VPP: connect: %w", n.Name, err)
	}
	defer conn.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := vlib.NewServiceClient(conn).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("%s VPP: %q: %w", n.Name, cmd, err)
	}
	return reply.Reply, nil
}

// rawMetrics returns the lines of a process's /metrics whose names start
// with prefix.
func rawMetrics(ns *Netns, addr, prefix string) (string, error) {
	conn, err := inNetns(ns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		return "", fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String(), sc.Err()
}
