package manager

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/connectivity"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

// The probe loop alone notices a dead local endpoint or forwarder only at
// its next tick, and only after two failed probes: seconds of a dead vWire.
// A socket watch holds one idle gRPC connection (mTLS, HTTP/2) to each local
// endpoint and forwarder; the connection leaves READY the moment the process
// dies or stops serving, and the watch kicks the probe loop, which confirms
// the death with two quick probes and heals.

// confirmDelay separates the two probes that confirm a suspected death.
const confirmDelay = 30 * time.Millisecond

type sockWatches struct {
	mu    sync.Mutex // guards byURL
	byURL map[string]context.CancelFunc
	wg    sync.WaitGroup
	kick  chan struct{} // wakes the probe loop; buffered 1
}

func newSockWatches() *sockWatches {
	return &sockWatches{byURL: map[string]context.CancelFunc{}, kick: make(chan struct{}, 1)}
}

// kickProbe makes the probe loop run now.
func (m *Manager) kickProbe() {
	select {
	case m.socks.kick <- struct{}{}:
	default:
	}
}

// syncWatches watches the socket of every local endpoint and forwarder and
// stops watching those that are gone.
func (m *Manager) syncWatches() {
	m.mu.Lock()
	urls := make(map[string]bool, len(m.endpoints)+len(m.forwarders))
	for _, e := range m.endpoints {
		urls[e.url] = true
	}
	for _, f := range m.forwarders {
		urls[f.url] = true
	}
	m.mu.Unlock()
	w := m.socks
	w.mu.Lock()
	defer w.mu.Unlock()
	for u, cancel := range w.byURL {
		if !urls[u] {
			cancel()
			delete(w.byURL, u)
		}
	}
	if m.ctx.Err() != nil {
		return
	}
	for u := range urls {
		if _, ok := w.byURL[u]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		w.byURL[u] = cancel
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			m.watchSocket(ctx, u)
		}()
	}
}

// watchSocket holds a gRPC connection to url and kicks the probe loop
// whenever it stops being READY.
func (m *Manager) watchSocket(ctx context.Context, url string) {
	cc, err := grpcutil.Dial(url, m.src, identity.AuthorizeTrustDomain(m.src))
	if err != nil {
		return
	}
	defer cc.Close()
	cc.Connect()
	for {
		st := cc.GetState()
		switch st {
		case connectivity.Idle:
			cc.Connect()
		case connectivity.TransientFailure:
			m.kickProbe()
		}
		if !cc.WaitForStateChange(ctx, st) {
			return
		}
		if st == connectivity.Ready {
			m.kickProbe()
		}
	}
}

// stopWatches ends every socket watch and waits for them.
func (m *Manager) stopWatches() {
	w := m.socks
	w.mu.Lock()
	for u, cancel := range w.byURL {
		cancel()
		delete(w.byURL, u)
	}
	w.mu.Unlock()
	w.wg.Wait()
}
