package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.fd.io/govpp/api"
)

// gateConn is a govpp connection that holds every call (a stream from its
// opening to its close, or an Invoke) at its start while closed, before
// anything reaches VPP, and counts the calls under way: what VPP has been
// asked at once. A Client makes one call at a time, so the calls under way
// are at least the operations in VPP at that moment whose call was not
// yet answered.
type gateConn struct {
	api.Connection
	mu      sync.Mutex
	cond    *sync.Cond
	closed  bool // guarded by mu
	inCall  int  // calls begun and not ended; guarded by mu
	held    int  // of those, waiting at the gate; guarded by mu
	maxCall int  // the most inCall has been; guarded by mu
}

// gate puts a closed gateConn under n's Client.
func gate(n *testNode) *gateConn {
	g := &gateConn{Connection: n.dp.vpp.conn, closed: true}
	g.cond = sync.NewCond(&g.mu)
	n.dp.vpp.conn = g
	return g
}

func (g *gateConn) enter() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inCall++
	g.maxCall = max(g.maxCall, g.inCall)
	g.held++
	for g.closed {
		g.cond.Wait()
	}
	g.held--
}

func (g *gateConn) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inCall--
}

func (g *gateConn) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = false
	g.cond.Broadcast()
}

func (g *gateConn) counts() (held, maxCall int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.maxCall
}

func (g *gateConn) NewStream(ctx context.Context, opts ...api.StreamOption) (api.Stream, error) {
	g.enter()
	s, err := g.Connection.NewStream(ctx, opts...)
	if err != nil {
		g.exit()
		return nil, err
	}
	return &gateStream{Stream: s, g: g}, nil
}

func (g *gateConn) Invoke(ctx context.Context, req, reply api.Message) error {
	g.enter()
	defer g.exit()
	return g.Connection.Invoke(ctx, req, reply)
}

type gateStream struct {
	api.Stream
	g    *gateConn
	once sync.Once
}

func (s *gateStream) Close() error {
	s.once.Do(s.g.exit)
	return s.Stream.Close()
}

func memifConnect(ctx context.Context, n *testNode, id string) error {
	return n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
}

// TestAdmissionBoundsOperationsInVPP: with 4 slots, 50 Connects at once
// never have more than 4 calls in VPP (46 wait in the forwarder, counted
// by vwire_vpp_admission_waiting), and once VPP answers every queued
// Connect completes, each waited time recorded; the vWires stand and are
// removed (removals bounded the same way).
func TestAdmissionBoundsOperationsInVPP(t *testing.T) {
	const slots, callers = 4, 50
	m := NewMetrics()
	n := newTestNode(t, "10.0.0.1", func(c *Config) { c.MaxInFlight = slots; c.Metrics = m })
	before := n.vpp.snapshot()
	ctx := context.Background()
	warmUp(t, n)
	waited0 := admissionWaits(t, m, "build").GetSampleCount()
	g := gate(n)
	errs := make(chan error, callers)
	for i := range callers {
		go func() { errs <- memifConnect(ctx, n, fmt.Sprintf("adm-%d", i)) }()
	}
	waitUntil(t, "4 Connects in VPP and 46 waiting", func() bool {
		held, _ := g.counts()
		_, waiting := n.dp.admission.busy()
		return held == slots && waiting == callers-slots
	})
	if got := testutil.ToFloat64(m.admWaiting.WithLabelValues("build")); got != callers-slots {
		t.Errorf("vwire_vpp_admission_waiting{op=build} = %v, want %d", got, callers-slots)
	}
	if got := testutil.ToFloat64(m.admInFlight); got != slots {
		t.Errorf("vwire_vpp_admission_in_flight = %v, want %d", got, slots)
	}
	g.open()
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("queued Connect: %v", err)
		}
	}
	if _, maxCall := g.counts(); maxCall > slots {
		t.Errorf("%d calls were in VPP at once, want at most %d", maxCall, slots)
	}
	if got := testutil.ToFloat64(m.admWaiting.WithLabelValues("build")); got != 0 {
		t.Errorf("vwire_vpp_admission_waiting{op=build} = %v after every Connect, want 0", got)
	}
	if got := testutil.ToFloat64(m.admInFlight); got != 0 {
		t.Errorf("vwire_vpp_admission_in_flight = %v after every Connect, want 0", got)
	}
	waits := admissionWaits(t, m, "build")
	if waits.GetSampleCount()-waited0 != callers || waits.GetSampleSum() <= 0 {
		t.Errorf("vwire_vpp_admission_wait_seconds{op=build}: %d waits summing %vs, want %d summing more than 0",
			waits.GetSampleCount()-waited0, waits.GetSampleSum(), callers)
	}
	// Every vWire stands, as the fake VPP holds it (a listing of 100
	// interfaces would fill govpp's reply buffer, which the fake, answering
	// inside the send, cannot wait on).
	for i := range callers {
		id := fmt.Sprintf("adm-%d", i)
		n.dp.mu.Lock()
		st := n.dp.conns[id]
		n.dp.mu.Unlock()
		if st == nil {
			t.Fatalf("vWire %s lost: the dataplane has no state for it", id)
		}
		n.vpp.mu.Lock()
		for _, s := range []struct {
			idx  SwIfIndex
			role string
		}{{st.in, roleIn}, {st.out, roleOut}} {
			if i := n.vpp.ifaces[uint32(s.idx)]; i == nil || i.tag != tagOf(s.role, id).String() || !i.up {
				t.Errorf("vWire %s: %s interface %d is %+v in VPP, want it tagged and up", id, s.role, s.idx, i)
			}
		}
		n.vpp.mu.Unlock()
	}

	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.dp.Disconnect(ctx, fmt.Sprintf("adm-%d", i)); err != nil {
				t.Errorf("Disconnect: %v", err)
			}
		}()
	}
	wg.Wait()
	if _, maxCall := g.counts(); maxCall > slots {
		t.Errorf("%d calls were in VPP at once, want at most %d", maxCall, slots)
	}
	if got := admissionWaits(t, m, "remove").GetSampleCount(); got != callers+1 { // and the warm-up's
		t.Errorf("vwire_vpp_admission_wait_seconds{op=remove}: %d, want %d", got, callers)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after every Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestAdmissionGiveUpSendsNothing: a Connect whose caller gives up while it
// waits for a slot sends VPP nothing (no build, no rollback, no sweep),
// leaves the vWire unknown (its Disconnect sends nothing either), is
// counted and logged; the operation in VPP meanwhile is unaffected.
func TestAdmissionGiveUpSendsNothing(t *testing.T) {
	m := NewMetrics()
	logs := &recordHandler{}
	n := newTestNode(t, "10.0.0.1", func(c *Config) { c.MaxInFlight = 1; c.Metrics = m; c.Logger = slog.New(logs) })
	before := n.vpp.snapshot()
	warmUp(t, n)
	// What a memif Connect alone sends, for comparison.
	if err := memifConnect(context.Background(), n, "alone"); err != nil {
		t.Fatal(err)
	}
	alone := n.vpp.requests(true)
	if err := n.dp.Disconnect(context.Background(), "alone"); err != nil {
		t.Fatal(err)
	}
	n.vpp.requests(true)

	g := gate(n)
	first := make(chan error, 1)
	go func() { first <- memifConnect(context.Background(), n, "holder") }()
	waitUntil(t, "the first Connect in VPP", func() bool { held, _ := g.counts(); return held == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- memifConnect(ctx, n, "quitter") }()
	waitUntil(t, "the second Connect waiting", func() bool { _, waiting := n.dp.admission.busy(); return waiting == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect whose caller gave up while queued: %v, want context.Canceled", err)
	}
	g.open()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	sent := n.vpp.takeSent()
	if got := mentioning(sent, "quitter"); len(got) > 0 {
		t.Errorf("VPP was sent %d messages about the vWire whose Connect gave up while queued; first %+v", len(got), got[0])
	}
	if names := messageNames(sent); !slices.Equal(names, alone) {
		t.Errorf("VPP was sent %v while one Connect ran and another gave up waiting, want what a Connect alone sends: %v", names, alone)
	}
	if err := n.dp.Disconnect(context.Background(), "quitter"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.requests(true); len(got) != 0 {
		t.Errorf("Disconnect of the vWire whose Connect gave up sent %v, want nothing", got)
	}
	if err := n.dp.Disconnect(context.Background(), "holder"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after the first vWire's Disconnect:\n%s\nwant\n%s", got, before)
	}
	if got := testutil.ToFloat64(m.admAbandoned.WithLabelValues("build")); got != 1 {
		t.Errorf("vwire_vpp_admission_abandoned_total{op=build} = %v, want 1", got)
	}
	if got := logs.logged("Connect gave up waiting for VPP; nothing sent"); len(got) != 1 || got[0]["conn"].String() != "quitter" || got[0]["level"].String() != "DEBUG" {
		t.Errorf("logged %v, want one debug line for conn quitter", got)
	}
}

// warmUp builds and removes one memif vWire: the first one lists VPP's
// memif sockets, which every other waits for.
func warmUp(t testing.TB, n *testNode) {
	t.Helper()
	if err := memifConnect(context.Background(), n, "warm-up"); err != nil {
		t.Fatal(err)
	}
	if err := n.dp.Disconnect(context.Background(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	n.vpp.requests(true)
}

// admissionWaits returns vwire_vpp_admission_wait_seconds{op}.
func admissionWaits(t testing.TB, m *Metrics, op string) *dto.Histogram {
	t.Helper()
	o, err := m.admWait.GetMetricWithLabelValues(op)
	if err != nil {
		t.Fatal(err)
	}
	var d dto.Metric
	if err := o.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram()
}

// mentioning returns the messages whose fields mention s.
func mentioning(msgs []api.Message, s string) []api.Message {
	var out []api.Message
	for _, m := range msgs {
		if strings.Contains(fmt.Sprintf("%+v", m), s) {
			out = append(out, m)
		}
	}
	return out
}

// TestAdmissionOrder: a freed slot goes to the oldest waiting removal,
// then to the oldest waiting build; a newcomer does not pass those waiting
// even when a slot is free for it at that moment; with no bound nobody
// waits.
func TestAdmissionOrder(t *testing.T) {
	a := newAdmission(1, NewMetrics())
	ctx := context.Background()
	hold, err := a.admit(ctx, opBuild)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name string, op opKind, waiting int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := a.admit(ctx, op)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			release()
		}()
		waitUntil(t, name+" waiting", func() bool { _, w := a.busy(); return w == waiting })
	}
	queue("build1", opBuild, 1)
	queue("build2", opBuild, 2)
	queue("remove1", opRemove, 3)
	queue("remove2", opRemove, 4)
	hold()
	hold() // a second call gives nothing back
	wg.Wait()
	if want := []string{"remove1", "remove2", "build1", "build2"}; !slices.Equal(order, want) {
		t.Errorf("admitted in the order %v, want %v", order, want)
	}
	if inFlight, waiting := a.busy(); inFlight != 0 || waiting != 0 {
		t.Errorf("%d in flight and %d waiting at the end, want none", inFlight, waiting)
	}

	free := newAdmission(0, nil)
	for range 100 {
		if _, err := free.admit(ctx, opBuild); err != nil {
			t.Fatal(err)
		}
	}
	if inFlight, waiting := free.busy(); inFlight != 100 || waiting != 0 {
		t.Errorf("no bound: %d in flight, %d waiting; want 100 and none", inFlight, waiting)
	}
}

// TestAdmissionGiveUpFreesItsPlace: a waiter whose context ends leaves the
// queue (the next one gets the slot), and one granted a slot as its
// context ended hands it on unused.
func TestAdmissionGiveUpFreesItsPlace(t *testing.T) {
	m := NewMetrics()
	a := newAdmission(1, m)
	hold, err := a.admit(context.Background(), opBuild)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	quit := make(chan error, 1)
	go func() { _, err := a.admit(ctx, opBuild); quit <- err }()
	waitUntil(t, "a waiter", func() bool { _, w := a.busy(); return w == 1 })
	next := make(chan func(), 1)
	go func() {
		release, err := a.admit(context.Background(), opBuild)
		if err != nil {
			t.Error(err)
		}
		next <- release
	}()
	waitUntil(t, "two waiters", func() bool { _, w := a.busy(); return w == 2 })
	cancel()
	if err := <-quit; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter whose context ended: %v, want context.Canceled", err)
	}
	if inFlight, waiting := a.busy(); inFlight != 1 || waiting != 1 {
		t.Fatalf("%d in flight, %d waiting after one gave up; want 1 and 1", inFlight, waiting)
	}
	hold()
	(<-next)()
	if inFlight, waiting := a.busy(); inFlight != 0 || waiting != 0 {
		t.Errorf("%d in flight and %d waiting at the end, want none", inFlight, waiting)
	}

	// A slot granted as the waiter's context ends (both ready when it
	// looks) is used or handed on, never lost.
	for range 50 {
		hold, _ := a.admit(context.Background(), opBuild)
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan func(), 1)
		go func() {
			release, err := a.admit(ctx, opBuild)
			if err != nil {
				release = func() {}
			}
			got <- release
		}()
		waitUntil(t, "a waiter", func() bool { _, w := a.busy(); return w == 1 })
		cancel()
		hold()
		(<-got)()
		if inFlight, waiting := a.busy(); inFlight != 0 || waiting != 0 {
			t.Fatalf("%d in flight and %d waiting after a waiter gave up as it was granted, want none", inFlight, waiting)
		}
	}
	if got := testutil.ToFloat64(m.admInFlight); got != 0 {
		t.Errorf("vwire_vpp_admission_in_flight = %v at the end, want 0", got)
	}
	if got := testutil.ToFloat64(m.admWaiting.WithLabelValues("build")); got != 0 {
		t.Errorf("vwire_vpp_admission_waiting{op=build} = %v at the end, want 0", got)
	}
}
