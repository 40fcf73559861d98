package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NamePrefix starts the name of every network namespace a World makes:
// vw-<pid>-b-<label>, the pattern of the end-to-end test harness, so that
// either cleans up what a crashed run of the other left.
const NamePrefix = "vw-"

const (
	// commandTimeout bounds each short command (ip, ping).
	commandTimeout = 30 * time.Second
	// stopGrace is how long a process has after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
)

// World is what a bench run builds on the host: network namespaces,
// processes in them and a temporary directory. Close removes all of it, in
// reverse order: processes first, then namespaces, then the directory. It
// never touches anything it did not make.
type World struct {
	Bin string // the vwire binary
	Dir string // state directory (development CA), sockets, logs

	mu         sync.Mutex // guards namespaces, procs, closed
	namespaces []*Netns
	procs      []*Proc
	closed     bool
}

// NewWorld makes an empty world that runs bin, after deleting the
// namespaces of earlier runs whose process is gone.
func NewWorld(bin string) (*World, error) {
	if err := removeStale(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vwb")
	if err != nil {
		return nil, err
	}
	return &World{Bin: bin, Dir: dir}, nil
}

// Close stops every process and deletes every namespace and the
// directory. It is safe to call twice; it returns the first error.
func (w *World) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	procs, namespaces := w.procs, w.namespaces
	w.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		errs = append(errs, namespaces[i].remove())
	}
	if os.Getenv("VWIRE_BENCH_KEEP") == "" {
		errs = append(errs, os.RemoveAll(w.Dir))
	}
	return errors.Join(errs...)
}

// Netns is a named network namespace of a World.
type Netns struct {
	Name  string // vw-<pid>-b-<label>
	Label string
}

// Path is the namespace's file, as the kernel mechanism's inodeURL takes it.
func (n *Netns) Path() string { return "/var/run/netns/" + n.Name }

// Netns makes a namespace with lo up.
func (w *World) Netns(label string) (*Netns, error) {
	n := &Netns{Name: fmt.Sprintf("%s%d-b-%s", NamePrefix, os.Getpid(), label), Label: label}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errors.New("bench: world closed")
	}
	w.mu.Unlock()
	if out, err := run("ip", "netns", "add", n.Name); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	w.mu.Lock()
	w.namespaces = append(w.namespaces, n)
	w.mu.Unlock()
	if _, err := n.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// IP runs `ip -n <ns> args...`.
func (n *Netns) IP(args ...string) (string, error) {
	out, err := run("ip", append([]string{"-n", n.Name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s: ip %s: %v: %s", n.Label, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Exec runs prog inside the namespace and returns its combined output.
func (n *Netns) Exec(ctx context.Context, prog string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, prog}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// remove kills what still runs in the namespace (only processes this run
// started can be there) and deletes it.
func (n *Netns) remove() error {
	if out, err := run("ip", "netns", "pids", n.Name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := run("ip", "netns", "del", n.Name); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
	return nil
}

// removeStale deletes namespaces named by a World or an e2e Lab of a
// process that no longer runs.
func removeStale() error {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, NamePrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		if out, err := run("ip", "netns", "del", name); err != nil {
			return fmt.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	}
	return nil
}

// run runs a short command, bounded by commandTimeout.
func run(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// Proc is a process a World started in one of its namespaces, its stdout
// and stderr in files of the World's directory.
type Proc struct {
	Name   string
	Stdout string
	Stderr string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process is reaped
	err  error         // how it ended, once done is closed
}

// Start runs prog with args inside ns.
func (w *World) Start(ns *Netns, name, prog string, args ...string) (*Proc, error) {
	p := &Proc{
		Name:   name,
		Stdout: filepath.Join(w.Dir, name+".out"),
		Stderr: filepath.Join(w.Dir, name+".log"),
		done:   make(chan struct{}),
	}
	stdout, err := os.Create(p.Stdout)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.Create(p.Stderr)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, prog}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.Env = environ()
	// Should the bench die, its processes die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("bench: world closed")
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns.Label, err)
	}
	w.procs = append(w.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// environ is this process's environment without what would change how a
// vwire process finds its identity or its manager.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "SPIFFE_ENDPOINT_SOCKET", "NSM_CONNECT_TO", "NODE_NAME", "POD_NAME":
		default:
			env = append(env, kv)
		}
	}
	return env
}

func (p *Proc) String() string { return fmt.Sprintf("%s (pid %d)", p.Name, p.cmd.Process.Pid) }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process with SIGKILL and waits until it is reaped.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Stop ends the process: SIGTERM, then SIGKILL after stopGrace.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.Kill()
	}
}

// Log is what the process wrote to stderr so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.Stderr)
	return string(b)
}

// Output is what the process wrote to stdout so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Stdout)
	return string(b)
}

// errExited says a process ended while the bench waited on it.
var errExited = errors.New("process exited")

// WaitLog waits until a line of the process's stderr holds every one of
// substrs.
func (p *Proc) WaitLog(ctx context.Context, timeout time.Duration, substrs ...string) error {
	return poll(ctx, timeout, func() error {
		for _, line := range strings.Split(p.Log(), "\n") {
			all := true
			for _, s := range substrs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return nil
			}
		}
		if p.Exited() {
			return permanent{fmt.Errorf("%s: %w: %v; log:\n%s", p.Name, errExited, p.err, tail(p.Log(), 15))}
		}
		return fmt.Errorf("%s logged no line with %q", p.Name, substrs)
	})
}

// permanent ends a poll at once.
type permanent struct{ error }

// poll calls cond every 20ms until it returns nil or a permanent error,
// ctx ends or timeout passes; it returns cond's last error then.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		var perm permanent
		if err == nil {
			return nil
		}
		if errors.As(err, &perm) {
			return perm.error
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }
