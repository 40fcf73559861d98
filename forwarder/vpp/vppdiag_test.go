package vpp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.fd.io/govpp/core"
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
