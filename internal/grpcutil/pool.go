package grpcutil

import (
	"errors"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/identity"
)

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("connection pool closed")

// Pool shares one client connection per target among all calls to it:
// hundreds of vWires to the same next hop use one HTTP/2 connection.
type Pool struct {
	src       identity.Source
	authorize tlsconfig.Authorizer
	opts      []grpc.DialOption

	mu     sync.Mutex // guards conns and closed
	conns  map[string]*grpc.ClientConn
	closed bool
}

// NewPool returns a pool dialing with src's identity; servers must pass authorize.
func NewPool(src identity.Source, authorize tlsconfig.Authorizer, opts ...grpc.DialOption) *Pool {
	return &Pool{src: src, authorize: authorize, opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to target, dialing it on first use.
func (p *Pool) Get(target string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	if cc, ok := p.conns[target]; ok {
		return cc, nil
	}
	cc, err := Dial(target, p.src, p.authorize, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[target] = cc
	return cc, nil
}

// Forget closes and drops the connection to target (a next hop that is gone).
func (p *Pool) Forget(target string) {
	p.mu.Lock()
	cc := p.conns[target]
	delete(p.conns, target)
	p.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
}

// Reset makes the connection to target retry at once instead of waiting out
// its reconnect backoff: the peer is known to be back (it re-registered),
// or a call just failed and the next one should not inherit the wait.
func (p *Pool) Reset(target string) {
	p.mu.Lock()
	cc := p.conns[target]
	p.mu.Unlock()
	if cc != nil {
		cc.ResetConnectBackoff()
	}
}

// Close closes every connection; safe to call twice.
func (p *Pool) Close() error {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
	return nil
}
