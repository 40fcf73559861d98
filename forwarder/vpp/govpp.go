package vpp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/core"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/forwarder/vpp/vppstart"
)

// Health-check defaults. VPP serves its binary API on its main thread, one
// message at a time, and some messages hold that thread for a good part of
// a second; a node building a hundred vWires at once queues hundreds of
// them, and on a loaded host the main thread (with no worker, VPP's only
// thread) gets no CPU for seconds at a time. govpp's own defaults (a probe
// every 1 s, a miss after 250 ms, NotResponding on the third miss in a row)
// declare such a VPP dead after ~2.25 s. A miss counts only when no reply
// at all came within the timeout (govpp waits on while other calls are
// answered), so the threshold is a time of total silence.
//
// What a NotResponding buys is little: a VPP that exits closes its socket
// and the next probe fails at once (Disconnected, whatever these say); a
// hung main thread answers a new connection no better than the old one.
// What it costs is a lot: govpp drops the connection, every call in
// flight then waits for its deadline in vain (callTimeout, 30 s), new calls
// fail until it reconnects, and the restore that follows lists VPP once
// per vWire on a VPP already short of CPU. Five one-second misses (the
// previous default) were seen on a VPP starved at load 31 to 36 on two
// cores, and the moves in flight then missed their bound. So NotResponding
// comes only after 30 s of silence, as long as any call of ours may wait:
// no call a silence fails would have been answered in time, and a hung VPP
// is still reported (every miss is logged and counted before that).
const (
	DefaultHealthInterval  = time.Second
	DefaultHealthTimeout   = time.Second
	DefaultHealthThreshold = 30
)

// replyWait is how long govpp's reader of VPP's socket waits for a
// stream's reader to take a reply when the stream's buffer (100 replies)
// is full, before it drops the reply (core.ReplyChannelTimeout; govpp's
// default is 100 ms). A dump longer than the buffer (every interface of a
// node at scale: thousands) fills it whenever its reader goroutine is not
// scheduled for a moment, which on a loaded host is routine: the dropped
// detail makes the listing short, with no error (a sweep then leaves an
// object in VPP), and a dropped control_ping_reply leaves the dump waiting
// for its deadline. A reader is only ever late, never gone (a stream is
// unregistered when its caller returns), so waiting costs only the wait:
// replies to other calls queue behind it meanwhile. The bound is the
// longest any call of ours waits (callTimeout), as for the health check.
const replyWait = callTimeout

// HealthCheck is how govpp decides that VPP stopped answering.
type HealthCheck struct {
	// Interval is the time between probes (control_ping).
	Interval time.Duration
	// Timeout is how long a probe may wait for its reply before it counts
	// as a miss (govpp waits on while replies to other calls arrive).
	Timeout time.Duration
	// Threshold is the number of misses in a row that make govpp report
	// NotResponding and drop the connection.
	Threshold int
}

// DefaultHealthCheck returns the defaults above.
func DefaultHealthCheck() HealthCheck {
	return HealthCheck{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Threshold: DefaultHealthThreshold}
}

// Validate says what is wrong with h, in one line naming the flag that
// sets it.
func (h HealthCheck) Validate() error {
	switch {
	case h.Interval <= 0:
		return fmt.Errorf("--vpp-health-interval %v: want more than 0", h.Interval)
	case h.Timeout <= 0:
		return fmt.Errorf("--vpp-health-timeout %v: want more than 0", h.Timeout)
	case h.Threshold < 1:
		return fmt.Errorf("--vpp-health-threshold %d: want 1 or more", h.Threshold)
	}
	return nil
}

// SetupGovpp sets what govpp keeps in package variables: its health check
// (h), how long it waits for a late reader of replies (replyWait), and its loggers (core's and the socket adapter's), which from then on writes to log as structured lines
// and counts health-check misses in m. Being govpp's globals, they hold for
// every connection of the process and are read by govpp's goroutines
// without a lock: call SetupGovpp once at start, before the first
// connection (cmd/vwire does, from the forwarder's flags), never while a
// connection is open.
func SetupGovpp(h HealthCheck, log *slog.Logger, m *Metrics) error {
	if err := h.Validate(); err != nil {
		return err
	}
	core.HealthCheckProbeInterval = h.Interval
	core.HealthCheckReplyTimeout = h.Timeout
	// govpp reports NotResponding when its count of misses goes above
	// its threshold.
	core.HealthCheckThreshold = h.Threshold - 1
	core.ReplyChannelTimeout = replyWait
	l := GovppLogger(log, m)
	core.SetLogger(l)
	// The socket adapter logs on its own, among other things each
	// reconnect attempt VPP leaves unanswered ("Read error").
	socketclient.SetLogger(l.WithField("logger", "govpp/socketclient"))
	return nil
}

// GovppLogger returns a logrus logger (what govpp logs with) that writes
// each entry to log as a structured line and counts govpp's health-check
// misses in m (which may be nil). govpp's debug lines (one per message) are
// dropped: the Client logs each call itself.
func GovppLogger(log *slog.Logger, m *Metrics) *logrus.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetFormatter(nopFormatter{})
	l.SetLevel(logrus.InfoLevel)
	l.AddHook(&govppHook{log: log, m: m})
	return l
}

// govppHook turns govpp's logrus entries into slog records.
type govppHook struct {
	log *slog.Logger
	m   *Metrics
}

func (*govppHook) Levels() []logrus.Level { return logrus.AllLevels }

// govpp's health-check lines (core/connection.go, v0.13.0), the only
// record of a miss it keeps: ConnectionEvent says nothing until the
// threshold is passed.
const (
	missPrefix = "VPP health check probe timed out"
	latePrefix = "VPP health check probe timing out, but some request on other channel was received"
)

func (h *govppHook) Fire(e *logrus.Entry) error {
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	level := slogLevel(e.Level)
	attrs := make([]slog.Attr, 0, len(e.Data)+3)
	for _, k := range slices.Sorted(maps.Keys(e.Data)) {
		attrs = append(attrs, slog.Any(k, e.Data[k]))
	}
	msg := e.Message
	switch {
	case strings.HasPrefix(msg, missPrefix):
		h.m.healthMiss()
		var timeout time.Duration
		var n int
		var d string
		if _, err := fmt.Sscanf(msg, missPrefix+" after %s (%d. timeout)", &d, &n); err == nil {
			timeout, _ = time.ParseDuration(d)
			attrs = append(attrs, slog.Duration("timeout", timeout), slog.Int("misses_in_a_row", n))
			msg = "VPP health check missed"
		}
	case strings.HasPrefix(msg, latePrefix):
		var d string
		if _, err := fmt.Sscanf(msg, latePrefix+" %s ago, continue waiting!", &d); err == nil {
			if since, err := time.ParseDuration(d); err == nil {
				// Not a miss: VPP is busy answering other calls.
				attrs = append(attrs, slog.Duration("since_last_reply", since))
				msg = "VPP health check probe late; VPP answers other calls"
				level = slog.LevelInfo
			}
		}
	}
	h.log.LogAttrs(ctx, level, msg, attrs...)
	return nil
}

func slogLevel(l logrus.Level) slog.Level {
	switch {
	case l <= logrus.ErrorLevel:
		return slog.LevelError
	case l == logrus.WarnLevel:
		return slog.LevelWarn
	case l == logrus.InfoLevel:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// nopFormatter spares logrus formatting entries that only the hook reads.
type nopFormatter struct{}

func (nopFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// vppSchedSample is how long the forwarder watches a VPP that stopped
// answering before it says what VPP's threads were doing.
const vppSchedSample = time.Second

// diagnoseVPP logs, in the background, why VPP went away or stopped
// answering (state is govpp's event): a VPP of ours that exited is
// reported by superviseVPP (how it ended, the tail of its output and
// log); for one that still runs (ours, or the one attached to, found as
// the peer of its API socket) the forwarder samples how its threads are
// scheduled for a second: starved by the host, busy on its own work,
// blocked in the kernel, or idle (then its silence is not CPU). It waits
// for nothing and is bounded by ctx (the dataplane's life).
func (d *Dataplane) diagnoseVPP(ctx context.Context, state core.ConnectionState) {
	d.mu.Lock()
	proc := d.proc
	d.mu.Unlock()
	sock := d.apiSocket
	if proc == nil && sock == "" {
		return // a test's adapter: no process to look at
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		pid := 0
		if proc != nil {
			select {
			case <-proc.Done():
				return // superviseVPP reports it
			case <-time.After(100 * time.Millisecond): // a closed socket comes a moment before the exit
			case <-ctx.Done():
				return
			}
			pid = proc.Pid()
		} else {
			var err error
			if pid, err = socketPeerPid(sock); err != nil {
				d.log.Warn("VPP "+stateName(state)+": its process not found", "err", err)
				return
			}
		}
		s, err := vppstart.SampleSched(ctx, pid, vppSchedSample)
		if err != nil {
			d.log.Warn("VPP "+stateName(state)+": its threads not sampled", "pid", pid, "err", err)
			return
		}
		d.log.Warn("VPP "+stateName(state)+": its threads over the next second", "pid", pid, "sched", s.String())
	}()
}

// socketPeerPid is the pid of the process listening on the unix socket at
// path (SO_PEERCRED answers from the kernel, whether or not the listener
// accepts). 0 means the listener is in a pid namespace this process does
// not see (a VPP container apart).
func socketPeerPid(path string) (int, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("SO_PEERCRED on %s: %w", path, credErr)
	}
	if cred.Pid == 0 {
		return 0, fmt.Errorf("the listener on %s is in another pid namespace", path)
	}
	return int(cred.Pid), nil
}
