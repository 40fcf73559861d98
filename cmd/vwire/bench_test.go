package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown measurement", args: []string{"--only", "latency,speed"}, want: `unknown measurement "speed"`},
		{name: "zero count", args: []string{"--sequential", "0"}, want: "at least 1"},
		{name: "zero remote requests", args: []string{"--only", "remote", "--remote-requests", "0"}, want: "at least 1"},
		{name: "remote requests not a number", args: []string{"--remote-requests", "few"}, want: `invalid argument "few" for "--remote-requests"`},
		{name: "find size not a number", args: []string{"--find-sizes", "10k"}, want: `--find-sizes "10k"`},
		{name: "find size too small", args: []string{"--find-sizes", "5"}, want: "find size 5"},
		{name: "zero vpp-scale vWires", args: []string{"--only", "vpp-scale", "--vpp-scale-n", "0"}, want: "at least 1"},
		{name: "too many vpp-scale vWires", args: []string{"--only", "vpp-scale", "--vpp-scale-n", "5000"}, want: "vpp-scale n 5000: at most 1000"},
		{name: "zero vpp-scale clients", args: []string{"--only", "vpp-scale", "--vpp-scale-parallel", "0"}, want: "at least 1"},
		{name: "vpp-scale clients not a number", args: []string{"--vpp-scale-parallel", "many"}, want: `invalid argument "many" for "--vpp-scale-parallel"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(vwireBin, append([]string{"bench"}, tc.args...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("vwire bench %v: %v: %s; want a failure saying %q", tc.args, err, out, tc.want)
			}
		})
	}
}

func TestBenchDataplaneRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{name: "unknown topology", args: []string{"--topologies", "memif,gre"}, want: `unknown topology "gre"`},
		{name: "bad frame size", args: []string{"--frame-sizes", "64,jumbo"}, want: `--frame-sizes: frame size "jumbo"`},
		{name: "frame too small", args: []string{"--quick", "--frame-sizes", "32"}, want: "frame size 32"},
		{name: "rx mode", args: []string{"--rx-mode", "adaptive"}, want: `rx mode "adaptive"`},
		{name: "two worker flags", args: []string{"--workers", "2", "--corelist-workers", "2-3"}, want: "not both"},
		{name: "precision", args: []string{"--precision", "0"}, want: "precision 0"},
		{name: "repetitions", args: []string{"--repetitions", "0"}, want: "repetitions 0"},
		{name: "kernel side", args: []string{"--kernel", "vhost"}, want: `kernel "vhost"`},
		{name: "no VPP", args: []string{"--quick"}, env: "VPP_BIN=", want: "VPP_BIN is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(vwireBin, append([]string{"bench", "dataplane"}, tc.args...)...)
			cmd.Env = append(os.Environ(), "VPP_BIN="+os.Getenv("VPP_BIN"))
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("vwire bench dataplane %v: %v: %s; want a failure saying %q", tc.args, err, out, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n > 0 {
				t.Errorf("%d lines of output, want one:\n%s", n+1, out)
			}
		})
	}
}

// TestBenchEndToEnd runs every measurement of `vwire bench` with tiny
// counts (root: it makes network namespaces) and checks the table, the
// JSON and that nothing is left behind.
func TestBenchEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("vwire bench makes network namespaces: run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("vwire bench needs ip (iproute2): ", err)
	}
	jsonFile := filepath.Join(t.TempDir(), "bench.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vwireBin, "bench",
		"--sequential", "2", "--parallel", "2", "--rounds", "1", "--heals", "1",
		"--find-sizes", "50", "--find-queries", "2", "--duration", "1s", "--remote-requests", "2", "--json", jsonFile)
	// The memif measurement and the remote group's VPP rows need VPP:
	// leave them out, they say why.
	cmd.Env = append(os.Environ(), "VPP_BIN=", "SPIFFE_ENDPOINT_SOCKET=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Fatalf("vwire bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if leftover := benchNamespaces(t, cmd.Process.Pid); len(leftover) > 0 {
		t.Errorf("vwire bench left namespaces behind: %v", leftover)
	}
	table := stdout.String()
	for _, want := range []string{"latency: request→vWire-up, local, sequential, p50", "heal: endpoint killed", "find: Find 1 service among 50 endpoints, p50", "memif: ", "VPP_BIN is not set",
		"remote: request→vWire-up, remote, vxlan, kernel, p50", "remote: TCP across a remote vWire, wireguard, VPP (iperf3)", "not available: VPP_BIN not set",
		"vpp-scale: (measurement)", "vwire "} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.Contains(stderr.String(), "bench: latency") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}

	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Machine struct {
			CPUs int `json:"cpus"`
		} `json:"machine"`
		Rows []struct {
			Group   string   `json:"group"`
			Name    string   `json:"name"`
			Value   float64  `json:"value"`
			Ratio   *float64 `json:"ratio"`
			Skipped string   `json:"skipped"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, b)
	}
	if rep.Machine.CPUs < 1 {
		t.Errorf("machine: %d CPUs", rep.Machine.CPUs)
	}
	measured := map[string]int{}
	for _, r := range rep.Rows {
		switch {
		case strings.HasPrefix(r.Skipped, "failed"):
			t.Errorf("%s: %s", r.Group, r.Skipped)
		case r.Skipped != "":
		case r.Value <= 0:
			t.Errorf("%s: %s = %v, want a positive figure", r.Group, r.Name, r.Value)
		default:
			measured[r.Group]++
		}
	}
	for _, g := range []string{"latency", "heal", "find"} {
		if measured[g] == 0 {
			t.Errorf("no figure for %s in %s", g, b)
		}
	}
	if _, err := exec.LookPath("iperf3"); err == nil && measured["throughput"] == 0 {
		t.Errorf("iperf3 is installed but no throughput figure in %s", b)
	}
	if _, err := exec.LookPath("iperf3"); err == nil && measured["remote"] < 6 {
		t.Errorf("iperf3 is installed but %d remote figures (want kernel VXLAN's and userspace WireGuard's at least) in %s", measured["remote"], b)
	}
}

// benchNamespaces lists the network namespaces a `vwire bench` of pid made
// that still exist.
func benchNamespaces(t *testing.T, pid int) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, fmt.Sprintf("vw-%d-b-", pid)) {
			left = append(left, name)
		}
	}
	return left
}
