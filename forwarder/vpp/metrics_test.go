package vpp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/core"
)

// calls is how many calls of msg the histogram holds.
func calls(t testing.TB, m *Metrics, msg string) uint64 {
	t.Helper()
	var out dto.Metric
	if err := m.apiSeconds.WithLabelValues(msg).(prometheus.Metric).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}

// allCalls is how many calls of each message the histogram holds.
func allCalls(t testing.TB, m *Metrics) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for msg, h := range histograms(t, m) {
		out[msg] = h.GetSampleCount()
	}
	return out
}

func apiErrors(m *Metrics, msg, kind string) float64 {
	return testutil.ToFloat64(m.apiErrors.WithLabelValues(msg, kind))
}

// TestAPIMetrics: the calls a Connect, a failing Connect and a Disconnect
// make through the Client land in the latency histogram by message, and the
// failed ones in the error counter by message and kind.
func TestAPIMetrics(t *testing.T) {
	ctx := context.Background()
	m := NewMetrics()
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.Metrics = m })
	if got := calls(t, m, "af_packet_create_v3"); got != 2 {
		t.Errorf("af_packet_create_v3 (the uplink and the KERNEL trunk) recorded %d times, want 2", got)
	}
	was := allCalls(t, m)
	if err := n.dp.Connect(ctx, "ok", conn(memifMech("ok1.sock"), payload.Ethernet), conn(memifMech("ok2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	sent := map[string]uint64{}
	for _, r := range n.vpp.requests(true) {
		sent[r]++
	}
	if sent["memif_create_v2"] != 2 {
		t.Fatalf("the fake saw %d memif_create_v2, want 2", sent["memif_create_v2"])
	}
	now := allCalls(t, m)
	for msg := range now {
		if now[msg] != was[msg] && sent[msg] == 0 {
			t.Errorf("%s recorded, never sent", msg)
		}
	}
	for msg, want := range sent {
		if got := now[msg] - was[msg]; got != want {
			t.Errorf("%s: %d calls recorded, VPP got %d", msg, got, want)
		}
	}

	// VPP refuses the second memif: the error counts as a VPP error, and
	// the rollback's deletes are recorded like any call.
	n.vpp.failNth("memif_create_v2", 2, int32(api.INVALID_VALUE))
	before := calls(t, m, "memif_delete")
	err := n.dp.Connect(ctx, "bad", conn(memifMech("bad1.sock"), payload.Ethernet), conn(memifMech("bad2.sock"), payload.Ethernet))
	if err == nil {
		t.Fatal("Connect succeeded with VPP refusing a memif")
	}
	if got := apiErrors(m, "memif_create_v2", ErrKindVPP); got != 1 {
		t.Errorf("vwire_vpp_api_errors_total{memif_create_v2,vpp_error} = %v, want 1", got)
	}
	if got := calls(t, m, "memif_delete"); got != before+1 {
		t.Errorf("memif_delete recorded %d times after the rollback, was %d", got, before)
	}

	// Dumps are recorded by their request's name.
	dumps := calls(t, m, "sw_interface_dump")
	if err := n.dp.Disconnect(ctx, "ok"); err != nil {
		t.Fatal(err)
	}
	if calls(t, m, "sw_interface_dump") <= dumps {
		t.Error("Disconnect's sw_interface_dump not recorded")
	}

	// A call VPP never answers ends at its deadline: a timeout.
	n.vpp.silence("sw_interface_set_flags")
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := n.dp.vpp.SetInterfaceUp(tctx, 1); err == nil {
		t.Fatal("an unanswered call succeeded")
	}
	if got := apiErrors(m, "sw_interface_set_flags", ErrKindTimeout); got != 1 {
		t.Errorf("vwire_vpp_api_errors_total{sw_interface_set_flags,timeout} = %v, want 1", got)
	}

	// A call on a closed connection: disconnected.
	n.dp.Close()
	if err := n.dp.vpp.SetInterfaceMTU(ctx, 1, 1500); err == nil {
		t.Fatal("a call on a closed connection succeeded")
	}
	if got := apiErrors(m, "sw_interface_set_mtu", ErrKindDisconnected); got != 1 {
		t.Errorf("vwire_vpp_api_errors_total{sw_interface_set_mtu,disconnected} = %v, want 1", got)
	}
	if got := apiErrors(m, "memif_create_v2", ErrKindTimeout) + apiErrors(m, "memif_delete", ErrKindVPP); got != 0 {
		t.Errorf("errors counted under the wrong message or kind: %v", got)
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "vpp retval", err: fmt.Errorf("memif 1: create: %w", api.VPPApiError(api.INVALID_VALUE)), want: ErrKindVPP},
		{name: "deadline", err: fmt.Errorf("x: %w", context.DeadlineExceeded), want: ErrKindTimeout},
		{name: "govpp reply timeout", err: fmt.Errorf("%w 1s", core.ErrReplyTimeout), want: ErrKindTimeout},
		{name: "canceled", err: fmt.Errorf("x: %w", context.Canceled), want: ErrKindCanceled},
		{name: "not connected", err: fmt.Errorf("x: %w", core.ErrNotConnected), want: ErrKindDisconnected},
		{name: "broken pipe", err: fmt.Errorf("write: %w", syscall.EPIPE), want: ErrKindDisconnected},
		{name: "other", err: errors.New("stream closed"), want: ErrKindOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorKind(tc.err); got != tc.want {
				t.Fatalf("ErrorKind(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// TestConnEventsRecord feeds events to the recorder watch uses: each is
// counted by state, sets the state gauge, and is logged with the time since
// the one before.
func TestConnEventsRecord(t *testing.T) {
	m := NewMetrics()
	logs := &recordHandler{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := &connEvents{log: slog.New(logs), m: m, last: t0}
	for _, e := range []core.ConnectionEvent{
		{Timestamp: t0.Add(2 * time.Second), State: core.Connected},
		{Timestamp: t0.Add(7 * time.Second), State: core.NotResponding},
		{Timestamp: t0.Add(9 * time.Second), State: core.Connected},
		{Timestamp: t0.Add(10 * time.Second), State: core.Disconnected, Error: errors.New("EOF")},
	} {
		ev.record(e)
	}
	for state, want := range map[string]float64{"connected": 2, "not_responding": 1, "disconnected": 1, "failed": 0} {
		if got := testutil.ToFloat64(m.connEvents.WithLabelValues(state)); got != want {
			t.Errorf("vwire_vpp_connection_events_total{state=%s} = %v, want %v", state, got, want)
		}
		gauge := 0.0
		if state == "disconnected" {
			gauge = 1
		}
		if got := testutil.ToFloat64(m.connState.WithLabelValues(state)); got != gauge {
			t.Errorf("vwire_vpp_connection_state{state=%s} = %v, want %v", state, got, gauge)
		}
	}
	up, lost := logs.logged("VPP connection up"), logs.logged("VPP connection lost")
	if len(up) != 2 || len(lost) != 2 {
		t.Fatalf("%d up and %d lost lines, want 2 and 2", len(up), len(lost))
	}
	for _, tc := range []struct {
		line  map[string]slog.Value
		state string
		since time.Duration
		level string
	}{
		{up[0], "connected", 2 * time.Second, "INFO"},
		{lost[0], "not_responding", 5 * time.Second, "WARN"},
		{up[1], "connected", 2 * time.Second, "INFO"},
		{lost[1], "disconnected", time.Second, "WARN"},
	} {
		if tc.line["state"].String() != tc.state || tc.line["since_last_event"].Duration() != tc.since || tc.line["level"].String() != tc.level {
			t.Errorf("line %v: want state %s, since_last_event %v, level %s", tc.line, tc.state, tc.since, tc.level)
		}
	}
	if lost[1]["err"].String() != "EOF" {
		t.Errorf("the Disconnected line has err %v", lost[1]["err"])
	}
}

// TestGovppLogger: govpp's logrus lines come out as slog records, its
// health-check misses as structured lines that are counted, its late probes
// (VPP busy with other calls) as information, and its debug lines not at
// all.
func TestGovppLogger(t *testing.T) {
	m := NewMetrics()
	logs := &recordHandler{}
	l := GovppLogger(slog.New(logs), m)
	e := l.WithField("connId", 7)
	e.Warnf("VPP health check probe timed out after %v (%d. timeout)", time.Second, 1)
	e.Warnf("VPP health check probe timed out after %v (%d. timeout)", 250*time.Millisecond, 2)
	e.Warnf("VPP health check probe timing out, but some request on other channel was received %v ago, continue waiting!", 120*time.Millisecond)
	e.Debugf("-->govpp SEND: %s", "control_ping")
	e.Errorf("unable to send reply request: %v", "boom")

	if got := testutil.ToFloat64(m.healthMisses); got != 2 {
		t.Errorf("vwire_vpp_health_check_misses_total = %v, want 2", got)
	}
	misses := logs.logged("VPP health check missed")
	if len(misses) != 2 {
		t.Fatalf("%d miss lines, want 2", len(misses))
	}
	for i, want := range []struct {
		timeout time.Duration
		n       int64
	}{{time.Second, 1}, {250 * time.Millisecond, 2}} {
		got := misses[i]
		if got["timeout"].Duration() != want.timeout || got["misses_in_a_row"].Int64() != want.n ||
			got["connId"].String() != "7" || got["level"].String() != "WARN" {
			t.Errorf("miss line %v, want timeout %v, misses_in_a_row %d, connId 7, WARN", got, want.timeout, want.n)
		}
	}
	late := logs.logged("VPP health check probe late; VPP answers other calls")
	if len(late) != 1 || late[0]["since_last_reply"].Duration() != 120*time.Millisecond || late[0]["level"].String() != "INFO" {
		t.Errorf("late probe lines %v", late)
	}
	if got := logs.logged("-->govpp SEND: control_ping"); len(got) != 0 {
		t.Errorf("govpp's debug line came through: %v", got)
	}
	if got := logs.logged("unable to send reply request: boom"); len(got) != 1 || got[0]["level"].String() != "ERROR" {
		t.Errorf("govpp's error line: %v", got)
	}
}

// TestHealthCheckMissesAndNotResponding drives govpp's real health check
// against a (fake) VPP whose main thread stops answering: each missed
// probe is counted and logged by the logger SetupGovpp installed, the
// NotResponding event is counted and logged, and so is the Connected when
// VPP answers again.
func TestHealthCheckMissesAndNotResponding(t *testing.T) {
	logs := &recordHandler{}
	m := govpp.metrics // where the process's govpp logger counts misses
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.Metrics = m; c.Logger = slog.New(logs) })
	events := func(state string) float64 { return testutil.ToFloat64(m.connEvents.WithLabelValues(state)) }
	connected0, notResponding0 := events("connected"), events("not_responding")
	misses0 := testutil.ToFloat64(m.healthMisses)
	missLines0 := len(govpp.logs.logged("VPP health check missed"))

	n.vpp.stall()
	waitUntilWithin(t, lossNoticedWithin(), "govpp reports VPP not responding", func() bool { return events("not_responding") > notResponding0 })
	if got := testutil.ToFloat64(m.healthMisses) - misses0; got < float64(govpp.health.Threshold) {
		t.Errorf("%v health-check misses counted before NotResponding, want at least %d", got, govpp.health.Threshold)
	}
	if got := len(govpp.logs.logged("VPP health check missed")) - missLines0; got < govpp.health.Threshold {
		t.Errorf("%d miss lines logged, want at least %d", got, govpp.health.Threshold)
	}
	if got := testutil.ToFloat64(m.connState.WithLabelValues("not_responding")); got != 1 {
		t.Errorf("vwire_vpp_connection_state{state=not_responding} = %v, want 1", got)
	}
	lost := logs.logged("VPP connection lost")
	if len(lost) == 0 || lost[0]["state"].String() != "not_responding" || lost[0]["since_last_event"].Duration() <= 0 {
		t.Fatalf("lost lines %v: want one for not_responding with the time since the connect", lost)
	}

	n.vpp.revive()
	waitUntil(t, "govpp reconnects", func() bool { return events("connected") > connected0 })
	if got := testutil.ToFloat64(m.connState.WithLabelValues("connected")); got != 1 {
		t.Errorf("vwire_vpp_connection_state{state=connected} = %v, want 1", got)
	}
	// The event is counted before it is logged: wait for its line.
	waitUntil(t, "the first connect's and the reconnect's up lines", func() bool { return len(logs.logged("VPP connection up")) >= 2 })
}

// TestHealthCheckValidate: the flags' values are checked, each problem in
// one line naming its flag.
func TestHealthCheckValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    HealthCheck
		want string // "" for valid
	}{
		{name: "defaults", h: DefaultHealthCheck()},
		{name: "zero interval", h: HealthCheck{Timeout: time.Second, Threshold: 1}, want: "--vpp-health-interval"},
		{name: "negative timeout", h: HealthCheck{Interval: time.Second, Timeout: -time.Second, Threshold: 1}, want: "--vpp-health-timeout"},
		{name: "zero threshold", h: HealthCheck{Interval: time.Second, Timeout: time.Second}, want: "--vpp-health-threshold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n")):
				t.Fatalf("Validate = %v, want one line naming %s", err, tc.want)
			}
		})
	}
}

// TestSetupGovpp: TestMain's SetupGovpp set govpp's health check, with
// vwire's threshold (misses that declare VPP dead) turned into govpp's (the
// misses it tolerates), and its logger.
func TestSetupGovpp(t *testing.T) {
	if core.HealthCheckProbeInterval != govpp.health.Interval || core.HealthCheckReplyTimeout != govpp.health.Timeout ||
		core.HealthCheckThreshold != govpp.health.Threshold-1 {
		t.Fatalf("govpp health check %v/%v/%d after SetupGovpp(%+v)", core.HealthCheckProbeInterval,
			core.HealthCheckReplyTimeout, core.HealthCheckThreshold, govpp.health)
	}
	if err := SetupGovpp(HealthCheck{}, nil, nil); err == nil {
		t.Fatal("SetupGovpp took an invalid health check")
	}
}

func TestBucketQuantile(t *testing.T) {
	bucket := func(upper float64, cum uint64) *dto.Bucket {
		return &dto.Bucket{UpperBound: &upper, CumulativeCount: &cum}
	}
	count := uint64(100)
	h := &dto.Histogram{SampleCount: &count, Bucket: []*dto.Bucket{
		bucket(0.001, 50), bucket(0.002, 90), bucket(0.004, 100),
	}}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 0.0005}, {0.5, 0.001}, {0.7, 0.0015}, {0.95, 0.003}, {1, 0.004},
	} {
		if got := bucketQuantile(h, tc.q); got < tc.want-1e-12 || got > tc.want+1e-12 {
			t.Errorf("q%v = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := bucketQuantile(&dto.Histogram{}, 0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}

// TestSocketClientLogs: the socket adapter's lines go through the logger
// SetupGovpp installed, here a connect VPP leaves unanswered.
func TestSocketClientLogs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c) // takes sockclnt_create, never answers
	}()
	before := len(govpp.logs.loggedPrefix("Read error: "))
	c := socketclient.NewVppClient(sock)
	c.SetConnectTimeout(50 * time.Millisecond)
	if err := c.Connect(); err == nil {
		t.Fatal("connected to a socket that never answers")
	}
	got := govpp.logs.loggedPrefix("Read error: ")
	if len(got) != before+1 || got[len(got)-1]["logger"].String() != "govpp/socketclient" {
		t.Fatalf("socket adapter lines %v", got)
	}
}
