package vppstart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// What a VPP that failed leaves to say why. VPP writes its assertion and
// panic messages (and the signal that ended it) to stderr, and its own log
// (unix { log }) to vpp.log in the state directory, which callers often
// remove with the directory: the Process keeps the last lines of both.

// outputTail is how many lines of VPP's stdout and stderr a Process keeps:
// VPP's signal handler writes two lines a frame of its backtrace after the
// line that names the signal.
const outputTail = 100

// LogTailLines is how many lines of vpp.log an exit report quotes.
const LogTailLines = 30

// DescribeExit says how a process ended, from what exec.Cmd.Wait returned:
// "exited with status 0", "exited with status 1", "killed by signal
// aborted (SIGABRT), core dumped".
func DescribeExit(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err.Error()
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return ee.Error()
	}
	switch {
	case ws.Signaled():
		s := fmt.Sprintf("killed by signal %v (%s)", ws.Signal(), signalName(ws.Signal()))
		if ws.CoreDump() {
			s += ", core dumped"
		}
		return s
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return ee.Error()
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGABRT:
		return "SIGABRT: an assertion or abort(), e.g. out of main heap"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGBUS:
		return "SIGBUS"
	case syscall.SIGKILL:
		return "SIGKILL: the OOM killer, or a Stop past its grace"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return fmt.Sprintf("signal %d", int(s))
}

// TailFile returns the last n lines of the file at path, or a
// parenthesised reason why there are none.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	lines []string
	n     int
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.n {
		t.lines = slices.Delete(t.lines, 0, 1)
	}
	t.lines = append(t.lines, line)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(none)"
	}
	return strings.Join(t.lines, "\n")
}

// LogFile is the path of VPP's own log (unix { log }).
func (p *Process) LogFile() string { return filepath.Join(p.dir, "vpp.log") }

// Output is the last lines VPP wrote to its stdout and stderr.
func (p *Process) Output() string { return p.out.tail.String() }

// ExitReport says how VPP ended and quotes the last lines of its output
// and of its log; valid once Done is closed. Its first line stands alone
// (for a log line's message).
func (p *Process) ExitReport() string {
	how := DescribeExit(p.err)
	if p.stopping.Load() {
		how += " (after Stop)"
	}
	return fmt.Sprintf("VPP pid %d %s\n--- last lines of its output:\n%s\n--- last %d lines of %s:\n%s",
		p.Pid(), how, p.Output(), LogTailLines, p.LogFile(), TailFile(p.LogFile(), LogTailLines))
}

// ThreadSched is how one thread was scheduled over a sample's interval.
type ThreadSched struct {
	TID   int
	Name  string // comm: vpp_main, vpp_wk_0, ...
	State string // at the end of the interval: R running or runnable, S sleeping, D in the kernel uninterruptibly, ...
	// Ran is the time the thread spent on a CPU; Waited the time it was
	// runnable but waited for one (/proc/<pid>/task/<tid>/schedstat).
	Ran, Waited time.Duration
}

// Verdict reads a thread's sample over interval: starved (runnable but
// without a CPU more than half the time), busy (on a CPU most of it),
// blocked (in the kernel, uninterruptibly) or idle (sleeping: waiting for
// work).
func (t ThreadSched) Verdict(interval time.Duration) string {
	switch {
	case t.State == "D":
		return "blocked in the kernel"
	case t.Waited > interval/2:
		return "starved: runnable, waiting for a CPU"
	case t.Ran > interval*3/4:
		return "busy: on a CPU"
	case t.State == "Z" || t.State == "X":
		return "exited"
	}
	return "mostly idle"
}

// SchedSample is how a process's threads were scheduled over an interval.
type SchedSample struct {
	Pid      int
	Interval time.Duration
	Load     string // the host's load averages (1, 5, 15 min) at the end
	Threads  []ThreadSched
}

// String reads the sample in one line.
func (s SchedSample) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d over %v (host load %s):", s.Pid, s.Interval.Round(time.Millisecond), s.Load)
	for _, t := range s.Threads {
		fmt.Fprintf(&b, " %s[%d] %s ran %v waited %v (%s);", t.Name, t.TID, t.State,
			t.Ran.Round(time.Millisecond), t.Waited.Round(time.Millisecond), t.Verdict(s.Interval))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// SampleSched samples how the threads of process pid are scheduled over
// interval (or until ctx ends): whether a VPP that does not answer is
// starved by the host, busy on its own work, blocked in the kernel or
// idle.
func SampleSched(ctx context.Context, pid int, interval time.Duration) (SchedSample, error) {
	before, err := readSched(pid)
	if err != nil {
		return SchedSample{}, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(interval):
	}
	after, err := readSched(pid)
	if err != nil {
		return SchedSample{}, err
	}
	s := SchedSample{Pid: pid, Interval: time.Since(start), Load: loadAvg()}
	for _, a := range after {
		b, ok := before[a.TID]
		if !ok {
			b = ThreadSched{} // a thread born meanwhile: all of it is in the interval
		}
		a.Ran -= b.Ran
		a.Waited -= b.Waited
		s.Threads = append(s.Threads, a)
	}
	slices.SortFunc(s.Threads, func(a, b ThreadSched) int { return a.TID - b.TID })
	return s, nil
}

// readSched reads every thread's cumulative figures.
func readSched(pid int) (map[int]ThreadSched, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vppstart: threads of pid %d: %w", pid, err)
	}
	out := map[int]ThreadSched{}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		t, err := readThread(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // gone meanwhile
		}
		t.TID = tid
		out[tid] = t
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vppstart: pid %d has no threads left", pid)
	}
	return out, nil
}

// readThread reads one thread's name, state and schedstat.
func readThread(dir string) (ThreadSched, error) {
	var t ThreadSched
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return t, err
	}
	// "tid (comm) S ...": comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return t, fmt.Errorf("%s/stat: %q", dir, stat)
	}
	t.Name = string(stat[open+1 : end])
	if f := strings.Fields(string(stat[end+1:])); len(f) > 0 {
		t.State = f[0]
	}
	ss, err := os.ReadFile(filepath.Join(dir, "schedstat"))
	if err != nil {
		return t, err
	}
	f := strings.Fields(string(ss))
	if len(f) < 2 {
		return t, fmt.Errorf("%s/schedstat: %q", dir, ss)
	}
	ran, err1 := strconv.ParseInt(f[0], 10, 64)
	waited, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return t, fmt.Errorf("%s/schedstat: %w", dir, err)
	}
	t.Ran, t.Waited = time.Duration(ran), time.Duration(waited)
	return t, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
