package vpp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"go.fd.io/govpp/binapi/vlib"
)

// TestDiagnoseAttachedVPP: when the connection to an attached VPP is lost
// or VPP stops answering, the forwarder finds VPP's process as the
// listener of its API socket and logs how its threads were scheduled
// (starved, busy, blocked or idle). Here the "VPP" is this test process,
// listening on a unix socket. Before, the event's log line said nothing of
// why.
func TestDiagnoseAttachedVPP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := &recordHandler{}
	d := &Dataplane{log: slog.New(h), apiSocket: sock}
	d.diagnoseVPP(context.Background(), core.NotResponding)
	d.wg.Wait()
	recs := h.loggedPrefix("VPP ")
	if len(recs) != 1 {
		t.Fatalf("want one record about VPP, got %v", recs)
	}
	r := recs[0]
	if pid := r["pid"].Int64(); pid != int64(os.Getpid()) {
		t.Errorf("pid %d, want the listener's, %d", pid, os.Getpid())
	}
	sched := r["sched"].String()
	if !strings.Contains(sched, fmt.Sprintf("pid %d over 1", os.Getpid())) || !strings.Contains(sched, "host load") || !strings.Contains(sched, "ran ") {
		t.Errorf("sched = %q", sched)
	}
}

// TestDiagnoseGoneVPP: a socket nobody listens on any more is said so,
// with the error, not a sample of some other process.
func TestDiagnoseGoneVPP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	h := &recordHandler{}
	d := &Dataplane{log: slog.New(h), apiSocket: sock}
	d.diagnoseVPP(context.Background(), core.Disconnected)
	d.wg.Wait()
	recs := h.loggedPrefix("VPP ")
	if len(recs) != 1 || !strings.Contains(recs[0]["err"].String(), "no such file") {
		t.Fatalf("records: %v", recs)
	}
	if _, ok := recs[0]["sched"]; ok {
		t.Errorf("sampled a process for a socket nobody listens on: %v", recs[0])
	}
}

// TestDiagnoseWithoutVPPProcess: a dataplane on a test's adapter (no
// socket, no process) logs nothing and starts nothing.
func TestDiagnoseWithoutVPPProcess(t *testing.T) {
	h := &recordHandler{}
	d := &Dataplane{log: slog.New(h)}
	d.diagnoseVPP(context.Background(), core.NotResponding)
	d.wg.Wait()
	if recs := h.loggedPrefix("VPP "); len(recs) != 0 {
		t.Fatalf("records: %v", recs)
	}
}

// TestVPPExitReported (real VPP): a VPP of the forwarder's that dies is
// logged with how it died (the signal) and the last lines of its output
// and its own log, before it is started again.
func TestVPPExitReported(t *testing.T) {
	needVPP(t)
	h := &recordHandler{}
	dp := startNode(t, newNS(t, "node"), "", func(c *Config) { c.Logger = slog.New(h) })
	dp.mu.Lock()
	pid := dp.proc.Pid()
	dp.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	var rec map[string]slog.Value
	eventually(t, 60*time.Second, func() error {
		recs := h.logged("VPP exited; starting it again")
		if len(recs) == 0 {
			return fmt.Errorf("no exit logged")
		}
		rec = recs[0]
		return nil
	})
	if exit := rec["exit"].String(); !strings.HasPrefix(exit, "killed by signal") && !strings.HasPrefix(exit, "exited with status") {
		t.Errorf("exit = %q", exit)
	}
	// VPP 25.10 writes its signal handler's backtrace to stderr; its
	// own log holds its start.
	if out := rec["output"].String(); !strings.Contains(out, "received signal SIGABRT") {
		t.Errorf("output = %q", out)
	}
	if tail := rec["log_tail"].String(); !strings.Contains(tail, fmt.Sprintf("Start: PID %d", pid)) {
		t.Errorf("log tail = %q", tail)
	}
	t.Logf("exit %q\noutput:\n%s\nlog tail:\n%s", rec["exit"], rec["output"], rec["log_tail"])
}

// keepHandler passes records on to next and keeps the last warnings and
// errors whatever next does with them (tests discard their dataplanes'
// logs unless VWIRE_TEST_LOG is set), for a failed test to print: a VPP
// that died and was restarted mid-test is otherwise seen by nobody.
type keepHandler struct {
	next  slog.Handler
	keep  *keptRecords
	attrs []slog.Attr // from WithAttrs
}

type keptRecords struct {
	mu    sync.Mutex
	lines []string
}

const keptMax = 50

func newKeepHandler(next slog.Handler) *keepHandler {
	return &keepHandler{next: next, keep: &keptRecords{}}
}

func (h *keepHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *keepHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
		for _, a := range h.attrs {
			fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		}
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
			return true
		})
		h.keep.mu.Lock()
		if len(h.keep.lines) == keptMax {
			h.keep.lines = h.keep.lines[1:]
		}
		h.keep.lines = append(h.keep.lines, b.String())
		h.keep.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *keepHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &keepHandler{next: h.next.WithAttrs(as), keep: h.keep, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *keepHandler) WithGroup(name string) slog.Handler {
	return &keepHandler{next: h.next.WithGroup(name), keep: h.keep, attrs: h.attrs}
}

func (h *keepHandler) String() string {
	h.keep.mu.Lock()
	defer h.keep.mu.Unlock()
	return strings.Join(h.keep.lines, "\n")
}

// diagShows are the VPP CLI commands a failed test quotes: its threads,
// its API rings (a full ring is a VPP that cannot queue replies), its
// clients, its main heap and buffers, and the Unix errors it met.
var diagShows = []string{"show threads", "show api ring-stats", "show api clients", "show memory main-heap", "show buffers", "show unix errors"}

// reportVPPOnFailure, when t has failed, logs the dataplane's last
// warnings and errors and the state of its VPP: how it ended if it
// exited; otherwise how its threads are scheduled over a second and, if
// it answers, diagShows.
func reportVPPOnFailure(t testing.TB, dp *Dataplane, kept *keepHandler) {
	if !t.Failed() {
		return
	}
	if s := kept.String(); s != "" {
		t.Logf("dataplane's last warnings and errors:\n%s", s)
	}
	dp.mu.Lock()
	proc := dp.proc
	dp.mu.Unlock()
	if proc == nil {
		return
	}
	select {
	case <-proc.Done():
		t.Logf("%s", proc.ExitReport())
		return
	default:
	}
	if s, err := vppstart.SampleSched(context.Background(), proc.Pid(), time.Second); err != nil {
		t.Logf("VPP pid %d: %v", proc.Pid(), err)
	} else {
		t.Logf("VPP %s", s)
	}
	var b strings.Builder
	for _, cmd := range diagShows {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		reply, err := vlib.NewServiceClient(dp.conn).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "### %s: %v (VPP does not answer; no more shows)\n", cmd, err)
			break
		}
		fmt.Fprintf(&b, "### %s\n%s", cmd, reply.Reply)
	}
	t.Logf("VPP pid %d (%s), still running:\n%s", proc.Pid(), proc.APISocket, b.String())
}

// TestKeepHandler: warnings and errors are kept, the last keptMax of them,
// with their attributes, whatever the next handler drops; the rest pass.
func TestKeepHandler(t *testing.T) {
	rec := &recordHandler{}
	h := newKeepHandler(rec)
	log := slog.New(h).With("node", "n1")
	log.Info("started")
	for i := range keptMax + 3 {
		log.Warn("miss", "i", i)
	}
	log.Error("VPP exited", "exit", "killed by signal aborted")
	kept := strings.Split(h.String(), "\n")
	if len(kept) != keptMax {
		t.Fatalf("kept %d lines, want %d", len(kept), keptMax)
	}
	if last := kept[len(kept)-1]; !strings.Contains(last, `ERROR VPP exited node="n1" exit="killed by signal aborted"`) {
		t.Errorf("last kept: %q", last)
	}
	if strings.Contains(h.String(), "started") || strings.Contains(h.String(), `i="3"`) {
		t.Errorf("kept info or the oldest warnings:\n%s", h.String())
	}
	if n := len(rec.logged("started")) + len(rec.logged("miss")); n != keptMax+4 {
		t.Errorf("next handler got %d records, want %d", n, keptMax+4)
	}
	discard := newKeepHandler(slog.DiscardHandler)
	slog.New(discard).Error("gone", "err", "x")
	if !strings.Contains(discard.String(), "gone") {
		t.Error("an error the next handler discards is not kept")
	}
}
