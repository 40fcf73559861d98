package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	StopGrace = 15 * time.Second
	// killWait bounds the wait for a SIGKILLed process to be reaped.
	killWait = 10 * time.Second
	// TailLines is how many lines of each log a failed test prints.
	TailLines = 40
)

// cleanEnv are variables of the test's environment that would change what
// vwire does; every process starts without them.
var cleanEnv = []string{"SPIFFE_ENDPOINT_SOCKET", "NSM_CONNECT_TO", "NODE_NAME", "POD_NAME"}

// Proc is a process the Lab started inside one of its namespaces, with
// stdout and stderr in files of the Lab's directory. It is stopped when the
// test ends (SIGTERM, then SIGKILL after StopGrace), and its logs' tails are
// printed if the test failed.
type Proc struct {
	Name   string
	NS     *Netns
	Args   []string // program and arguments, as run inside the namespace
	Stdout string   // file
	Stderr string   // file

	lab  *Lab
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped; then err is set
	err  error         // how it exited
}

// Start runs the Lab's vwire binary with args inside ns.
func (l *Lab) Start(ns *Netns, name string, args ...string) *Proc {
	l.T.Helper()
	return l.StartProgram(ns, name, l.Bin, args...)
}

// StartProgram runs prog with args inside ns (`ip netns exec`, which
// execs prog: the process's pid is the one Proc signals).
func (l *Lab) StartProgram(ns *Netns, name, prog string, args ...string) *Proc {
	l.T.Helper()
	base := l.logName(name)
	p := &Proc{
		Name:   name,
		NS:     ns,
		Args:   append([]string{prog}, args...),
		Stdout: filepath.Join(l.Dir, base+".out"),
		Stderr: filepath.Join(l.Dir, base+".log"),
		lab:    l,
		done:   make(chan struct{}),
	}
	stdout, err := os.Create(p.Stdout)
	if err != nil {
		l.T.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(p.Stderr)
	if err != nil {
		l.T.Fatal(err)
	}
	defer stderr.Close()

	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, p.Args...)...)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.Env = environ()
	// Should the test binary die, its processes die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		l.T.Fatalf("start %s in %s: %v", name, ns.Label, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.T.Cleanup(func() {
		p.Stop()
		if l.T.Failed() {
			p.dump()
		}
	})
	return p
}

// logName returns a file name base for name, unique in the Lab.
func (l *Lab) logName(name string) string {
	base := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, name)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logNames[base]++
	if n := l.logNames[base]; n > 1 {
		base = fmt.Sprintf("%s-%d", base, n)
	}
	return base
}

func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, c := range cleanEnv {
			drop = drop || k == c
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

func (p *Proc) String() string { return fmt.Sprintf("%s (pid %d in %s)", p.Name, p.Pid(), p.NS.Label) }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end and returns how it
// ended; ok is false when it still runs.
func (p *Proc) Wait(timeout time.Duration) (err error, ok bool) {
	if p.Exited() {
		return p.err, true
	}
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Signal sends sig to the process, unless it has ended.
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		p.cmd.Process.Signal(sig)
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after StopGrace. It returns
// how the process ended (nil for exit status 0) and is a no-op, returning
// the same, once the process has ended.
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.err
	}
	p.Signal(syscall.SIGTERM)
	if err, ok := p.Wait(StopGrace); ok {
		return err
	}
	p.lab.T.Logf("%s did not stop within %v of SIGTERM; killing it", p, StopGrace)
	p.Kill()
	if !p.Exited() {
		return fmt.Errorf("%s: still running after SIGKILL", p)
	}
	return p.err
}

// Kill ends the process with SIGKILL and waits until it is reaped.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	if _, ok := p.Wait(killWait); !ok {
		p.lab.T.Errorf("%s still runs %v after SIGKILL", p, killWait)
	}
}

// Output is what the process wrote to stdout so far.
func (p *Proc) Output() string { return readFile(p.Stdout) }

// Log is what the process wrote to stderr so far.
func (p *Proc) Log() string { return readFile(p.Stderr) }

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dump prints how the process ended and the tails of its logs.
func (p *Proc) dump() {
	t := p.lab.T
	state := "still running"
	if p.Exited() {
		state = "exited"
		if p.err != nil {
			state = p.err.Error()
		}
	}
	t.Logf("=== %s: %s; %s", p, state, strings.Join(p.Args, " "))
	for _, f := range []string{p.Stdout, p.Stderr} {
		if s := readFile(f); strings.TrimSpace(s) != "" {
			t.Logf("--- last %d lines of %s:\n%s", TailLines, f, Tail(s, TailLines))
		}
	}
}

// FindLogLine returns the first line of the process's stderr that holds
// every one of substrs.
func (p *Proc) FindLogLine(substrs ...string) (string, bool) {
	for _, line := range strings.Split(p.Log(), "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			return line, true
		}
	}
	return "", false
}

// ErrExited is returned (wrapped) by waits on a process that has ended.
var ErrExited = errors.New("process exited")

// WaitLogLine waits up to timeout for a line of the process's stderr that
// holds every one of substrs and returns it. It fails the test if none
// comes or the process exits first.
func (p *Proc) WaitLogLine(timeout time.Duration, substrs ...string) string {
	p.lab.T.Helper()
	var line string
	Eventually(p.lab.T, timeout, fmt.Sprintf("%s logs a line with %q", p, substrs), func() error {
		var ok bool
		if line, ok = p.FindLogLine(substrs...); ok {
			return nil
		}
		if p.Exited() {
			return Permanent(fmt.Errorf("%w: %v", ErrExited, p.err))
		}
		return errors.New("no such line yet")
	})
	return line
}
