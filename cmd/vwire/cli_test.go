package main

// These tests run the real vwire binary as separate processes: a registry on
// loopback with mTLS, and the CLI commands against it, as a user would.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var vwireBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vwire-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vwireBin = filepath.Join(dir, "vwire")
	out, err := exec.Command("go", "build", "-o", vwireBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build vwire: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cli runs vwire with args against the registry at addr and returns stdout,
// stderr and the exit code.
type cli struct {
	t     *testing.T
	state string
	addr  string
}

func (c cli) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args, "--state-dir", c.state)
	if c.addr != "" {
		args = append(args, "--registry", c.addr)
	}
	cmd := exec.CommandContext(ctx, vwireBin, args...)
	cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("vwire %v: exit %d: %s", args, code, errs)
	}
	return out
}

// startRegistry runs `vwire registry` and waits until it answers.
func startRegistry(t *testing.T, state string, extra ...string) cli {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"registry", "--state-dir", state, "--listen", addr, "--log-level", "debug"}, extra...)
	cmd := exec.Command(vwireBin, args...)
	cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("registry did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("registry log:\n%s", logs.String())
		}
	})
	c := cli{t: t, state: state, addr: addr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, code := c.run("", "get", "ns"); code == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not come up:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var seedDomains = []string{"--domain", "finance.example.com", "--domain", "sales.example.com", "--domain", "marketing.example.com"}

func readSeed(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../registry/manifest/testdata/seed-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestApplySeedExamples(t *testing.T) {
	c := startRegistry(t, t.TempDir(), seedDomains...)
	seed := readSeed(t)

	// The whole file: the AS WRITTEN document is refused, nothing applied.
	_, errs, code := c.run(seed, "apply", "-f", "-")
	if code == 0 {
		t.Fatal("apply of the malformed seed succeeded")
	}
	errLine := strings.TrimSpace(errs)
	if strings.Count(errLine, "\n") != 0 || !strings.Contains(errLine, "document 3") || !strings.Contains(errLine, "spec.matches[2].source_selector.routes") {
		t.Fatalf("error is not one line naming document 3 and the field path: %q", errs)
	}
	if out := c.ok("get", "ns"); !strings.Contains(out, "No network services found") {
		t.Fatalf("something was applied from a refused file:\n%s", out)
	}

	// The valid examples.
	valid, err := os.ReadFile("../../deployments/examples/architecture/networkservices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "valid.yaml")
	os.WriteFile(file, valid, 0o644)
	out := c.ok("apply", "-f", file)
	for _, want := range []string{"networkservice/simple-network-service created", "networkservice/service-mesh created", "networkservice/secure-vl3 created", "networkservice/local-vl3 created", "networkservice/local-vl3 configured"} {
		if !strings.Contains(out, want) {
			t.Fatalf("apply output lacks %q:\n%s", want, out)
		}
	}
	table := c.ok("get", "ns")
	for _, want := range []string{"NAME", "local-vl3", "secure-vl3", "service-mesh", "simple-network-service"} {
		if !strings.Contains(table, want) {
			t.Fatalf("get ns lacks %q:\n%s", want, table)
		}
	}
	wide := c.ok("get", "ns", "local-vl3", "-o", "wide")
	if !strings.Contains(wide, "{}->{nodeName={{  .nodeName }}} {}->{supplier=true}") {
		t.Fatalf("wide output:\n%s", wide)
	}

	// Round trip: what get gives back applies again and changes nothing.
	y1 := c.ok("get", "ns", "-o", "yaml")
	back := filepath.Join(t.TempDir(), "back.yaml")
	os.WriteFile(back, []byte(y1), 0o644)
	c.ok("apply", "-f", back)
	if y2 := c.ok("get", "ns", "-o", "yaml"); y2 != y1 {
		t.Fatalf("round trip changed the registry:\n%s\n---- vs ----\n%s", y1, y2)
	}
	for _, want := range []string{"supplier: \"true\"", "nodeName: '{{  .nodeName }}'", "provides: ips", "version: v1.1"} {
		if !strings.Contains(y1, want) {
			t.Fatalf("yaml lacks %q:\n%s", want, y1)
		}
	}
	js := c.ok("get", "ns", "service-mesh", "-o", "json")
	if !strings.Contains(js, `"envoy-proxy"`) {
		t.Fatalf("json:\n%s", js)
	}

	c.ok("delete", "ns", "simple-network-service")
	if _, errs, code := c.run("", "get", "ns", "simple-network-service"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("deleted service still there: %d %s", code, errs)
	}
	if _, errs, code := c.run("", "delete", "ns", "simple-network-service"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("second delete: %d %s", code, errs)
	}
}

// TestApplyWarnsUnreachableMatch: the architecture document's scale from
// zero as written (no fallthrough on its first, empty, match) is valid NSM
// and is applied, but apply and get -o wide say its supplier match is never
// reached and how to fix it.
func TestApplyWarnsUnreachableMatch(t *testing.T) {
	c := startRegistry(t, t.TempDir(), seedDomains...)
	arch, err := os.ReadFile("../../deployments/examples/architecture/networkservices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "networkservices.yaml")
	if err := os.WriteFile(file, arch, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := c.run("", "apply", "-f", file)
	if code != 0 {
		t.Fatalf("apply exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "networkservice/local-vl3 configured") {
		t.Fatalf("apply output:\n%s", out)
	}
	warnings := strings.Split(strings.TrimSpace(errs), "\n")
	if len(warnings) != 1 {
		t.Fatalf("want one warning line, got %d:\n%s", len(warnings), errs)
	}
	for _, want := range []string{
		"vwire: warning: " + file + ": document 5 (line ",
		"networkservice/local-vl3@marketing.example.com: ",
		"spec.matches[1] (source_selector {}) is unreachable",
		"spec.matches[0] (source_selector {}) has no fallthrough",
		`set "fallthrough: true" on spec.matches[0]`,
	} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("warning lacks %q:\n%s", want, warnings[0])
		}
	}

	wide := c.ok("get", "ns", "-o", "wide")
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(wide), "\n") {
		name, _, _ := strings.Cut(l, " ")
		lines[name] = l
	}
	if !strings.HasSuffix(lines["NAME"], "NOTES") {
		t.Fatalf("no NOTES column:\n%s", wide)
	}
	const note = `matches[1] unreachable: set "fallthrough: true" on matches[0]`
	tests := []struct {
		name string
		want string // the end of its row
	}{
		{name: "local-vl3", want: note},
		{name: "secure-vl3", want: " -"},
		{name: "service-mesh", want: " -"},
		{name: "simple-network-service", want: " -"},
	}
	for _, tt := range tests {
		if !strings.HasSuffix(lines[tt.name], tt.want) {
			t.Errorf("row of %s does not end in %q:\n%s", tt.name, tt.want, wide)
		}
	}
	if narrow := c.ok("get", "ns"); strings.Contains(narrow, "unreachable") {
		t.Errorf("plain get ns shows the note:\n%s", narrow)
	}

	// The deployable example, with fallthrough: no warning, no note.
	fixed := filepath.Join("..", "..", "deployments", "examples", "scale-from-zero", "scale-from-zero.yaml")
	if _, errs, code := c.run("", "apply", "-f", fixed); code != 0 || errs != "" {
		t.Fatalf("apply %s: exit %d, stderr %q", fixed, code, errs)
	}
	if wide := c.ok("get", "ns", "local-vl3", "-o", "wide"); strings.Contains(wide, "unreachable") || !strings.Contains(wide, "(fallthrough)") {
		t.Fatalf("after the fix:\n%s", wide)
	}
}

func TestApplyEndpointsAndWatch(t *testing.T) {
	c := startRegistry(t, t.TempDir(), "--domain", "example.com")
	watch := exec.Command(vwireBin, "get", "nse", "--watch", "--state-dir", c.state, "--registry", c.addr)
	watch.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=")
	wout := &syncBuffer{}
	watch.Stdout, watch.Stderr = wout, wout
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		watch.Process.Kill()
		watch.Wait()
	}()

	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	doc := fmt.Sprintf(`
apiVersion: networkservicemesh.io/v1
kind: NetworkService
metadata: {name: icmp@example.com}
---
apiVersion: networkservicemesh.io/v1
kind: NetworkServiceEndpoint
metadata:
  name: icmp-responder-1
spec:
  network_service_names: [icmp@example.com]
  network_service_labels:
    icmp@example.com:
      labels: {nodeName: node1, supplier: true}
  url: tcp://127.0.0.1:5003
  expiration_time: %q
`, exp)
	if out, errs, code := c.run(doc, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: %s %s", out, errs)
	}
	wide := c.ok("get", "nse", "-o", "wide")
	if !strings.Contains(wide, "icmp-responder-1") || !strings.Contains(wide, "icmp:{nodeName=node1,supplier=true}") {
		t.Fatalf("get nse -o wide:\n%s", wide)
	}
	// The watch prints its header before its stream is open: it has
	// subscribed once it shows the endpoint (from the registry's initial
	// matches or as an event), and only then may the deletion come.
	waitOutput := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(wout.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("watch output has no %q:\n%s", what, wout.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOutput("ADDED")
	c.ok("delete", "nse", "icmp-responder-1")
	waitOutput("DELETED")
}

func TestCLIErrors(t *testing.T) {
	c := startRegistry(t, t.TempDir())
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{name: "unknown resource", args: []string{"get", "pods"}, want: `unknown resource "pods"`},
		{name: "bad output", args: []string{"get", "ns", "-o", "toml"}, want: `-o "toml"`},
		{name: "apply without file", args: []string{"apply"}, want: "-f FILE"},
		{name: "apply missing file", args: []string{"apply", "-f", "/nonexistent.yaml"}, want: "no such file"},
		{name: "apply unknown field", stdin: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: a}\nspec: {paylod: IP}\n", args: []string{"apply", "-f", "-"}, want: "spec.paylod"},
		{name: "apply foreign domain", stdin: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: a@nowhere.org}\n", args: []string{"apply", "-f", "-"}, want: "nowhere.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c
			c.t = t
			_, errs, code := c.run(tt.stdin, tt.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(errs, tt.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("stderr %q: want one line containing %q", errs, tt.want)
			}
		})
	}
	dead := cli{t: t, state: c.state, addr: freeAddr(t)}
	if _, errs, code := dead.run("", "get", "ns"); code == 0 || !strings.Contains(errs, "registry unavailable") {
		t.Fatalf("unreachable registry: %d %q", code, errs)
	}
	// Without a CA in the state directory the CLI says how to get an identity.
	empty := cli{t: t, state: t.TempDir(), addr: c.addr}
	if _, errs, code := empty.run("", "get", "ns"); code == 0 || !strings.Contains(errs, "--state-dir") {
		t.Fatalf("no identity: %d %q", code, errs)
	}
}

// TestForeignIdentityRefused: a CLI whose identity comes from another CA
// cannot talk to the registry.
func TestForeignIdentityRefused(t *testing.T) {
	c := startRegistry(t, t.TempDir())
	other := cli{t: t, state: t.TempDir(), addr: c.addr}
	cli{t: t, state: other.state}.ok("identity", "issue", "--spiffe-id", "spiffe://vwire.local/intruder", "--out", filepath.Join(other.state, "svid"))
	_, errs, code := other.run("", "get", "ns", "--svid-dir", filepath.Join(other.state, "svid"))
	if code == 0 {
		t.Fatal("a foreign CA's identity was accepted")
	}
	if !strings.Contains(errs, "registry unavailable") {
		t.Fatalf("stderr %q", errs)
	}
	// An SVID issued by the registry's own CA works.
	cli{t: t, state: c.state}.ok("identity", "issue", "--spiffe-id", "spiffe://vwire.local/ops/alice", "--out", filepath.Join(c.state, "alice"))
	c.ok("get", "ns", "--svid-dir", filepath.Join(c.state, "alice"))
}

// syncBuffer is a bytes.Buffer safe to read while a child process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestMetrics: a running registry serves /metrics, /healthz and /readyz,
// and its series move with what it holds.
func TestMetrics(t *testing.T) {
	maddr := freeAddr(t)
	c := startRegistry(t, t.TempDir(), append([]string{"--metrics-listen", maddr}, seedDomains...)...)
	scrape := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + maddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		return string(body)
	}
	if got := scrape("/healthz"); got != "ok\n" {
		t.Fatalf("healthz %q", got)
	}
	scrape("/readyz")
	if m := scrape("/metrics"); !strings.Contains(m, `vwire_registry_entries{kind="ns"} 0`) {
		t.Fatalf("before apply:\n%s", grepLines(m, "vwire_"))
	}
	file := filepath.Join(t.TempDir(), "valid.yaml")
	valid, _ := os.ReadFile("../../deployments/examples/architecture/networkservices.yaml")
	os.WriteFile(file, valid, 0o644)
	c.ok("apply", "-f", file)
	m := scrape("/metrics")
	if !strings.Contains(m, `vwire_registry_entries{kind="ns"} 4`) || !strings.Contains(m, "go_goroutines") {
		t.Fatalf("after apply:\n%s", grepLines(m, "vwire_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestForwarderFlagErrors: a bad health-check flag stops `vwire forwarder`
// and `vwire node` at once, with one line naming the flag.
func TestForwarderFlagErrors(t *testing.T) {
	c := cli{t: t, state: t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "zero interval", args: []string{"forwarder", "--vpp-health-interval", "0s"}, want: "--vpp-health-interval 0s: want more than 0"},
		{name: "negative timeout", args: []string{"forwarder", "--vpp-health-timeout", "-1s"}, want: "--vpp-health-timeout -1s: want more than 0"},
		{name: "zero threshold", args: []string{"forwarder", "--vpp-health-threshold", "0"}, want: "--vpp-health-threshold 0: want 1 or more"},
		{name: "not a duration", args: []string{"forwarder", "--vpp-health-timeout", "soon"}, want: `"soon"`},
		{name: "node", args: []string{"node", "--vpp-health-threshold", "-3"}, want: "--vpp-health-threshold -3: want 1 or more"},
		{name: "negative max in flight", args: []string{"forwarder", "--vpp-max-in-flight", "-1"}, want: "--vpp-max-in-flight -1: want 0 (no bound) or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			c.t = t
			_, errs, code := c.run("", tc.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("stderr %q: want one line containing %q", errs, tc.want)
			}
		})
	}
}
