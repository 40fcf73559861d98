package nsmcompat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vwire/vwire/test/e2e"
)

// suite is what TestMain found out, read-only once the tests run.
var suite struct {
	skip string // why the tests skip; empty when they can run
	bin  string // the vwire binary
}

func runMain(m *testing.M) int {
	suite.skip = prerequisites()
	if suite.skip != "" {
		return m.Run()
	}
	if bin := os.Getenv("VWIRE_E2E_BIN"); bin != "" {
		suite.bin = bin // as test/e2e: a binary built elsewhere
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "vwire-nsmcompat-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsmcompat:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	suite.bin = filepath.Join(dir, "vwire")
	build := exec.Command("go", "build", "-o", suite.bin, "github.com/vwire/vwire/cmd/vwire")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "nsmcompat: build vwire: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func prerequisites() string {
	if os.Geteuid() != 0 {
		return "NSM compatibility tests run NSM workloads in network namespaces: run them as root"
	}
	for _, prog := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Sprintf("NSM compatibility tests need %s (iproute2, iputils-ping): %v", prog, err)
		}
	}
	return ""
}

// world is one test's `vwire node` (kernel dataplane, embedded registry)
// in its own namespace, and the Workload API socket it serves.
type world struct {
	lab    *e2e.Lab
	node   *e2e.MeshNode
	mesh   *e2e.Mesh
	spiffe string
}

func newWorld(t testing.TB, opts e2e.MeshOptions) *world {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
	l := e2e.NewLab(t, suite.bin)
	opts.Nodes, opts.Embedded = 1, true
	m := e2e.NewMesh(l, opts)
	w := &world{lab: l, node: m.Nodes[0], mesh: m, spiffe: filepath.Join(l.Dir, "workload-api.sock")}
	e2e.WaitUnixSocket(t, w.node.Manager, w.spiffe)
	return w
}

// workload is a role of this binary running in a namespace.
type workload struct {
	*e2e.Proc
	t testing.TB
}

// start runs role in ns as the program name: vwire's Workload API names
// a workload by its executable, so each gets its own SPIFFE ID.
func (w *world) start(ns *e2e.Netns, name, role string, args ...string) *workload {
	w.lab.T.Helper()
	exe := filepath.Join(w.lab.Dir, name)
	if _, err := os.Stat(exe); err != nil {
		self, err := os.Executable()
		if err != nil {
			w.lab.T.Fatal(err)
		}
		if err := linkOrCopy(self, exe); err != nil {
			w.lab.T.Fatal(err)
		}
	}
	args = append([]string{roleArg, role, "--spiffe", w.spiffe}, args...)
	return &workload{Proc: w.lab.StartProgram(ns, name, exe, args...), t: w.lab.T}
}

func linkOrCopy(from, to string) error {
	if os.Link(from, to) == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// events returns what the workload printed so far.
func (p *workload) events() []event {
	var out []event
	f, err := os.Open(p.Stdout)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// await waits for the first event at or after index from that match
// returns, and returns it with its index.
func (p *workload) await(timeout time.Duration, from int, what string, match func(event) bool) (event, int) {
	p.t.Helper()
	var got event
	idx := -1
	err := e2e.Poll(timeout, func() error {
		evs := p.events()
		for i := from; i < len(evs); i++ {
			if match(evs[i]) {
				got, idx = evs[i], i
				return nil
			}
		}
		if p.Exited() {
			return e2e.Permanent(fmt.Errorf("%s exited: %s", p.Name, e2e.Tail(p.Log(), 20)))
		}
		return fmt.Errorf("no %s yet", what)
	})
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v\nstdout:\n%s", p.Name, what, err, e2e.Tail(p.Output(), 20))
	}
	return got, idx
}

func isEvent(name string) func(event) bool { return func(e event) bool { return e.Event == name } }

func parseConn(t *testing.T, s string) *networkservice.Connection {
	t.Helper()
	c := &networkservice.Connection{}
	if err := protojson.Unmarshal([]byte(s), c); err != nil {
		t.Fatalf("connection %s: %v", s, err)
	}
	return c
}

// ping checks the vWire from ns to addr until it answers.
func ping(t *testing.T, ns *e2e.Netns, addr string, timeout time.Duration) {
	t.Helper()
	e2e.Eventually(t, timeout, "ping "+addr+" from "+ns.Label, func() error {
		out, err := ns.Exec("ping", "-c", "1", "-W", "1", addr)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

func startNSE(w *world, ns *e2e.Netns, name string, extra ...string) (*workload, *networkservice.Connection) {
	args := append([]string{"--name", name, "--service", "icmp-responder", "--connect-to", w.node.ConnectTo(), "--dir", w.lab.Dir, "--cidr", "172.31.7.0/24"}, extra...)
	p := w.start(ns, "nse-"+name, "nse", args...)
	return p, nil
}

// TestNSMRegistry runs NSM's registry client chains, default policies on,
// against vwire's registry directly and through a manager's registry
// proxy: each step's reply must pass the policies (tokens chained and
// unexpired, the next token signed by the server's certificate, the
// client_allowed check of path_ids on the second Register and Unregister).
func TestNSMRegistry(t *testing.T) {
	w := newWorld(t, e2e.MeshOptions{})
	for _, tc := range []struct {
		name   string
		ns     *e2e.Netns
		target string
	}{
		{name: "registry", ns: w.node.Netns, target: "tcp://" + w.mesh.Registry},
		{name: "manager", ns: w.lab.Netns("reg"), target: w.node.ConnectTo()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := w.start(tc.ns, "nsm-registry-"+tc.name, "registry", "--connect-to", tc.target,
				"--service", "nsm-ns-"+tc.name, "--nse", "nsm-nse-"+tc.name)
			err, ok := p.Wait(2 * time.Minute)
			if !ok || err != nil {
				t.Fatalf("NSM registry client against vwire's %s: exited %v (done %v)\n%s\n%s", tc.name, err, ok, p.Output(), e2e.Tail(p.Log(), 30))
			}
			var steps []string
			for _, e := range p.events() {
				if e.Event == "ok" {
					steps = append(steps, e.Message)
				}
			}
			want := "ns register,ns find,nse find watch,nse register,nse register again,nse watch sees it,nse unregister,nse watch sees it go,ns unregister"
			if got := strings.Join(steps, ","); got != want {
				t.Fatalf("steps %s, want %s", got, want)
			}
		})
	}
}

// TestNSMEndpointAndClient: NSM's icmp responder registers through
// vwire's manager and NSM's client connects to it, descriptors passed both
// ways (the client's and the endpoint's namespaces are inode:// URLs):
// Find with watch, Request, ping, refresh, MonitorConnections, heal after
// the endpoint is killed and started again, Close.
func TestNSMEndpointAndClient(t *testing.T) {
	endpointAndClient(t, e2e.MeshOptions{})
}

// TestNSMEndpointAndClientVPP is TestNSMEndpointAndClient on the VPP
// dataplane (`make test-vpp`; VPP_BIN, VPP_PLUGIN_PATH): VPP makes the
// KERNEL interfaces in the namespaces NSM's workloads passed.
func TestNSMEndpointAndClientVPP(t *testing.T) {
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
	vpp := e2e.LookupVPP()
	if vpp.Skip != "" {
		t.Skip(vpp.Skip)
	}
	endpointAndClient(t, e2e.MeshOptions{VPP: vpp})
}

func endpointAndClient(t *testing.T, opts e2e.MeshOptions) {
	w := newWorld(t, opts)
	nseNS, nscNS, watchNS := w.lab.Netns("nse"), w.lab.Netns("nsc"), w.lab.Netns("watch")

	watch := w.start(watchNS, "nsm-watch", "watch", "--connect-to", w.node.ConnectTo(), "--service", "icmp-responder")
	watch.await(time.Minute, 0, "watch", isEvent("watching"))

	nse, _ := startNSE(w, nseNS, "icmp-server")
	reg, _ := nse.await(time.Minute, 0, "registration", isEvent("registered"))
	var nseReply struct {
		URL     string   `json:"url"`
		PathIDs []string `json:"pathIds"`
	}
	if err := json.Unmarshal(reg.NSE, &nseReply); err != nil {
		t.Fatal(err)
	}
	// NSM's sendfd client maps the inode:// URL vwire answers with back to
	// the endpoint's own socket.
	if want := "unix://" + filepath.Join(w.lab.Dir, "icmp-server.listen.on"); nseReply.URL != want {
		t.Errorf("registration answered with url %q, want %q", nseReply.URL, want)
	}
	if len(nseReply.PathIDs) < 2 {
		t.Errorf("registration answered with path_ids %v: want the endpoint's and the manager's", nseReply.PathIDs)
	}
	watch.await(time.Minute, 0, "the endpoint in the watch", func(e event) bool {
		return e.Event == "nse" && !e.Deleted && len(e.Names) == 1 && e.Names[0] == "icmp-server"
	})

	// A 15 s token lifetime makes NSM's client refresh every few seconds.
	nsc := w.start(nscNS, "nsm-nsc", "nsc", "--name", "nsc", "--connect-to", w.node.ConnectTo(),
		"--url", "kernel://icmp-responder/nsm-1", "--max-token-lifetime", "15s")
	ev, at := nsc.await(time.Minute, 0, "connection", isEvent("connected"))
	conn := parseConn(t, ev.Conns[0])
	// vwire answered with the client's inode:// URL, which the client's
	// sendfd mapped back to its own path.
	if got := conn.GetMechanism().GetParameters()[common.InodeURL]; got != "file:///proc/thread-self/ns/net" {
		t.Errorf("the client's mechanism names %q after the reply, want its own file:///proc/thread-self/ns/net", got)
	}
	dst := strings.Split(conn.GetContext().GetIpContext().GetDstIpAddrs()[0], "/")[0]
	ping(t, nscNS, dst, 20*time.Second)
	if out := nscNS.MustIP("link", "show", "nsm-1"); !strings.Contains(out, "nsm-1") {
		t.Fatalf("no nsm-1 in the client's namespace: %s", out)
	}

	// MonitorConnections: the initial state before the Request, then an
	// UPDATE for the Request and one per refresh.
	evs := nsc.events()
	if evs[0].Event != "monitor" || evs[0].Type != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER.String() {
		t.Fatalf("first monitor event %+v, want INITIAL_STATE_TRANSFER", evs[0])
	}
	// UP is State's zero value: protojson leaves it out.
	initial, _ := nsc.await(time.Minute, at+1, "a second monitor's first event", isEvent("initial"))
	if initial.Type != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER.String() || len(initial.Conns) != 1 ||
		parseConn(t, initial.Conns[0]).GetPath().GetPathSegments()[0].GetId() != "nsc-0" {
		t.Fatalf("a monitor opened after the Request began with %s %v, want INITIAL_STATE_TRANSFER with the client's connection", initial.Type, initial.Conns)
	}
	isUpdate := func(e event) bool {
		return e.Event == "monitor" && e.Type == networkservice.ConnectionEventType_UPDATE.String() &&
			len(e.Conns) == 1 && !strings.Contains(e.Conns[0], `"state":`)
	}
	_, at = nsc.await(time.Minute, at+1, "a refresh", isUpdate)
	second, _ := nsc.await(time.Minute, at+1, "a second refresh", isUpdate)
	ping(t, nscNS, dst, 20*time.Second)
	// Each refresh carries the client's new token (in the metadata, as NSM
	// sends it): its segment's expiry moves on.
	first := conn.GetPath().GetPathSegments()[0].GetExpires().AsTime()
	if later := parseConn(t, second.Conns[0]).GetPath().GetPathSegments()[0].GetExpires().AsTime(); !later.After(first) {
		t.Errorf("after two refreshes the client's segment expires at %s, as at the Request (%s)", later, first)
	}

	// NSM's registry client refreshes the registration (a third of its
	// minute); its policies check each answer, and its retry element logs
	// every refusal.
	e2e.Eventually(t, 90*time.Second, "the endpoint's registration refreshed through the manager", func() error {
		n := strings.Count(w.node.Manager.Log(), "method=/registry.NetworkServiceEndpointRegistry/Register peer=spiffe://vwire.local/workload/uid/0/nse-icmp-server code=OK")
		if n < 2 {
			return fmt.Errorf("%d registrations", n)
		}
		return nil
	})
	if strings.Contains(nse.Log(), "try attempt has failed") || strings.Contains(nse.Log(), "policy failed") {
		t.Fatalf("NSM's registry client refused an answer:\n%s", e2e.Tail(nse.Log(), 20))
	}

	// Heal: the endpoint dies and comes back under the same name.
	before := len(nsc.events())
	nse.Kill()
	nse2, _ := startNSE(w, nseNS, "icmp-server")
	nse2.await(time.Minute, 0, "registration after restart", isEvent("registered"))
	_, down := nsc.await(time.Minute, before, "the connection DOWN", func(e event) bool {
		return e.Event == "monitor" && len(e.Conns) == 1 && strings.Contains(e.Conns[0], `"state":"DOWN"`)
	})
	nsc.await(time.Minute, down+1, "the connection UP again", isUpdate)
	ping(t, nscNS, dst, 30*time.Second)

	// Close (SIGTERM: the client closes and exits).
	if err := nsc.Stop(); err != nil {
		t.Logf("nsc exit: %v", err)
	}
	if evs := nsc.events(); len(evs) == 0 || evs[len(evs)-1].Event != "closed" {
		t.Fatalf("the client did not close cleanly: %s", e2e.Tail(nsc.Output(), 5))
	}
	e2e.Eventually(t, 20*time.Second, "no vWire interface left in the workloads' namespaces", func() error {
		for _, ns := range []*e2e.Netns{nscNS, nseNS} {
			out, err := ns.IP("-o", "link", "show")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(out, "\n") {
				if line != "" && !strings.Contains(line, ": lo:") {
					return fmt.Errorf("%s still has %s", ns.Label, line)
				}
			}
		}
		return nil
	})
}

// TestNSMEndpointWithRecvFD: the endpoint also runs NSM's recvfd server
// (cmd-nse-icmp-responder had it until 2023), which waits, on every
// Request and Close that names its inode:// URL, for the descriptor beside
// the call. vwire's forwarder sends it, so refreshes and Close go through
// at once instead of waiting out the call's deadline.
func TestNSMEndpointWithRecvFD(t *testing.T) {
	w := newWorld(t, e2e.MeshOptions{})
	nseNS, nscNS := w.lab.Netns("nse"), w.lab.Netns("nsc")
	nse, _ := startNSE(w, nseNS, "icmp-recvfd", "--recvfd")
	nse.await(time.Minute, 0, "registration", isEvent("registered"))
	nsc := w.start(nscNS, "nsm-nsc", "nsc", "--name", "nsc", "--connect-to", w.node.ConnectTo(),
		"--url", "kernel://icmp-responder/nsm-1", "--max-token-lifetime", "15s", "--request-timeout", "15s")
	ev, at := nsc.await(time.Minute, 0, "connection", isEvent("connected"))
	conn := parseConn(t, ev.Conns[0])
	ping(t, nscNS, strings.Split(conn.GetContext().GetIpContext().GetDstIpAddrs()[0], "/")[0], 20*time.Second)
	_, at = nsc.await(time.Minute, at+1, "the second monitor", isEvent("initial"))
	nsc.await(time.Minute, at+1, "a refresh", func(e event) bool {
		return e.Event == "monitor" && e.Type == networkservice.ConnectionEventType_UPDATE.String()
	})
	if err := nsc.Stop(); err != nil {
		t.Logf("nsc exit: %v", err)
	}
	if evs := nsc.events(); len(evs) == 0 || evs[len(evs)-1].Event != "closed" {
		t.Fatalf("the client did not close cleanly: %s", e2e.Tail(nsc.Output(), 5))
	}
	// The forwarder logs a next hop's failed Close, or a refused refresh.
	for _, bad := range []string{"close next hop", "next hop refused"} {
		if line, found := w.node.Manager.FindLogLine(bad); found {
			t.Errorf("the endpoint with recvfd: %s", line)
		}
	}
}

// TestNSMUnusableAnswer: an endpoint without sendfd answers with
// file:///proc/thread-self/ns/net, a path only it can resolve. The
// Request fails at once with a status naming the endpoint and the reason
// (not when the client's 15 s deadline runs out), and the connection the
// endpoint made is closed.
func TestNSMUnusableAnswer(t *testing.T) {
	w := newWorld(t, e2e.MeshOptions{})
	nseNS, nscNS := w.lab.Netns("nse"), w.lab.Netns("nsc")
	nse, _ := startNSE(w, nseNS, "icmp-nofd", "--sendfd=false")
	nse.await(time.Minute, 0, "registration", isEvent("registered"))
	nsc := w.start(nscNS, "nsm-nsc", "nsc", "--name", "nsc", "--connect-to", w.node.ConnectTo(),
		"--url", "kernel://icmp-responder/nsm-1", "--request-timeout", "15s")
	ev, _ := nsc.await(time.Minute, 0, "the Request's failure", func(e event) bool {
		return e.Event == "error" && strings.HasPrefix(e.Message, "request:")
	})
	if ev.Code == "DeadlineExceeded" || !strings.Contains(ev.Message, "endpoint icmp-nofd") ||
		!strings.Contains(ev.Message, "own /proc") {
		t.Fatalf("Request failed with %s %q; want at once, naming endpoint icmp-nofd and the path it cannot open", ev.Code, ev.Message)
	}
	t.Logf("Request failed with %s: %s", ev.Code, ev.Message)
	// The forwarder closes what the endpoint made beside the failed
	// Request; it logs "close next hop" when that fails.
	e2e.Eventually(t, 20*time.Second, "the client's retries refused the same way", func() error {
		n := 0
		for _, e := range nsc.events() {
			if e.Event == "error" && strings.Contains(e.Message, "own /proc") {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("%d refusals", n)
		}
		return nil
	})
	if line, found := w.node.Manager.FindLogLine("close next hop"); found {
		t.Errorf("closing the unusable answer at the endpoint failed: %s", line)
	}
}
