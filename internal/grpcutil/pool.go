package grpcutil

import (
	"context"
	"errors"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

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
	conns  map[string]*Conn
	closed bool
}

// NewPool returns a pool dialing with src's identity; servers must pass authorize.
func NewPool(src identity.Source, authorize tlsconfig.Authorizer, opts ...grpc.DialOption) *Pool {
	return &Pool{src: src, authorize: authorize, opts: opts, conns: map[string]*Conn{}}
}

// Get returns the connection to target, dialing it on first use.
func (p *Pool) Get(target string) (grpc.ClientConnInterface, error) {
	c, err := p.conn(target)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Pool) conn(target string) (*Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	if c, ok := p.conns[target]; ok {
		return c, nil
	}
	c, err := DialPeer(target, p.src, p.authorize, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[target] = c
	return c, nil
}

// PeerID returns the SPIFFE ID of the server at target, connecting first
// if need be (bounded by ctx): the audience of the token a hop signs for it.
func (p *Pool) PeerID(ctx context.Context, target string) (spiffeid.ID, error) {
	c, err := p.conn(target)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return c.PeerID(ctx)
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
// its reconnect backoff (see Conn.Retry): the peer is known to be back (it
// re-registered), or a call just failed and the next one should not
// inherit the wait.
func (p *Pool) Reset(target string) {
	p.mu.Lock()
	cc := p.conns[target]
	p.mu.Unlock()
	if cc != nil {
		cc.Retry()
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
