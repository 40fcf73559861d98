package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/regpath"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/validate"
)

// defaultRegistrationLifetime applies to registrations without an expiry.
const defaultRegistrationLifetime = time.Minute

// localEndpoint is an endpoint that registered through this manager: the
// registry knows it under the manager's URL, the manager keeps its own.
type localEndpoint struct {
	nse      *regapi.NetworkServiceEndpoint // as registered (manager's URL)
	url      string                         // the endpoint's own URL
	expires  time.Time
	sock     *os.File // the endpoint's socket when it passed its descriptor
	failures int      // consecutive failed probes
}

// localForwarder is a forwarder on this node.
type localForwarder struct {
	name     string
	url      string
	labels   map[string]string
	expires  time.Time
	failures int
}

// localNSE is the registration of the local endpoint name (nil if none).
func (m *Manager) localNSE(name string) *regapi.NetworkServiceEndpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ep := m.endpoints[name]; ep != nil {
		return ep.nse
	}
	return nil
}

// sameRegistration tells whether b registers what a did, but for its
// expiry: a refresh, which discovery's watches need not be waited for.
func sameRegistration(a, b *regapi.NetworkServiceEndpoint) bool {
	if a == nil || b == nil {
		return false
	}
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	a.ExpirationTime, b.ExpirationTime = nil, nil
	a.PathIds, b.PathIds = nil, nil // the path of the call, not the registration
	return proto.Equal(a, b)
}

// localEndpoint finds a local endpoint by the name a Request or the
// registry gives it: its own, or name@domain (localByDomain).
func (m *Manager) localEndpoint(name string) *localEndpoint {
	m.mu.Lock()
	ep := m.endpoints[name]
	m.mu.Unlock()
	if ep == nil {
		ep = m.localByDomain(name)
	}
	return ep
}

func (m *Manager) forwarderByName(name string) *localForwarder {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forwarders[name]
}

// forwardersMatching returns the live forwarders whose labels contain sel,
// by name.
func (m *Manager) forwardersMatching(sel map[string]string) []*localForwarder {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*localForwarder
	for _, f := range m.forwarders {
		if f.failures == 0 && registry.IsSubset(sel, f.labels) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b *localForwarder) int { return strings.Compare(a.name, b.name) })
	return out
}

// nsProxy serves the NetworkServiceRegistry to local workloads by passing
// calls to the domain's registry. Each call adds the manager's segment to
// the path and answers with the path in the response header, as NSM's
// registry clients expect (their token policies check it).
type nsProxy Manager

func (p *nsProxy) Register(ctx context.Context, ns *regapi.NetworkService) (*regapi.NetworkService, error) {
	m := (*Manager)(p)
	var reply *regapi.NetworkService
	h, err := m.forwardRegistry(ctx, func(octx context.Context, opts ...grpc.CallOption) (err error) {
		reply, err = m.regNS.Register(octx, ns, opts...)
		return err
	})
	m.lookups.invalidate(ns.GetName()) // also on failure: it may have been stored
	if err != nil {
		return nil, err
	}
	out := proto.Clone(reply).(*regapi.NetworkService)
	out.PathIds = h.IDs()
	return out, nil
}

func (p *nsProxy) Unregister(ctx context.Context, ns *regapi.NetworkService) (*empty.Empty, error) {
	m := (*Manager)(p)
	_, err := m.forwardRegistry(ctx, func(octx context.Context, opts ...grpc.CallOption) error {
		_, err := m.regNS.Unregister(octx, ns, opts...)
		return err
	})
	m.lookups.invalidate(ns.GetName())
	if err != nil {
		return nil, err
	}
	return &empty.Empty{}, nil
}

func (p *nsProxy) Find(q *regapi.NetworkServiceQuery, srv regapi.NetworkServiceRegistry_FindServer) error {
	m := (*Manager)(p)
	if err := m.pathHeaderForFind(srv.Context()); err != nil {
		return err
	}
	stream, err := p.regNS.Find(srv.Context(), q)
	if err != nil {
		return err
	}
	return relay(stream, srv)
}

// forwardRegistry passes a registry call to the registry with the
// manager's segment in the path (call gets the outgoing context and the
// call options to pass), then answers the caller with the path the
// registry returned.
func (m *Manager) forwardRegistry(ctx context.Context, call func(context.Context, ...grpc.CallOption) error) (*regpath.Hop, error) {
	h, err := regpath.Enter(ctx, m.name, m.src.ID(), m.lifetime)
	if err != nil {
		return nil, err
	}
	if err := m.callRegistry(ctx, h, call); err != nil {
		return nil, err
	}
	return h, h.Reply(ctx, m.src, false)
}

// callRegistry makes call to the registry with h's path (signed for the
// registry) and takes the path the registry returns into h.
func (m *Manager) callRegistry(ctx context.Context, h *regpath.Hop, call func(context.Context, ...grpc.CallOption) error) error {
	aud, err := m.regConn.PeerID(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "registry: %v", err)
	}
	octx, err := h.Forward(ctx, m.src, aud)
	if err != nil {
		return err
	}
	var hdr metadata.MD
	if err := call(octx, grpc.Header(&hdr)); err != nil {
		return err
	}
	h.Adopt(hdr)
	return nil
}

// pathHeaderForFind answers a Find with the path at once: NSM's clients
// send none on Find and check none, but the header is there for those
// that do. A path that does not verify is only logged: lookups are
// authorised by the caller's certificate (policy), not by the path.
func (m *Manager) pathHeaderForFind(ctx context.Context) error {
	if !regpath.Carried(ctx) {
		return nil
	}
	h, err := regpath.Enter(ctx, m.name, m.src.ID(), m.lifetime)
	if err != nil {
		m.log.Debug("find: path not verified; answering without one", "err", err)
		return nil
	}
	return h.ReplyStream(ctx, m.src)
}

// relay copies a registry Find stream to the caller until either ends.
func relay[T any](from interface{ Recv() (T, error) }, to interface{ Send(T) error }) error {
	for {
		resp, err := from.Recv()
		if err != nil {
			return eofNil(err)
		}
		if err := to.Send(resp); err != nil {
			return err
		}
	}
}

// nseProxy serves the NetworkServiceEndpointRegistry to local workloads:
// forwarders are kept here, endpoints go to the registry under the
// manager's URL.
type nseProxy Manager

func (p *nseProxy) Register(ctx context.Context, in *regapi.NetworkServiceEndpoint) (*regapi.NetworkServiceEndpoint, error) {
	m := (*Manager)(p)
	if err := validate.Endpoint(in); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "network service endpoint: %v", err)
	}
	h, err := regpath.Enter(ctx, m.name, m.src.ID(), m.lifetime)
	if err != nil {
		return nil, err
	}
	for _, svc := range in.GetNetworkServiceNames() {
		if err := m.policy.MayRegister(h.Origin.String(), svc); err != nil {
			m.log.Warn("registration refused by policy", "workload", h.Origin.String(), "endpoint", in.GetName(), "service", svc, "err", err)
			m.metrics.refusals.WithLabelValues("register").Inc()
			return nil, status.Errorf(codes.PermissionDenied, "%v", err)
		}
	}
	nse := proto.Clone(in).(*regapi.NetworkServiceEndpoint)
	if nse.ExpirationTime == nil {
		nse.ExpirationTime = timestamppb.New(time.Now().Add(defaultRegistrationLifetime))
	}
	if slices.Contains(nse.GetNetworkServiceNames(), forwarder.ServiceName) {
		if _, err := grpcutil.ParseAddr(nse.GetUrl()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "forwarder url: %v", err)
		}
		m.mu.Lock()
		old, known := m.forwarders[nse.Name]
		m.forwarders[nse.Name] = &localForwarder{
			name: nse.Name, url: nse.Url, expires: nse.ExpirationTime.AsTime(),
			labels: nse.GetNetworkServiceLabels()[forwarder.ServiceName].GetLabels(),
		}
		m.mu.Unlock()
		if !known || old.failures > 0 {
			// A (re)started forwarder: do not wait out the backoff that
			// its absence built up, and put back what it carried.
			m.pool.Reset(nse.Url)
			m.log.Info("forwarder registered", "name", nse.Name, "url", nse.Url)
			m.syncWatches()
			name := nse.Name
			m.healAll("forwarder "+name+" is back", true, func(c *connection) bool { return c.forwarder == name })
		}
		if err := h.Reply(ctx, m.src, true); err != nil {
			return nil, err
		}
		nse.PathIds = h.IDs()
		return nse, nil
	}
	var sock *os.File
	if strings.HasPrefix(nse.GetUrl(), "inode://") {
		// An NSM endpoint passes its socket's descriptor beside the call.
		if sock, err = receiveFile(ctx, nse.GetUrl()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "endpoint url %s: %v", nse.GetUrl(), err)
		}
		nse.Url = fmt.Sprintf("unix:///proc/%d/fd/%d", os.Getpid(), sock.Fd())
	}
	if _, err := grpcutil.ParseAddr(nse.GetUrl()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "endpoint url: %v", err)
	}
	own := nse.Url
	nse.Url = m.url
	var reply *regapi.NetworkServiceEndpoint
	var hdr metadata.MD
	aud, err := m.regConn.PeerID(ctx)
	if err == nil {
		var octx context.Context
		if octx, err = h.Forward(ctx, m.src, aud); err != nil {
			return nil, err
		}
		reply, err = m.regNSE.Register(octx, nse, grpc.Header(&hdr))
		if err != nil || !sameRegistration(m.localNSE(nse.GetName()), reply) {
			// Discovery must see it (or what failed to change) before
			// the endpoint hears back.
			m.lookups.invalidate(nse.GetNetworkServiceNames()...)
		}
	} else {
		err = status.Errorf(codes.Unavailable, "registry: %v", err)
	}
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return nil, err
	}
	h.Adopt(hdr)
	if err := h.Reply(ctx, m.src, false); err != nil {
		return nil, err
	}
	m.mu.Lock()
	prev, known := m.endpoints[reply.GetName()]
	ep := &localEndpoint{nse: reply, url: own, expires: reply.GetExpirationTime().AsTime(), sock: sock}
	if known && sock == nil && prev.url == own {
		ep.sock = prev.sock // a refresh without the descriptor: keep the one we have
	} else if known && prev.sock != nil {
		prev.sock.Close()
	}
	m.endpoints[reply.GetName()] = ep
	m.mu.Unlock()
	if !known {
		m.log.Info("endpoint registered", "name", reply.GetName(), "url", own, "services", reply.GetNetworkServiceNames())
		m.syncWatches()
	}
	out := proto.Clone(reply).(*regapi.NetworkServiceEndpoint)
	// The URL the endpoint gave: an inode:// one is mapped back to its
	// socket's path by NSM's sendfd client.
	out.Url = in.GetUrl()
	out.PathIds = h.IDs()
	return out, nil
}

func (p *nseProxy) Unregister(ctx context.Context, nse *regapi.NetworkServiceEndpoint) (*empty.Empty, error) {
	m := (*Manager)(p)
	h, err := regpath.Enter(ctx, m.name, m.src.ID(), m.lifetime)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	_, isFwd := m.forwarders[nse.GetName()]
	delete(m.forwarders, nse.GetName())
	if ep := m.endpoints[nse.GetName()]; ep != nil && ep.sock != nil {
		ep.sock.Close()
	}
	ep, isEP := m.endpoints[nse.GetName()]
	delete(m.endpoints, nse.GetName())
	m.mu.Unlock()
	name := nse.GetName()
	if isFwd {
		m.healAllWithin("forwarder "+name+" unregistered", m.reselectTimeout, func(c *connection) bool { return c.forwarder == name })
		return &empty.Empty{}, h.Reply(ctx, m.src, true)
	}
	if isEP {
		m.healAll("endpoint "+name+" unregistered", false, func(c *connection) bool { return c.endpoint == name && !c.remote })
		// The registry knows it under our URL, not the one the endpoint
		// gives (an inode:// one only means something on our socket).
		nse = proto.Clone(nse).(*regapi.NetworkServiceEndpoint)
		nse.Url = ep.nse.GetUrl()
	}
	err = m.callRegistry(ctx, h, func(octx context.Context, opts ...grpc.CallOption) error {
		_, err := m.regNSE.Unregister(octx, nse, opts...)
		return err
	})
	services := nse.GetNetworkServiceNames()
	if isEP {
		services = append(slices.Clone(services), ep.nse.GetNetworkServiceNames()...)
	}
	m.lookups.invalidate(services...)
	if err != nil {
		return nil, err
	}
	return &empty.Empty{}, h.Reply(ctx, m.src, false)
}

func (p *nseProxy) Find(q *regapi.NetworkServiceEndpointQuery, srv regapi.NetworkServiceEndpointRegistry_FindServer) error {
	m := (*Manager)(p)
	if err := m.pathHeaderForFind(srv.Context()); err != nil {
		return err
	}
	stream, err := p.regNSE.Find(srv.Context(), q)
	if err != nil {
		return err
	}
	return relay(stream, srv)
}

// probeLoop drops local endpoints and forwarders whose registration expired
// or whose socket stopped answering twice in a row, so that selection never
// waits on a dead process.
func (m *Manager) probeLoop(ctx context.Context) {
	defer close(m.done)
	defer m.stopWatches()
	t := time.NewTicker(m.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.socks.kick: // a watched socket closed (sockwatch.go)
		}
		// A first failure is confirmed, or cleared, at once.
		for m.probe(ctx) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(confirmDelay):
			}
		}
		m.syncWatches()
	}
}

// probe probes every local endpoint and forwarder once and drops those
// that failed twice in a row or expired. It reports whether one has failed
// once: a suspect to probe again soon.
func (m *Manager) probe(ctx context.Context) (suspect bool) {
	type item struct{ name, url string }
	m.mu.Lock()
	var eps, fwds []item
	for n, e := range m.endpoints {
		eps = append(eps, item{n, e.url})
	}
	for n, f := range m.forwarders {
		fwds = append(fwds, item{n, f.url})
	}
	m.mu.Unlock()

	now := time.Now()
	alive := func(u string) bool { return !gone(ctx, u, m.probeEvery) }
	for _, e := range eps {
		ok := alive(e.url)
		m.mu.Lock()
		ep := m.endpoints[e.name]
		var gone *localEndpoint
		if ep != nil {
			if ok {
				ep.failures = 0
			} else {
				ep.failures++
				suspect = suspect || ep.failures == 1
			}
			if ep.failures >= 2 || now.After(ep.expires) {
				gone = ep
				delete(m.endpoints, e.name)
				if ep.sock != nil {
					ep.sock.Close()
				}
			}
		}
		m.mu.Unlock()
		if gone != nil {
			m.log.Info("local endpoint gone; unregistering", "name", e.name, "url", e.url, "expired", now.After(gone.expires))
			name := e.name
			m.healAll("endpoint "+name+" is gone", false, func(c *connection) bool { return c.endpoint == name && !c.remote })
			uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := m.regNSE.Unregister(uctx, gone.nse); err != nil {
				m.log.Warn("unregister dead endpoint", "name", e.name, "err", err)
			}
			m.lookups.invalidate(gone.nse.GetNetworkServiceNames()...)
			cancel()
		}
	}
	for _, f := range fwds {
		ok := alive(f.url)
		m.mu.Lock()
		if fw := m.forwarders[f.name]; fw != nil {
			if ok {
				fw.failures = 0
			} else {
				fw.failures++
				suspect = suspect || fw.failures == 1
			}
			if fw.failures >= 2 || now.After(fw.expires) {
				delete(m.forwarders, f.name)
				m.log.Info("forwarder gone", "name", f.name, "url", f.url)
				name := f.name
				defer m.healAllWithin("forwarder "+name+" is gone", m.reselectTimeout, func(c *connection) bool { return c.forwarder == name })
			}
		}
		m.mu.Unlock()
	}
	return suspect
}

// gone tells whether a local process stopped listening at url: its socket
// file is missing or refuses connections. A dial that runs out of time or
// finds the accept queue full says nothing of the kind: on a loaded node the
// dial's goroutine may not even run before its deadline, and treating that
// as a death hid the node's only forwarder from selection ("no forwarder on
// node") and, after a second slow probe, dropped it with its connections.
// A process that hangs still accepts connections (the kernel does), so the
// probe could not tell it from a live one anyway. (reachable, for remote
// peers, still counts a timeout: a remote host may be down.)
func gone(ctx context.Context, url string, timeout time.Duration) bool {
	a, err := grpcutil.ParseAddr(url)
	if err != nil {
		return true
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, a.Network, a.Address)
	if err == nil {
		c.Close()
		return false
	}
	var ne net.Error
	busy := errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EAGAIN) || // a unix socket's accept queue is full
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || // ours, not the peer's
		ctx.Err() != nil // the manager is stopping
	return !busy
}

// reachable tells whether something accepts connections at url.
func reachable(ctx context.Context, url string, timeout time.Duration) bool {
	a, err := grpcutil.ParseAddr(url)
	if err != nil {
		return false
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, a.Network, a.Address)
	if err != nil {
		return strings.Contains(err.Error(), "too many open files") // not the peer's fault
	}
	c.Close()
	return true
}
