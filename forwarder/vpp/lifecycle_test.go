package vpp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmwireguard "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/wireguard"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter"
	"go.uber.org/goleak"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// govpp receives what govpp logs and counts, for the whole test binary:
// SetupGovpp sets process-wide state, once, in TestMain.
var govpp = struct {
	health  HealthCheck
	logs    *recordHandler
	metrics *Metrics
}{logs: &recordHandler{}, metrics: NewMetrics()}

func TestMain(m *testing.M) {
	// Notice a lost (fake) VPP quickly. A real VPP gets vwire's
	// defaults: creating an af_packet blocks its main thread long enough
	// to fail such eager health checks.
	govpp.health = DefaultHealthCheck()
	if os.Getenv("VPP_BIN") == "" {
		govpp.health = HealthCheck{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Threshold: 3}
	}
	// VWIRE_VPP_HEALTH=interval,timeout,threshold (1s,250ms,3 is govpp's
	// own) runs the benchmarks under another health check.
	if v := os.Getenv("VWIRE_VPP_HEALTH"); v != "" {
		h, err := parseHealth(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "VWIRE_VPP_HEALTH: %v\n", err)
			os.Exit(2)
		}
		govpp.health = h
	}
	if err := SetupGovpp(govpp.health, slog.New(govpp.logs), govpp.metrics); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func parseHealth(v string) (HealthCheck, error) {
	var h HealthCheck
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return h, fmt.Errorf("%q: want interval,timeout,threshold", v)
	}
	var err error
	if h.Interval, err = time.ParseDuration(parts[0]); err != nil {
		return h, err
	}
	if h.Timeout, err = time.ParseDuration(parts[1]); err != nil {
		return h, err
	}
	if h.Threshold, err = strconv.Atoi(parts[2]); err != nil {
		return h, err
	}
	return h, h.Validate()
}

// restart opens a second dataplane on old's VPP and host, as a restarted
// forwarder does.
func restart(t *testing.T, old *testNode, grace time.Duration) *testNode {
	t.Helper()
	old.dp.Close()
	n := &testNode{vpp: old.vpp, host: old.host, stats: old.stats, memifDir: old.memifDir, stateDir: old.stateDir}
	cfg := Config{Adapter: n.vpp, StatsAdapter: n.stats, Uplink: "eth0", host: n.host, Kernel: KernelVeth,
		MemifDir: n.memifDir, StateDir: n.stateDir, Grace: grace, Logger: testLogger(t)}
	dp, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	n.dp = dp
	return n
}

// A restarted forwarder keeps what a refresh claims within the grace period
// and removes the rest.
func TestReconcileAfterRestart(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	before := a.vpp.snapshot()
	keepIn, keepOut := conn(memifMech("k1.sock"), payload.Ethernet), conn(memifMech("k2.sock"), payload.Ethernet)
	if err := a.dp.Connect(ctx, "keep", keepIn, keepOut); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Connect(ctx, "stray", conn(kernelMech(nsClient, "nsm-c"), payload.IP), conn(kernelMech(nsServer, "nsm-e"), payload.IP)); err != nil {
		t.Fatal(err)
	}
	withKeep := a.vpp.snapshot()

	b := restart(t, a, 300*time.Millisecond)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.dp.Start(sctx); err != nil {
		t.Fatal(err)
	}
	b.vpp.requests(true)
	if err := b.dp.Connect(ctx, "keep", keepIn, keepOut); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.vpp.requests(true) {
		if !strings.HasSuffix(r, "_dump") {
			t.Fatalf("taking the vWire back changed VPP: %s", r)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(b.vpp.snapshot(), "vwire/in/stray") || b.host.linkCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unclaimed vWire not removed:\n%s\nlinks %v", b.vpp.snapshot(), b.host.linkAlias)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(b.vpp.snapshot(), "vwire/in/keep") {
		t.Fatalf("claimed vWire removed:\n%s", b.vpp.snapshot())
	}
	_ = withKeep
	if err := b.dp.Disconnect(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if got := b.vpp.snapshot(); got != before {
		t.Fatalf("not clean:\n%s\nwas\n%s", got, before)
	}
}

// A VPP that goes away and comes back empty (a VPP restart) gets the uplink
// and every vWire back from what Connect was given.
func TestRestoreAfterVPPRestart(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	if err := a.dp.Connect(ctx, "w", conn(memifMech("w1.sock"), payload.Ethernet), conn(memifMech("w2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	built := a.vpp.snapshot()

	crashVPP(t, a.vpp)
	a.vpp.revive()
	deadline := time.Now().Add(10 * time.Second)
	for a.vpp.snapshot() != built {
		if time.Now().After(deadline) {
			t.Fatalf("vWire not restored:\n%s\nwant\n%s", a.vpp.snapshot(), built)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restored vWire is the one Disconnect removes.
	if err := a.dp.Disconnect(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a.vpp.snapshot(), "vwire/in/w") {
		t.Fatalf("not removed:\n%s", a.vpp.snapshot())
	}
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	if err := a.dp.Connect(ctx, "m", conn(memifMech("m1.sock"), payload.Ethernet), conn(memifMech("m2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	st := a.dp.conns["m"]
	n := int(max(st.in, st.out)) + 1
	rx := make([]adapter.CombinedCounter, n)
	tx := make([]adapter.CombinedCounter, n)
	drops := make([]adapter.Counter, n)
	rx[st.in] = adapter.CombinedCounter{10, 1000}
	tx[st.in] = adapter.CombinedCounter{9, 900}
	rxErr, txErr := make([]adapter.Counter, n), make([]adapter.Counter, n)
	drops[st.in], drops[st.out], rxErr[st.in], txErr[st.out] = 1, 2, 4, 8
	mockIfCounters(a.stats, map[string]adapter.Stat{
		statRx: adapter.CombinedCounterStat{rx}, statTx: adapter.CombinedCounterStat{tx},
		statDrops: adapter.SimpleCounterStat{drops}, statRxError: adapter.SimpleCounterStat{rxErr}, statTxError: adapter.SimpleCounterStat{txErr},
	})
	got := a.dp.Metrics("m")
	want := map[string]string{"rx_packets": "10", "rx_bytes": "1000", "tx_packets": "9", "tx_bytes": "900", "drops": "15"}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("metrics %v, want %v", got, want)
		}
	}
	if a.dp.Metrics("unknown") != nil {
		t.Fatal("metrics for an unknown vWire")
	}
}

func TestCloseTwice(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := newTestNode(t, "192.0.2.1")
	if err := a.dp.Connect(context.Background(), "c", conn(memifMech("c1.sock"), payload.Ethernet), conn(memifMech("c2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Close(); err != nil {
		t.Fatal(err)
	}
}

// A restarted forwarder takes a WireGuard vWire back unchanged, on both
// nodes: the private keys it reads back from VPP are the ones the refresh's
// mechanism names.
func TestReconcileAdoptsWireguard(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	b := newTestNode(t, "192.0.2.2")
	accepted, connA := remotePair(t, a, b, wireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
	inB, outB := conn(accepted, payload.IP), conn(kernelMech(nsServer, "nsm-e"), payload.IP)
	withA, withB := a.vpp.snapshot(), b.vpp.snapshot()

	for _, tc := range []struct {
		n       *testNode
		id      string
		in, out *networkservice.Connection
		was     string
	}{{a, "a", connA, conn(accepted, payload.IP), withA}, {b, "b", inB, outB, withB}} {
		n := restart(t, tc.n, time.Minute)
		if err := n.dp.Start(ctx); err != nil {
			t.Fatal(err)
		}
		n.vpp.requests(true)
		if tc.id == "b" {
			// The peer's refresh reaches the accepting node's Accept
			// again: it must answer with the same key.
			again, err := n.dp.Accept(ctx, "b", &networkservice.Connection{Payload: payload.IP}, []*networkservice.Mechanism{accepted})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := again.GetParameters()[nsmwireguard.DstPublicKey], accepted.GetParameters()[nsmwireguard.DstPublicKey]; got != want {
				t.Fatalf("accepted again with public key %s, was %s", got, want)
			}
		}
		if err := n.dp.Connect(ctx, tc.id, tc.in, tc.out); err != nil {
			t.Fatal(err)
		}
		for _, r := range n.vpp.requests(true) {
			if !strings.HasSuffix(r, "_dump") {
				t.Fatalf("%s: taking the WireGuard vWire back changed VPP: %s", tc.id, r)
			}
		}
		if got := n.vpp.snapshot(); got != tc.was {
			t.Fatalf("%s: VPP after the restart:\n%s\nwas\n%s", tc.id, got, tc.was)
		}
	}
}
