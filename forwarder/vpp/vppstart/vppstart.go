// Package vppstart runs a VPP of the forwarder's own: it writes a startup
// configuration into a state directory (the API, CLI and stats sockets live
// there; DPDK is disabled and no hugepages are needed), starts the binary,
// optionally inside a network namespace, waits for the API socket and stops
// the process again. It is what the forwarder uses when no running VPP is
// given to attach to. (NSM's vpphelper does the same for NSM, but pins
// govpp v0.11.0, runs "vpp" from PATH only, needs a vpp group and hugepage
// defaults, and never stops the process; this package is the small part of
// it vwire needs.)
package vppstart

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/vishvananda/netns"
)

// Defaults.
const (
	DefaultBin          = "vpp"
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// DefaultMainHeapSize is VPP's main heap (memory { main-heap-size }):
	// it holds every VPP object vwire makes; about 80 kB a VXLAN vWire
	// with memif ends and 30 kB a WireGuard one on each node, measured on
	// VPP 25.10 (forwarder/vpp/README.md, Node scale).
	DefaultMainHeapSize = "512M"
)

// Config says which VPP to start and where.
type Config struct {
	// Bin is the VPP binary (DefaultBin, found on PATH, when empty).
	Bin string
	// PluginPath is VPP's plugin directory; VPP's built-in default when
	// empty.
	PluginPath string
	// Dir is the state directory: vpp.conf, the sockets and the log go
	// there. Required, and short enough for socket paths (< 90 bytes).
	Dir string
	// NetNSPath runs VPP in that network namespace; the caller's when
	// empty.
	NetNSPath string
	// PollSleepUsec makes VPP's main thread sleep between polls (a VPP
	// that shares its cores); 0 polls flat out.
	PollSleepUsec int
	// MainHeapSize is VPP's main heap size in VPP's notation ("512M",
	// "1G"); DefaultMainHeapSize when empty.
	MainHeapSize string
	// Extra is appended to the configuration as is.
	Extra string
	// Log receives VPP's output, line by line; nil drops it.
	Log *slog.Logger
}

// Process is a running VPP.
type Process struct {
	// APISocket, StatsSocket and CLISocket are the sockets' paths.
	APISocket, StatsSocket, CLISocket string
	// ConfigFile is the startup configuration written.
	ConfigFile string

	dir      string
	out      *lineWriter
	stopping atomic.Bool // Stop was called: an exit then is ours
	cmd      *exec.Cmd
	done     chan struct{}
	err      error // set before done is closed
}

// heapSize is VPP's notation for a size: a number and an optional unit.
var heapSize = regexp.MustCompile(`^[1-9][0-9]*[kKmMgG]?$`)

var confTemplate = template.Must(template.New("vpp.conf").Parse(`unix {
  nodaemon
  cli-listen {{.Dir}}/cli.sock
  log {{.Dir}}/vpp.log
{{- if .PollSleepUsec}}
  poll-sleep-usec {{.PollSleepUsec}}
{{- end}}
}
api-segment {
  prefix {{.Prefix}}
}
socksvr {
  socket-name {{.Dir}}/api.sock
}
statseg {
  socket-name {{.Dir}}/stats.sock
  page-size 4k
}
memory {
  main-heap-size {{.HeapSize}}
  main-heap-page-size 4k
}
buffers {
  buffers-per-numa 16384
  page-size 4k
}
plugins {
{{- if .PluginPath}}
  path {{.PluginPath}}
{{- end}}
  plugin dpdk_plugin.so { disable }
}
{{.Extra}}
`))

// WriteConfig writes the startup configuration for cfg and returns its path.
func WriteConfig(cfg Config) (string, error) {
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return "", fmt.Errorf("vppstart: state directory %q must be an absolute path", cfg.Dir)
	}
	if len(cfg.Dir)+len("/stats.sock") > 100 {
		return "", fmt.Errorf("vppstart: state directory %q is too long for socket paths", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return "", fmt.Errorf("vppstart: %w", err)
	}
	// The shared-memory segment names must not collide between the VPPs
	// of one host (tests run several): derive them from the directory.
	sum := sha256.Sum256([]byte(cfg.Dir))
	heap := cfg.MainHeapSize
	if heap == "" {
		heap = DefaultMainHeapSize
	}
	if !heapSize.MatchString(heap) {
		return "", fmt.Errorf("vppstart: main heap size %q: want a number with an optional k, m or g (512M, 1G)", heap)
	}
	data := struct {
		Config
		Prefix, HeapSize string
	}{cfg, "vwire" + hex.EncodeToString(sum[:4]), heap}
	var buf bytes.Buffer
	if err := confTemplate.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("vppstart: config: %w", err)
	}
	path := filepath.Join(cfg.Dir, "vpp.conf")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("vppstart: %w", err)
	}
	return path, nil
}

// Start writes the configuration, starts VPP and waits until its API socket
// accepts connections, ctx ends, or VPP exits.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	if cfg.Bin == "" {
		cfg.Bin = DefaultBin
	}
	bin, err := exec.LookPath(cfg.Bin)
	if err != nil {
		return nil, fmt.Errorf("vppstart: %w", err)
	}
	conf, err := WriteConfig(cfg)
	if err != nil {
		return nil, err
	}
	p := &Process{
		APISocket:   filepath.Join(cfg.Dir, "api.sock"),
		StatsSocket: filepath.Join(cfg.Dir, "stats.sock"),
		CLISocket:   filepath.Join(cfg.Dir, "cli.sock"),
		ConfigFile:  conf,
		dir:         cfg.Dir,
		out:         &lineWriter{log: cfg.Log, tail: tail{n: outputTail}},
		done:        make(chan struct{}),
	}
	for _, s := range []string{p.APISocket, p.StatsSocket, p.CLISocket} {
		_ = os.Remove(s) // a previous VPP's, which would fool the wait below
	}
	p.cmd = exec.Command(bin, "-c", conf)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// VPP goes when its parent goes, even if we are killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := startIn(cfg.NetNSPath, p.cmd); err != nil {
		return nil, fmt.Errorf("vppstart: start %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.out.flush() // Wait has copied all of VPP's output
		close(p.done)
	}()
	if err := p.waitSocket(ctx); err != nil {
		_ = p.Stop(DefaultStopTimeout)
		return nil, err
	}
	return p, nil
}

// startIn starts cmd in the network namespace at path (the child inherits
// the namespace of the thread that forks it).
func startIn(path string, cmd *exec.Cmd) error {
	if path == "" {
		return cmd.Start()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	startErr := cmd.Start()
	if err := netns.Set(orig); err != nil {
		// This thread stays in the wrong namespace: never unlock it, so
		// the runtime retires it with its goroutine.
		return errors.Join(startErr, fmt.Errorf("return to the original netns: %w", err))
	}
	runtime.UnlockOSThread()
	return startErr
}

func (p *Process) waitSocket(ctx context.Context) error {
	deadline := time.NewTimer(DefaultStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// The socket file exists from bind(), a moment before VPP
		// listens on it: ready is when a connection is accepted.
		if c, err := net.DialTimeout("unix", p.APISocket, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vppstart: waiting for %s: %w", p.APISocket, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("vppstart: %s did not accept a connection within %s", p.APISocket, DefaultStartTimeout)
		case <-p.done:
			return fmt.Errorf("vppstart: vpp exited before its API socket appeared: %s", p.ExitReport())
		case <-tick.C:
		}
	}
}

// Done is closed when VPP has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is why VPP exited; valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Pid is VPP's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop ends VPP: SIGTERM, then SIGKILL after timeout. It waits for the
// process and is safe to call twice.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.stopping.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// lineWriter logs each line written to it and keeps the last ones. VPP's
// stdout and stderr share it: exec.Cmd copies both from one goroutine when
// they are the same writer.
type lineWriter struct {
	log  *slog.Logger
	tail tail
	buf  []byte
}

var _ io.Writer = (*lineWriter)(nil)

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.tail.add(line)
			if w.log != nil {
				w.log.Info(line, "source", "vpp")
			}
		}
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// flush keeps a last line that had no newline (an abort's message may
// not); call it only once nothing writes any more.
func (w *lineWriter) flush() {
	if line := strings.TrimSpace(string(w.buf)); line != "" {
		w.tail.add(line)
		if w.log != nil {
			w.log.Info(line, "source", "vpp")
		}
	}
	w.buf = nil
}
