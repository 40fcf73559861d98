package vpp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter/mock"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
)

// fakeHost records what the dataplane asks of Linux.
type fakeHost struct {
	mu        sync.Mutex
	calls     []string
	linkAlias map[string]string // name -> alias
	up        uplinkInfo
	fail      string            // call name to fail
	trunk     bool              // the KERNEL trunk is made
	vlans     map[string]uint16 // trunk VLAN of each veth
	// The workload ends of the veths: alias by namespace and name
	// (wlKey), and which of those each host end is the peer of.
	wl   map[string]string
	wlOf map[string]string
}

func wlKey(w workloadLink) string { return w.netns + "|" + w.name }

func newFakeHost(tunnel string) *fakeHost {
	return &fakeHost{linkAlias: map[string]string{}, vlans: map[string]uint16{}, wl: map[string]string{}, wlOf: map[string]string{}, up: uplinkInfo{
		mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}, mtu: 1500,
		prefixes: []netip.Prefix{netip.MustParsePrefix(tunnel + "/24")},
		gateways: []Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: netip.MustParseAddr("192.0.2.254")}},
	}}
}

func (h *fakeHost) record(c string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, c)
	if h.fail != "" && h.fail == c {
		return fmt.Errorf("fake host: %s fails", c)
	}
	return nil
}

func (h *fakeHost) createVeth(host, alias string, vlan uint16, w workloadLink) (string, error) {
	if err := h.record("createVeth " + host + " " + w.name); err != nil {
		return "", err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.trunk {
		return "", fmt.Errorf("fake host: veth %s before the trunk", host)
	}
	for l, v := range h.vlans {
		if v == vlan {
			return "", fmt.Errorf("fake host: VLAN %d of %s is %s's already", vlan, host, l)
		}
	}
	// As Linux: the workload's name is taken from another vWire's
	// workload end (deleting its veth pair), never from another link.
	replaced := h.wl[wlKey(w)]
	if replaced != "" {
		if t, ok := ParseTag(replaced); !ok || t.Role != roleWL {
			return "", fmt.Errorf("fake host: %s is not a vWire's (alias %q)", w.name, replaced)
		}
		for hl, k := range h.wlOf {
			if k == wlKey(w) {
				delete(h.linkAlias, hl)
				delete(h.wlOf, hl)
			}
		}
	}
	h.linkAlias[host] = alias
	h.vlans[host] = vlan
	h.wl[wlKey(w)] = w.alias
	h.wlOf[host] = wlKey(w)
	return replaced, nil
}

func (h *fakeHost) vethState(host, hostAlias string, w workloadLink) (bool, string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.linkAlias[host] == hostAlias, h.wl[wlKey(w)], nil
}

// dropVeth deletes a veth pair as someone else than the dataplane would.
func (h *fakeHost) dropVeth(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.wl, h.wlOf[host])
	delete(h.wlOf, host)
	delete(h.linkAlias, host)
}

func (h *fakeHost) createTrunk(int) error {
	if err := h.record("createTrunk"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trunk = true
	return nil
}

func (h *fakeHost) deleteTrunkVlan(vlan uint16) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l, v := range h.vlans {
		if v == vlan {
			delete(h.vlans, l)
		}
	}
	return nil
}

func (h *fakeHost) trunkVlans() (map[string]uint16, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]uint16{}
	for l, v := range h.vlans {
		out[l] = v
	}
	return out, nil
}

func (h *fakeHost) deleteLink(name, alias string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.linkAlias[name]; ok && a == alias {
		h.calls = append(h.calls, "deleteLink "+name)
		delete(h.linkAlias, name)
		delete(h.wl, h.wlOf[name]) // the pair goes together
		delete(h.wlOf, name)
	}
	return nil
}

func (h *fakeHost) configureWorkload(w workloadLink) error {
	return h.record("configureWorkload " + w.name)
}

func (h *fakeHost) uplink(string) (uplinkInfo, error) { return h.up, nil }

func (h *fakeHost) links() (map[string]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for n, a := range h.linkAlias {
		out[n] = a
	}
	return out, nil
}
func (h *fakeHost) close() {}

func (h *fakeHost) linkCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.linkAlias)
}

// testNode is a dataplane on a fake VPP and a fake host.
type testNode struct {
	dp       *Dataplane
	memifDir string
	stateDir string // the intent journal's (intents.go)
	vpp      *fakeVPP
	host     *fakeHost
	stats    *mock.StatsAdapter
}

type nodeOpt func(*Config)

func newTestNode(t testing.TB, tunnel string, opts ...nodeOpt) *testNode {
	t.Helper()
	n := &testNode{vpp: newFakeVPP(), host: newFakeHost(tunnel), stats: mock.NewStatsAdapter(), memifDir: t.TempDir(), stateDir: t.TempDir()}
	cfg := Config{Adapter: n.vpp, StatsAdapter: n.stats, Uplink: "eth0", host: n.host, Kernel: KernelVeth,
		MemifDir: n.memifDir, StateDir: n.stateDir, Logger: testLogger(t),
		// The fake runs no handshake: no passive peer made active behind
		// a test's back (TestPassivePeerMadeActive sets its own).
		passiveFallback: time.Hour}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dp, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	n.dp = dp
	n.vpp.requests(true) // forget the start's requests
	n.host.mu.Lock()
	n.host.calls = nil // and Linux's (the KERNEL trunk)
	n.host.mu.Unlock()
	return n
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("VWIRE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

const (
	nsClient = "/var/run/netns/client"
	nsServer = "/var/run/netns/server"
)

func ipContext() *networkservice.ConnectionContext {
	return &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{"172.16.0.1/32"}, DstIpAddrs: []string{"172.16.0.2/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: "172.16.0.2/32"}}, DstRoutes: []*networkservice.Route{{Prefix: "172.16.0.1/32"}},
	}}
}

func kernelMech(ns, name string) *networkservice.Mechanism {
	return kernel.New(kernel.Params{Name: name, NetNSURL: "file://" + ns})
}

func memifMech(file string) *networkservice.Mechanism {
	return memif.New(memif.Params{SocketFile: file})
}

func conn(m *networkservice.Mechanism, pl string) *networkservice.Connection {
	if pl == "" {
		pl = payload.IP
	}
	return &networkservice.Connection{Mechanism: m, Context: ipContext(), Payload: pl}
}

// without drops the names in drop from a list of request names.
func without(names []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(drop, n) })
}

// recordHandler is a slog.Handler that keeps every record.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
	attrs   []slog.Attr // from WithAttrs; shared by value
	parent  *recordHandler
}

func (h *recordHandler) root() *recordHandler {
	if h.parent != nil {
		return h.parent
	}
	return h
}

func (*recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	root := h.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	root.records = append(root.records, r)
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{attrs: append(slices.Clone(h.attrs), as...), parent: h.root()}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

// logged returns the records with message msg, each as its attributes.
func (h *recordHandler) logged(msg string) []map[string]slog.Value {
	return h.loggedFunc(func(m string) bool { return m == msg })
}

// loggedPrefix returns the records whose message starts with prefix.
func (h *recordHandler) loggedPrefix(prefix string) []map[string]slog.Value {
	return h.loggedFunc(func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func (h *recordHandler) loggedFunc(match func(string) bool) []map[string]slog.Value {
	root := h.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range root.records {
		if !match(r.Message) {
			continue
		}
		attrs := map[string]slog.Value{"level": slog.StringValue(r.Level.String())}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Resolve()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// waitUntil polls cond until it holds, failing t after a generous bound
// (this is not a timing assertion: the bound only ends a hung test).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitUntilWithin(t, 20*time.Second, what, cond)
}

// lossNoticedWithin bounds how long govpp's health check, as TestMain set
// it, may take to declare a silent VPP not responding: every probe missed
// at its interval and timeout, and some slack (an end to a hung test, not a
// timing assertion). With a real VPP the health check is vwire's tolerant
// default (30 misses of 1 s), with the fake one a quick one.
func lossNoticedWithin() time.Duration {
	h := govpp.health
	return time.Duration(h.Threshold+5)*(h.Interval+h.Timeout) + 10*time.Second
}

// waitUntilWithin is waitUntil with its bound given.
func waitUntilWithin(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crashVPP makes the fake VPP go away as a crashed one does, waits until
// the dataplane has noticed, and checks that nothing of VPP's state is left.
func crashVPP(t *testing.T, v *fakeVPP) {
	t.Helper()
	lost := make(chan struct{}, 1)
	v.notifyDisconnect(func() {
		select {
		case lost <- struct{}{}:
		default:
		}
	})
	v.crash()
	select {
	case <-lost:
	case <-time.After(lossNoticedWithin()):
		t.Fatal("the dataplane did not notice VPP was gone")
	}
	if got, empty := v.snapshot(), newFakeVPP().snapshot(); got != empty {
		t.Fatalf("crash left state:\n%s", got)
	}
}
