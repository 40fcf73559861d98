// Package grpcutil holds what every vwire gRPC listener and dialer share:
// address parsing, mTLS credentials from the identity package, keepalives
// and call logging. Nothing here listens in plaintext.
package grpcutil

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// ErrSocketInUse is returned by Listen for a unix socket another process serves.
var ErrSocketInUse = errors.New("another process is serving this socket")

// Addr is a parsed listen or dial address.
type Addr struct {
	Network string // "tcp" or "unix"
	Address string // host:port or socket path
}

// String renders the address as a URL (tcp://host:port, unix:///path).
func (a Addr) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return "tcp://" + a.Address
}

// ParseAddr accepts host:port, :port, tcp://host:port, unix:///path and a
// bare absolute path (a unix socket).
func ParseAddr(s string) (Addr, error) {
	switch {
	case s == "":
		return Addr{}, errors.New("empty address")
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if !filepath.IsAbs(p) {
			return Addr{}, fmt.Errorf("address %q: unix socket path must be absolute", s)
		}
		return Addr{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "/"):
		return Addr{Network: "unix", Address: s}, nil
	case strings.HasPrefix(s, "tcp://"):
		s = strings.TrimPrefix(s, "tcp://")
	case strings.Contains(s, "://"):
		return Addr{}, fmt.Errorf("address %q: want host:port, tcp://host:port or unix:///path", s)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Addr{}, fmt.Errorf("address %q: %w", s, err)
	}
	return Addr{Network: "tcp", Address: s}, nil
}

// Listen opens a listener on addr. A stale unix socket file left by a dead
// process is removed first; its directory is created.
func Listen(addr string) (net.Listener, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if a.Network == "unix" {
		if err := os.MkdirAll(filepath.Dir(a.Address), 0o755); err != nil {
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		if c, err := net.DialTimeout("unix", a.Address, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: %w", a, ErrSocketInUse)
		}
		_ = os.Remove(a.Address)
	}
	l, err := net.Listen(a.Network, a.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	return l, nil
}

// Flow-control windows of every vwire connection, fixed. gRPC's default
// (64 KiB, grown by bandwidth-delay estimation) sends a PING with the
// first DATA of every call on an idle connection and reads its ack: two
// more frames, writes and wake-ups per call on each side, for control
// messages of a few KiB that never fill a window. Fixed windows send none;
// a window only bounds what a peer may send before it is read.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// NewServer returns a gRPC server that only speaks mTLS with src's SVID and
// admits peers that pass authorize.
func NewServer(src identity.Source, authorize tlsconfig.Authorizer, log *slog.Logger, opts ...grpc.ServerOption) *grpc.Server {
	base := []grpc.ServerOption{
		// On unix sockets, file descriptors can travel beside the calls
		// (NSM's grpcfd: a client's netns, an endpoint's socket).
		grpc.Creds(grpcfd.TransportCredentials(identity.ServerCredentials(src, authorize))),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unaryLogger(log)),
		grpc.ChainStreamInterceptor(streamLogger(log)),
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		// Calls run on a few long-lived goroutines whose stacks have
		// grown already, not on a new 8 KiB one each that the TLS, proto
		// and token code grows by copying; when all are busy, gRPC starts
		// a goroutine as it would without them.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}
	return grpc.NewServer(append(base, opts...)...)
}

// Dial returns a client connection to target over mTLS; the server must pass
// authorize. The connection is made lazily, as grpc.NewClient does.
func Dial(target string, src identity.Source, authorize tlsconfig.Authorizer, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	a, err := ParseAddr(target)
	if err != nil {
		return nil, err
	}
	t := a.Address
	if a.Network == "unix" {
		t = "unix://" + a.Address
	} else {
		t = "passthrough:///" + a.Address
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(grpcfd.TransportCredentials(identity.ClientCredentials(src, authorize))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// Peers are on this node or this fabric: after a restart they are
		// back within seconds, so do not wait the default two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second,
		}, MinConnectTimeout: 5 * time.Second}),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}
	cc, err := grpc.NewClient(t, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	return cc, nil
}

// Conn is a client connection that remembers whom it reached (the server's
// SPIFFE ID, from the last TLS handshake) and which of its own SVIDs it
// presented. Path tokens are verified against the certificate a caller
// presented on the connection a call arrives on, so when this process's
// SVID rotates (SPIRE renews keys at half-life), Conn redials before its
// next token is signed: the new handshake carries the new certificate.
type Conn struct {
	target    string
	src       identity.Source
	authorize tlsconfig.Authorizer
	opts      []grpc.DialOption

	peer      atomic.Pointer[spiffeid.ID]
	presented atomic.Pointer[x509.Certificate] // leaf sent in ch's last handshake

	mu     sync.Mutex // guards ch, prev, prevPresented and closed
	ch     *channel
	closed bool
	// prev is the channel an SVID rotation replaced, open for
	// oldConnGrace, and the certificate it presented: a call whose token
	// was signed with that certificate's key before the rotation goes
	// there, where the next hop can verify it.
	prev          *channel
	prevPresented *x509.Certificate
}

// channel is one gRPC channel of a Conn and the calls being started on it:
// a channel that Retry replaces is closed when the last of them returns,
// not under them (a call waiting for the channel to be ready would fail
// with "the client connection is closing", which is no answer of the
// peer's).
type channel struct {
	cc *grpc.ClientConn

	mu      sync.Mutex // guards calls and retired
	calls   int
	retired bool
}

func (ch *channel) leave() {
	ch.mu.Lock()
	ch.calls--
	last := ch.retired && ch.calls == 0
	ch.mu.Unlock()
	if last {
		ch.cc.Close()
	}
}

// retire closes the channel once no call is being started on it.
func (ch *channel) retire() {
	ch.mu.Lock()
	ch.retired = true
	idle := ch.calls == 0
	ch.mu.Unlock()
	if idle {
		ch.cc.Close()
	}
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// DialPeer is Dial for a connection whose server's identity the caller
// needs (to address a path token to it).
func DialPeer(target string, src identity.Source, authorize tlsconfig.Authorizer, opts ...grpc.DialOption) (*Conn, error) {
	c := &Conn{target: target, src: src, authorize: authorize, opts: opts}
	cc, err := c.dial()
	if err != nil {
		return nil, err
	}
	c.ch = &channel{cc: cc}
	return c, nil
}

func (c *Conn) dial() (*grpc.ClientConn, error) {
	capture := func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := c.authorize(id, chains); err != nil {
			return err
		}
		c.peer.Store(&id)
		return nil
	}
	return Dial(c.target, presentedSource{Source: c.src, c: c}, capture, c.opts...)
}

// presentedSource records the SVID a handshake presents.
type presentedSource struct {
	identity.Source
	c *Conn
}

func (s presentedSource) GetX509SVID() (*x509svid.SVID, error) {
	svid, err := s.Source.GetX509SVID()
	if err == nil && len(svid.Certificates) > 0 {
		s.c.presented.Store(svid.Certificates[0])
	}
	return svid, err
}

func (c *Conn) current() *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch.cc
}

// enter returns the current channel with one more call being started on it.
func (c *Conn) enter() *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.ch
	ch.mu.Lock()
	ch.calls++
	ch.mu.Unlock()
	return ch
}

// Invoke implements grpc.ClientConnInterface. A call goes out on a
// connection that presents the current SVID: interceptors that sign path
// tokens run after the connection is chosen.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ch, err := c.choose(ctx)
	if err != nil {
		return err
	}
	defer ch.leave()
	return ch.cc.Invoke(ctx, method, args, reply, opts...)
}

// choose returns the channel for a call, with the call entered on it. A
// call carrying a path token (token.Stamp) goes on the channel that
// presents the certificate whose key signed it, when one does: the SVID
// may have rotated between the signature and the call, and a channel
// redialled with the new certificate would make the token unverifiable.
// Other calls redial first if the SVID rotated.
func (c *Conn) choose(ctx context.Context) (*channel, error) {
	if signer := token.SignedWith(ctx); signer != nil {
		if ch := c.enterPresenting(signer); ch != nil {
			return ch, nil
		}
	}
	if err := c.refresh(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return c.enter(), nil
}

// enterPresenting enters the current or the previous channel if it
// presented cert, and returns it; nil when neither did (or the previous
// one is being closed).
func (c *Conn) enterPresenting(cert *x509.Certificate) *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.presented.Load(); p != nil && p.Equal(cert) {
		ch := c.ch
		ch.mu.Lock()
		ch.calls++
		ch.mu.Unlock()
		return ch
	}
	if c.prev == nil || !c.prevPresented.Equal(cert) {
		return nil
	}
	ch := c.prev
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.retired {
		return nil
	}
	ch.calls++
	return ch
}

// NewStream implements grpc.ClientConnInterface.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// A stream outlives NewStream, but only on a channel that was ready,
	// which Retry does not replace.
	ch, err := c.choose(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.leave()
	return ch.cc.NewStream(ctx, desc, method, opts...)
}

// Retry makes the next call try the peer at once instead of waiting out
// the reconnect backoff that its failures built up: a channel in
// TRANSIENT_FAILURE is replaced by a fresh one (the old one is closed when
// the calls waiting on it have returned), an IDLE one is told to connect.
//
// It does not use grpc-go's ClientConn.ResetConnectBackoff: in v1.85.0
// that walks the channel's subchannel map after releasing the channel's
// lock, so a heal racing with the balancer (a new subchannel) killed the
// process with "concurrent map iteration and map write".
func (c *Conn) Retry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	switch c.ch.cc.GetState() {
	case connectivity.Idle:
		c.ch.cc.Connect()
	case connectivity.TransientFailure:
		cc, err := c.dial()
		if err != nil {
			return // the target parsed before: it cannot fail now; keep the old channel
		}
		old := c.ch
		c.ch = &channel{cc: cc}
		c.presented.Store(nil)
		old.retire()
	}
}

// Target is the address dialled.
func (c *Conn) Target() string { return c.target }

// Close closes the connection; safe to call twice.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.ch.cc.Close()
}

// oldConnGrace is how long a replaced connection stays open for the calls
// (and watch streams) still running on it.
const oldConnGrace = time.Minute

// refresh redials when the SVID presented in the last handshake is no
// longer this process's current one.
func (c *Conn) refresh() error {
	presented := c.presented.Load()
	if presented == nil {
		return nil // not connected yet: the first handshake will use the current SVID
	}
	svid, err := c.src.GetX509SVID()
	if err != nil || len(svid.Certificates) == 0 || svid.Certificates[0].Equal(presented) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.presented.Load() != presented {
		return nil // closed, or another caller already redialled
	}
	cc, err := c.dial()
	if err != nil {
		return fmt.Errorf("redial %s after SVID rotation: %w", c.target, err)
	}
	old := c.ch
	c.ch = &channel{cc: cc}
	c.prev, c.prevPresented = old, presented
	c.presented.Store(nil)
	// This one was connected: its streams (watches) and the calls whose
	// tokens were signed before the rotation go on for a while.
	time.AfterFunc(oldConnGrace, old.retire)
	return nil
}

// peerTimeout bounds how long PeerID waits for a connection.
const peerTimeout = 10 * time.Second

// PeerID waits until the connection is up and returns the server's SPIFFE
// ID. A server that cannot be reached fails it after one fresh attempt
// (not after the caller's whole deadline), so callers can move on.
func (c *Conn) PeerID(ctx context.Context) (spiffeid.ID, error) {
	if err := c.refresh(); err != nil {
		return spiffeid.ID{}, err
	}
	// The usual case, a connection that is up, needs no timer.
	if id := c.peer.Load(); id != nil && c.current().GetState() == connectivity.Ready {
		return *id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	retried := false
	for {
		cc := c.current()
		st := cc.GetState()
		switch st {
		case connectivity.Ready:
			if id := c.peer.Load(); id != nil {
				return *id, nil
			}
		case connectivity.Shutdown:
			if cc == c.current() {
				return spiffeid.ID{}, fmt.Errorf("connect to %s: connection closed", c.target)
			}
			continue // replaced by a concurrent Retry or SVID redial
		case connectivity.TransientFailure:
			// The channel stays in TRANSIENT_FAILURE while it waits out
			// its backoff: give it one fresh attempt, briefly.
			if retried {
				return spiffeid.ID{}, fmt.Errorf("connect to %s: unreachable", c.target)
			}
			retried = true
			c.Retry()
			cc = c.current()
			cc.Connect()
			wctx, wcancel := context.WithTimeout(ctx, time.Second)
			for st = cc.GetState(); st == connectivity.Idle || st == connectivity.Connecting; st = cc.GetState() {
				if !cc.WaitForStateChange(wctx, st) {
					break
				}
			}
			wcancel()
			if st != connectivity.Ready {
				return spiffeid.ID{}, fmt.Errorf("connect to %s: unreachable", c.target)
			}
			continue
		}
		cc.Connect()
		if !cc.WaitForStateChange(ctx, st) {
			return spiffeid.ID{}, fmt.Errorf("connect to %s: %w", c.target, ctx.Err())
		}
	}
}

func unaryLogger(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func streamLogger(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	level := slog.LevelDebug
	if err != nil {
		level = slog.LevelInfo
	}
	if !log.Enabled(ctx, level) {
		return
	}
	peer := ""
	if id, perr := identity.PeerID(ctx); perr == nil {
		peer = id.String()
	}
	log.Log(ctx, level, "grpc call", "method", method, "peer", peer,
		"code", status.Code(err).String(), "duration", time.Since(start), "err", err)
}
