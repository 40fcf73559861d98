// Package spire runs vwire with every component's identity from a real SPIRE:
// spire-server and spire-agent v1.13.3, built from the tools module
// (tools/install.sh), on the loopback of a network namespace of their own,
// the agent bootstrapped with a join token and attesting workloads with the
// unix attestor.
//
// Each vwire component runs as its own copy of the binary (vwire-registry,
// vwire-node, vwire-nse, vwire-nsc, vwire-cli), so that SPIRE tells them
// apart by unix:path and gives each its own SPIFFE ID,
// spiffe://vwire.test/vwire/<component>. X.509-SVIDs live one minute, so
// the agent rotates every one of them during the test, and the test checks
// that a vWire, its refreshes and new Requests survive that.
//
// The test needs root (network namespaces), iproute2, ping, and
// SPIRE_BIN_DIR naming a directory with spire-server and spire-agent; it
// skips without them. `make test-spire` builds SPIRE and runs it:
//
//	SPIRE_BIN_DIR=$(tools/install.sh) go test -v -count=1 ./test/spire/
//
// VWIRE_E2E_BIN tests a vwire binary built elsewhere; VWIRE_E2E_KEEP=1
// keeps the test's directory (logs, SPIRE data) afterwards.
package spire

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/vwire/vwire/test/e2e"
	"github.com/vwire/vwire/workload/nsc"
)

const (
	// EnvBinDir names the directory holding spire-server and spire-agent.
	EnvBinDir = "SPIRE_BIN_DIR"

	trustDomain = "vwire.test"
	// svidTTL is SPIRE's default_x509_svid_ttl: the agent renews an SVID
	// at about half of it (±10%), so every SVID rotates within the test.
	svidTTL = time.Minute
	// tokenLifetime is every hop's --max-token-lifetime and the endpoint's
	// registration lifetime: the client refreshes its connection and the
	// endpoint its registration every few seconds, across the rotations.
	tokenLifetime = 15 * time.Second
	// rotationMargin is waited past the moment when every SVID held at
	// the start has expired.
	rotationMargin = 10 * time.Second

	registryAddr = "127.0.0.1:5002" // on node1's loopback
	managerPort  = 5001
	pingTimeout  = 30 * time.Second
)

// components are vwire's processes in this test, each a copy of the binary
// named vwire-<component>, with the SPIFFE ID spiffe://vwire.test/vwire/<component>.
var components = []string{"registry", "node", "nse", "nsc", "cli"}

var td = spiffeid.RequireTrustDomainFromString(trustDomain)

func componentID(c string) spiffeid.ID { return spiffeid.RequireFromPath(td, "/vwire/"+c) }

// requirements skips the test unless it can run here, and returns the
// directory holding the SPIRE binaries.
func requirements(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvBinDir)
	if dir == "" {
		t.Skipf("%s is not set: run `make test-spire` (it builds spire-server and spire-agent v1.13.3 with tools/install.sh, then runs this test as root)", EnvBinDir)
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s=%s has no %s (build it with tools/install.sh): %v", EnvBinDir, dir, b, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the SPIRE test makes network namespaces: run it as root (`make test-spire` as root)")
	}
	for _, prog := range []string{"ip", "ping", "env"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("the SPIRE test needs %s (iproute2, iputils-ping, coreutils): %v", prog, err)
		}
	}
	// Namespaces of an earlier run that crashed (same naming as test/e2e).
	if removed, err := e2e.RemoveStaleNamespaces(); err != nil {
		t.Log(err)
	} else if len(removed) > 0 {
		t.Logf("removed namespaces of earlier runs: %s", strings.Join(removed, " "))
	}
	return dir
}

// world is the test's deployment: SPIRE, the vwire binaries and where the
// node's sockets are.
type world struct {
	t     *testing.T
	lab   *e2e.Lab
	spire *SPIRE
	bins  map[string]string // component -> its copy of the binary
	state string            // --state-dir of every process: must stay without a CA

	managerSock   string
	forwarderSock string
}

// start runs component's binary in ns with the Workload API of the SPIRE
// agent as its only identity source. `ip netns exec` execs env, which execs
// the binary: the pid SPIRE attests is the binary's.
func (w *world) start(ns *e2e.Netns, name, component string, args ...string) *e2e.Proc {
	w.t.Helper()
	argv := append([]string{"SPIFFE_ENDPOINT_SOCKET=unix://" + w.spire.AgentSock, w.bins[component]}, args...)
	argv = append(argv, "--state-dir", w.state, "--log-level", "debug", "--log-format", "json")
	return w.lab.StartProgram(ns, name, "env", argv...)
}

func (w *world) startNSC(ns *e2e.Netns, name string, urls ...string) *e2e.NSC {
	w.t.Helper()
	args := []string{"nsc", "--name", name, "--connect-to", "unix://" + w.managerSock,
		"--output", "json", "--max-token-lifetime", tokenLifetime.String()}
	return &e2e.NSC{Proc: w.start(ns, name, "nsc", append(args, urls...)...), URLs: urls}
}

func TestVwireWithSPIRE(t *testing.T) {
	spireBin := requirements(t)
	lab := e2e.NewLab(t, "")
	w := &world{t: t, lab: lab, state: filepath.Join(lab.Dir, "state")}
	mustMkdir(t, w.state)
	w.bins = installBinaries(t, filepath.Join(lab.Dir, "bin"))

	// SPIRE, and an entry for each component: same uid, different path.
	start := time.Now()
	sp := StartSPIRE(t, lab, spireBin, td, svidTTL)
	w.spire = sp
	var ids []spiffeid.ID
	for _, c := range components {
		sp.Register(t, componentID(c), "unix:uid:"+strconv.Itoa(os.Geteuid()), "unix:path:"+w.bins[c])
		ids = append(ids, componentID(c))
	}
	sp.WaitEntriesCached(t, ids...)
	t.Logf("SPIRE up with %d entries in %v", len(ids), time.Since(start).Round(time.Millisecond))

	// A registry and a node (manager + kernel forwarder) in node1; an
	// icmp-responder and a client in workload namespaces.
	f := lab.Fabric(1)
	node := f.AddNode("node1")
	nseNS, nscNS := lab.Netns("nse1"), lab.Netns("nsc1")
	nodeDir := filepath.Join(lab.Dir, "node1")
	mustMkdir(t, nodeDir)
	w.managerSock = filepath.Join(nodeDir, "manager.sock")
	w.forwarderSock = filepath.Join(nodeDir, "forwarder.sock")
	nseSock := filepath.Join(lab.Dir, "nse1.sock")
	managerTCP := net.JoinHostPort(node.IP.String(), strconv.Itoa(managerPort))

	reg := w.start(node.Netns, "registry", "registry", "registry", "--listen", registryAddr)
	reg.WaitLogLine(e2e.StartTimeout, "registry serving")
	nodeProc := w.start(node.Netns, "node1", "node", "node",
		"--registry", registryAddr,
		"--node-name", "node1",
		"--socket", w.managerSock,
		"--manager-listen", managerTCP,
		"--advertise-url", "tcp://"+managerTCP,
		"--forwarder-socket", "unix://"+w.forwarderSock,
		"--dataplane", "kernel",
		"--tunnel-ip", node.IP.String(),
		"--max-token-lifetime", tokenLifetime.String())
	e2e.WaitUnixSocket(t, nodeProc, w.managerSock)
	nodeProc.WaitLogLine(e2e.StartTimeout, "forwarder registered")
	nse := w.start(nseNS, "nse1", "nse", "nse", "icmp-responder",
		"--name", "nse1",
		"--service", "icmp",
		"--connect-to", "unix://"+w.managerSock,
		"--listen", "unix://"+nseSock,
		"--cidr", "172.16.7.0/24",
		"--max-token-lifetime", tokenLifetime.String(),
		"--registration-lifetime", tokenLifetime.String())
	nodeProc.WaitLogLine(e2e.StartTimeout, "endpoint registered", `"name":"nse1"`)

	const url = "kernel://icmp/nsm-1"
	nscStart := time.Now()
	nsc1 := w.startNSC(nscNS, "nsc1", url)
	r1 := connect(t, lab, nsc1, nscNS, nseNS, url)
	t.Logf("nsc1 connected (%s) in %v; %v since SPIRE started", r1.ID, time.Since(nscStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// Every component's identity is its SPIRE one: as it says itself...
	for _, c := range []struct {
		p   *e2e.Proc
		msg string
		id  spiffeid.ID
	}{
		{reg, "registry serving", componentID("registry")},
		{nse, "endpoint serving", componentID("nse")},
		{nsc1.Proc, "nsc starting", componentID("nsc")},
	} {
		if line, ok := c.p.FindLogLine(c.msg, `"id":"`+c.id.String()+`"`); !ok {
			t.Errorf("%s: no %q line with id %s", c.p, c.msg, c.id)
		} else {
			t.Logf("%s: %s", c.p.Name, line)
		}
	}
	// ...as its servers present it (verified against SPIRE's bundle)...
	servers := []server{
		{"manager (unix)", "unix", w.managerSock, "", componentID("node")},
		{"forwarder", "unix", w.forwarderSock, "", componentID("node")},
		{"nse1", "unix", nseSock, "", componentID("nse")},
		{"registry", "tcp", registryAddr, node.Name, componentID("registry")},
		{"manager (tcp)", "tcp", managerTCP, node.Name, componentID("node")},
	}
	initial := probeAll(t, sp, servers)
	// ...and as its peers saw it in mTLS.
	peerChecks := []peerCheck{
		{reg, "/registry.NetworkServiceEndpointRegistry/Register", componentID("node")},
		{nodeProc, "/networkservice.NetworkService/Request", componentID("nsc")},
		{nodeProc, "/registry.NetworkServiceEndpointRegistry/Register", componentID("nse")},
		{nse, "/networkservice.NetworkService/Request", componentID("node")},
	}
	for _, pc := range peerChecks {
		if ok, _ := grpcCalls(t, pc.p, pc.method, pc.peer, time.Time{}); len(ok) == 0 {
			t.Errorf("%s: no successful %s call from %s", pc.p, pc.method, pc.peer)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Wait until every SVID any process held so far has expired (so each
	// has rotated at least once) with the vWire under ping all along.
	dst := e2e.Addr(r1.DstIPs[0])
	pinger := lab.StartProgram(nscNS, "ping-nsc1", "ping", "-n", "-D", "-O", "-i", "0.5", "-W", "1", dst)
	rotationStart := time.Now()
	// An SVID a process held when the client started was issued before,
	// so it expires by nscStart+svidTTL; the servers' may be later.
	expired := nscStart.Add(svidTTL)
	for _, s := range initial {
		if s.NotAfter.After(expired) {
			expired = s.NotAfter
		}
	}
	until := expired.Add(rotationMargin)
	t.Logf("waiting %v, until %s: every SVID issued so far has expired by %s",
		time.Until(until).Round(time.Second), until.Format(time.TimeOnly), expired.Format(time.TimeOnly))
	// A process that ends meanwhile fails the test, but the wait goes on:
	// what the others log through the rotation is the diagnosis.
	exited := map[*e2e.Proc]bool{}
	for time.Now().Before(until) {
		for _, p := range []*e2e.Proc{sp.Server, sp.Agent, reg, nodeProc, nse, nsc1.Proc, pinger} {
			if p.Exited() && !exited[p] {
				exited[p] = true
				t.Errorf("%s exited during the rotation (at %s); its last log line: %s",
					p, time.Now().Format(time.TimeOnly), e2e.Tail(p.Log(), 1))
			}
		}
		time.Sleep(time.Second)
	}
	pinger.Signal(syscall.SIGINT)
	if _, ok := pinger.Wait(10 * time.Second); !ok {
		t.Errorf("%s did not stop on SIGINT", pinger)
	}
	sent, received, err := pingStats(pinger.Output())
	switch {
	case err != nil:
		t.Errorf("ping during the rotation: %v\n%s", err, e2e.Tail(pinger.Output(), 10))
	case sent == 0 || received != sent:
		t.Errorf("ping across the vWire during the rotation: %d sent, %d received; unanswered:\n%s",
			sent, received, grepLines(pinger.Output(), "no answer", 20))
	default:
		t.Logf("ping across the vWire during the %v of rotation: %d sent, %d received", time.Since(rotationStart).Round(time.Second), sent, received)
	}

	// Every server now presents a new SVID, still its SPIRE identity.
	rotated := probeAll(t, sp, servers)
	for _, s := range servers {
		before, after := initial[s.name], rotated[s.name]
		if after.Serial == before.Serial || !after.NotBefore.After(before.NotBefore) {
			t.Errorf("%s still presents %s, want a rotated SVID", s.name, after)
		} else {
			t.Logf("%s rotated: %s -> %s", s.name, before.Serial, after)
		}
	}

	// The client kept its one connection: no new one, no expiry, no
	// reconnect, and its refreshes kept succeeding with the rotated SVIDs.
	reports, err := nsc1.Reports()
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int{}
	for _, r := range reports {
		events[r.Event]++
		if r.Event != "monitor" && r.ID != r1.ID {
			t.Errorf("nsc1 reports connection %s (%s), want only %s", r.ID, r.Event, r1.ID)
		}
	}
	if events["connected"] != 1 || events["changed"]+events["expired"]+events["closed"] != 0 {
		t.Errorf("nsc1 events %v, want one connected and no changed, expired or closed", events)
	}
	for _, pc := range []peerCheck{
		{nodeProc, "/networkservice.NetworkService/Request", componentID("nsc")},            // the client's refreshes
		{nse, "/networkservice.NetworkService/Request", componentID("node")},                // ...as the forwarder passes them on
		{nodeProc, "/registry.NetworkServiceEndpointRegistry/Register", componentID("nse")}, // the endpoint's registration refreshes
		{reg, "/registry.NetworkServiceEndpointRegistry/Register", componentID("node")},     // ...as the manager passes them on
	} {
		ok, _ := grpcCalls(t, pc.p, pc.method, pc.peer, expired)
		if len(ok) == 0 {
			t.Errorf("%s: no successful %s from %s after every SVID rotated (%s)", pc.p.Name, pc.method, pc.peer, expired.Format(time.TimeOnly))
		} else {
			t.Logf("%s: %d successful %s from %s after every SVID rotated", pc.p.Name, len(ok), pc.method, pc.peer)
		}
		if _, failed := grpcCalls(t, pc.p, pc.method, pc.peer, rotationStart); len(failed) > 0 {
			t.Errorf("%s: %d failed %s calls from %s during the rotation, first: %s", pc.p.Name, len(failed), pc.method, pc.peer, failed[0])
		}
	}
	// Nothing complained while the SVIDs rotated.
	if problems := logProblems([]*e2e.Proc{reg, nodeProc, nse, nsc1.Proc}, rotationStart, 3); len(problems) > 0 {
		t.Errorf("warnings and errors during the rotation:\n\t%s", strings.Join(problems, "\n\t"))
	}

	// The CLI, with its own SPIRE identity, reads the registry: a new
	// handshake with the registry's rotated SVID.
	out, err := node.Exec("env", "SPIFFE_ENDPOINT_SOCKET=unix://"+sp.AgentSock, w.bins["cli"],
		"get", "nse", "--registry", registryAddr, "--state-dir", w.state, "--log-format", "json")
	if err != nil || !strings.Contains(out, "nse1") {
		t.Errorf("vwire-cli get nse (want nse1 listed): %v:\n%s", err, out)
	} else {
		t.Logf("vwire-cli get nse:\n%s", out)
	}
	if ok, _ := grpcCalls(t, reg, "/registry.NetworkServiceEndpointRegistry/Find", componentID("cli"), time.Time{}); len(ok) == 0 {
		t.Errorf("registry: no Find from %s", componentID("cli"))
	}

	// No process fell back to a development CA.
	if _, err := os.Stat(filepath.Join(w.state, "ca")); err == nil {
		t.Errorf("%s/ca exists: some process made a development CA instead of using SPIRE", w.state)
	}
	if line, ok := nodeProc.FindLogLine("SPIFFE Workload API serving"); ok {
		t.Errorf("vwire node served its own Workload API although SPIFFE_ENDPOINT_SOCKET was set: %s", line)
	}

	// A new Request, over new connections with the rotated SVIDs, still
	// builds a working vWire, and the old one still carries traffic.
	for _, p := range []*e2e.Proc{reg, nodeProc, nse} {
		if p.Exited() {
			t.Fatalf("%s has exited: no new Request possible", p)
		}
	}
	nsc2NS := lab.Netns("nsc2")
	nsc2 := w.startNSC(nsc2NS, "nsc2", url)
	r2 := connect(t, lab, nsc2, nsc2NS, nseNS, url)
	t.Logf("nsc2 connected after the rotation: %s, %s -> %s", r2.ID, r2.SrcIPs[0], r2.DstIPs[0])
	if !nsc1.Exited() {
		nscNS.WaitPing(pingTimeout, dst)
	}

	for _, c := range []*e2e.NSC{nsc2, nsc1} {
		if c.Exited() {
			continue // already reported
		}
		if err := c.Stop(); err != nil {
			t.Errorf("%s: stopped with %v", c, err)
		}
	}
	t.Logf("done %v after SPIRE started", time.Since(start).Round(time.Second))
}

// connect waits until c is connected to url, checks the client's interface
// and pings both ways across the vWire.
func connect(t *testing.T, lab *e2e.Lab, c *e2e.NSC, clientNS, epNS *e2e.Netns, url string) nsc.Report {
	t.Helper()
	r, ok := c.WaitConnected()[url]
	if !ok {
		t.Fatalf("%s: no connection for %s", c, url)
	}
	if len(r.SrcIPs) == 0 || len(r.DstIPs) == 0 {
		t.Fatalf("%s: connection without addresses: %+v", url, r)
	}
	e2e.CheckClientSide(lab, clientNS, r)
	clientNS.WaitPing(pingTimeout, e2e.Addr(r.DstIPs[0]))
	if err := epNS.Ping(e2e.Addr(r.SrcIPs[0])); err != nil {
		t.Error(err)
	}
	return r
}

// server is a listener of a vwire component and the identity it must
// present.
type server struct {
	name    string
	network string
	addr    string
	netns   string // `ip netns` name when addr is on a namespace's loopback or fabric
	want    spiffeid.ID
}

func probeAll(t *testing.T, sp *SPIRE, servers []server) map[string]ServerSVID {
	t.Helper()
	got := map[string]ServerSVID{}
	for _, s := range servers {
		var svid ServerSVID
		var err error
		if s.netns != "" {
			svid, err = ProbeServerIn(s.netns, s.network, s.addr, sp.Bundle)
		} else {
			svid, err = ProbeServer(s.network, s.addr, sp.Bundle)
		}
		switch {
		case err != nil:
			t.Errorf("%s at %s: %v", s.name, s.addr, err)
		case svid.ID != s.want:
			t.Errorf("%s at %s presents %s, want %s", s.name, s.addr, svid, s.want)
		default:
			t.Logf("%s presents %s", s.name, svid)
		}
		got[s.name] = svid
	}
	return got
}

// peerCheck is a gRPC method a process serves and the peer that calls it.
type peerCheck struct {
	p      *e2e.Proc
	method string // full method name
	peer   spiffeid.ID
}

// logLine is one JSON log line of a vwire process.
type logLine map[string]any

func (l logLine) str(k string) string {
	s, _ := l[k].(string)
	return s
}

func (l logLine) time() time.Time {
	ts, _ := time.Parse(time.RFC3339Nano, l.str("time"))
	return ts
}

func (l logLine) String() string {
	b, _ := json.Marshal(l)
	return string(b)
}

func jsonLines(s string) []logLine {
	var out []logLine
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// grpcCalls returns the calls of method from peer that p logged (at debug
// level: "grpc call") since the given time, those that succeeded and those
// that failed.
func grpcCalls(t *testing.T, p *e2e.Proc, method string, peer spiffeid.ID, since time.Time) (ok, failed []logLine) {
	t.Helper()
	for _, l := range jsonLines(p.Log()) {
		if l.str("msg") != "grpc call" || l.str("method") != method ||
			l.str("peer") != peer.String() || l.time().Before(since) {
			continue
		}
		if l.str("code") == "OK" {
			ok = append(ok, l)
		} else {
			failed = append(failed, l)
		}
	}
	return ok, failed
}

// logProblems lists the WARN and ERROR lines the processes logged since
// the given time, at most max of each process, and how many more.
func logProblems(procs []*e2e.Proc, since time.Time, max int) []string {
	var out []string
	for _, p := range procs {
		var lines []string
		for _, l := range jsonLines(p.Log()) {
			if lvl := l.str("level"); (lvl == "WARN" || lvl == "ERROR") && !l.time().Before(since) {
				lines = append(lines, p.Name+": "+l.String())
			}
		}
		// Lines that are not JSON: a panic, or the error a command exits with.
		for _, line := range strings.Split(p.Log(), "\n") {
			if line != "" && !strings.HasPrefix(line, "{") {
				lines = append(lines, p.Name+": "+line)
			}
		}
		if len(lines) > max {
			lines = append(lines[:max], fmt.Sprintf("%s: ... and %d more", p.Name, len(lines)-max))
		}
		out = append(out, lines...)
	}
	return out
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

func pingStats(out string) (sent, received int, err error) {
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no ping summary in its output")
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, nil
}

func grepLines(s, substr string, max int) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... %d more", len(out)-max))
	}
	return strings.Join(out, "\n")
}

// installBinaries builds vwire (or takes $VWIRE_E2E_BIN) and copies it
// once per component into dir, as vwire-<component>.
func installBinaries(t *testing.T, dir string) map[string]string {
	t.Helper()
	mustMkdir(t, dir)
	src := os.Getenv("VWIRE_E2E_BIN")
	if src == "" {
		src = filepath.Join(dir, "vwire")
		start := time.Now()
		build := exec.Command("go", "build", "-o", src, "github.com/vwire/vwire/cmd/vwire")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build vwire: %v\n%s", err, out)
		}
		t.Logf("built vwire in %v", time.Since(start).Round(time.Millisecond))
	}
	bins := map[string]string{}
	for _, c := range components {
		dst := filepath.Join(dir, "vwire-"+c)
		if err := copyFile(src, dst); err != nil {
			t.Fatal(err)
		}
		bins[c] = dst
	}
	return bins
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
