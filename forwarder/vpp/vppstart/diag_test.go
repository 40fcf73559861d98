package vppstart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeAbort is how the fake VPP (VWIRE_FAKE_VPP_ABORT=1) dies once it
// serves: a line on stderr and in its log, then SIGABRT, as a VPP whose
// assertion fails (the shell takes the process over so that the signal's
// default action, not Go's handler, ends it).
func fakeAbort(logFile string) {
	time.Sleep(300 * time.Millisecond)
	fmt.Fprintln(os.Stdout, "vpp[1]: starting")
	fmt.Fprintln(os.Stderr, "vpp[1]: /src/vlib/threads.c:1504 (vlib_worker_thread_barrier_sync_int) assertion `0' fails")
	_ = os.WriteFile(logFile, []byte("2026/12/06 vlib: first\n2026/12/06 vlib: out of main heap\n"), 0o644)
	sh, err := exec.LookPath("sh")
	if err != nil {
		os.Exit(3)
	}
	_ = syscall.Exec(sh, []string{"sh", "-c", `printf 'no newline at the end' >&2; kill -ABRT $$`}, os.Environ())
	os.Exit(3)
}

// TestExitReportOfCrashedVPP: a VPP that dies on its own says how
// (the signal), with the last lines of its output, a last line without
// a newline included, and of its own log, even when nothing logs its
// output (Config.Log nil, as in tests). Before, its output was dropped and
// its exit said "signal: aborted" at most, in a log line nobody kept.
func TestExitReportOfCrashedVPP(t *testing.T) {
	t.Setenv("VWIRE_FAKE_VPP_ABORT", "1")
	p, dir := startFake(t)
	defer p.Stop(DefaultStopTimeout)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the fake VPP did not abort")
	}
	r := p.ExitReport()
	for _, want := range []string{
		fmt.Sprintf("VPP pid %d killed by signal aborted (SIGABRT", p.Pid()),
		"vpp[1]: starting",
		"assertion `0' fails",
		"no newline at the end",
		filepath.Join(dir, "vpp.log"),
		"vlib: out of main heap",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("exit report lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "after Stop") {
		t.Errorf("a crash reported as a Stop:\n%s", r)
	}
	if first, _, _ := strings.Cut(r, "\n"); strings.Contains(first, "---") {
		t.Errorf("first line is not a summary: %q", first)
	}
}

// TestExitReportAfterStop: an exit Stop caused says so.
func TestExitReportAfterStop(t *testing.T) {
	p, _ := startFake(t)
	p.Stop(DefaultStopTimeout)
	if r := p.ExitReport(); !strings.Contains(r, "(after Stop)") || !strings.Contains(r, "no such file") {
		t.Errorf("exit report after Stop (no vpp.log written):\n%s", r)
	}
}

// TestStartReportsEarlyExit: a VPP that exits before it serves fails
// Start with its exit status and its last words.
func TestStartReportsEarlyExit(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vpp")
	script := "#!/bin/sh\necho 'vpp[9]: unknown input bogus' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "vwvs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_, err = Start(context.Background(), Config{Bin: bin, Dir: dir})
	if err == nil {
		t.Fatal("Start of a VPP that exits at once succeeded")
	}
	for _, want := range []string{"exited with status 1", "unknown input bogus"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestDescribeExit(t *testing.T) {
	run := func(script string) error { return exec.Command("sh", "-c", script).Run() }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "exited with status 0"},
		{run("exit 3"), "exited with status 3"},
		{run("kill -SEGV $$"), "killed by signal segmentation fault (SIGSEGV)"},
		{run("kill -KILL $$"), "killed by signal killed (SIGKILL: the OOM killer"},
		{errors.New("wait: no child"), "wait: no child"},
	} {
		if got := DescribeExit(tc.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("DescribeExit(%v) = %q, want it to start with %q", tc.err, got, tc.want)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if got := TailFile(path, 2); !strings.Contains(got, "no such file") {
		t.Errorf("missing file: %q", got)
	}
	os.WriteFile(path, []byte("a\nb\nc\n"), 0o644)
	if got := TailFile(path, 2); got != "b\nc" {
		t.Errorf("TailFile = %q, want \"b\\nc\"", got)
	}
	if got := TailFile(path, 10); got != "a\nb\nc" {
		t.Errorf("TailFile = %q", got)
	}
	os.WriteFile(path, nil, 0o644)
	if got := TailFile(path, 2); got != "(empty)" {
		t.Errorf("empty file: %q", got)
	}
}

// TestSampleSchedOfSleeper: a process asleep is idle, not starved nor
// busy, and its thread is named.
func TestSampleSchedOfSleeper(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(100 * time.Millisecond) // exec'd by then: its name is sleep's
	s, err := SampleSched(context.Background(), cmd.Process.Pid, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Threads) != 1 {
		t.Fatalf("want one thread: %+v", s)
	}
	th := s.Threads[0]
	if th.Name != "sleep" || th.State != "S" || th.Verdict(s.Interval) != "mostly idle" {
		t.Errorf("sleeper sampled as %+v, verdict %q", th, th.Verdict(s.Interval))
	}
	if str := s.String(); !strings.Contains(str, fmt.Sprintf("pid %d over", cmd.Process.Pid)) || !strings.Contains(str, "sleep[") {
		t.Errorf("String() = %q", str)
	}
	if _, err := SampleSched(context.Background(), 1<<30, time.Millisecond); err == nil {
		t.Error("sampled a pid that does not exist")
	}
}

func TestVerdict(t *testing.T) {
	iv := time.Second
	for _, tc := range []struct {
		th   ThreadSched
		want string
	}{
		{ThreadSched{State: "R", Ran: 50 * time.Millisecond, Waited: 900 * time.Millisecond}, "starved"},
		{ThreadSched{State: "R", Ran: 950 * time.Millisecond, Waited: 10 * time.Millisecond}, "busy"},
		{ThreadSched{State: "D", Ran: 0, Waited: 0}, "blocked in the kernel"},
		{ThreadSched{State: "S", Ran: time.Millisecond}, "mostly idle"},
	} {
		if got := tc.th.Verdict(iv); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%+v: verdict %q, want %q", tc.th, got, tc.want)
		}
	}
}
