package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/internal/clock"
	"github.com/vwire/vwire/internal/connpath"
	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/keyedlock"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/mechanisms"
)

// Defaults.
const (
	DefaultMaxTokenLifetime = 10 * time.Minute
	// cleanupTimeout bounds undo work, which never runs on the caller's
	// context (it may be the one that expired).
	cleanupTimeout = 15 * time.Second
	// closeNextTimeout bounds the Close of a next hop whose answer could
	// not be used: it runs beside the failed Request, which does not wait
	// for it (the next hop may wait on a descriptor it never gets).
	closeNextTimeout = 5 * time.Second
)

// Config configures a Forwarder.
type Config struct {
	// Name is this hop's name in connection paths; unique in the mesh.
	Name      string
	Dataplane Dataplane
	// Source is this forwarder's identity: it signs its path tokens.
	Source identity.Source
	// Pool dials next hops (endpoints, remote managers) with this
	// forwarder's identity.
	Pool             *grpcutil.Pool
	MaxTokenLifetime time.Duration
	// Clock is the time connections expire on (the real one when nil).
	Clock clock.Clock
	// PublicIP is the tunnel address other registry domains reach this
	// node at (--public-ip); unset, they use the tunnel address.
	PublicIP netip.Addr
	Logger   *slog.Logger
}

// Forwarder serves networkservice.NetworkService for its manager.
type Forwarder struct {
	name     string
	dp       Dataplane
	src      identity.Source
	tokens   *token.Cache // tokens signed, verified and read (see token.Cache)
	pool     *grpcutil.Pool
	lifetime time.Duration
	clock    clock.Clock // connection expiry
	log      *slog.Logger

	publicIP      netip.Addr
	publicIsLocal bool // this host holds publicIP: tunnels bind to it

	locks keyedlock.Locker
	mu    sync.Mutex // guards conns
	conns map[string]*vwire
	// cleanups are Closes of unusable next hops still running.
	cleanups sync.WaitGroup
	// closing holds, by connection id, one channel per such Close still
	// running, closed when it ends (see waitCloses); guarded by mu.
	closing map[string][]chan struct{}
}

// vwire is the forwarder's state for one connection, keyed by its own
// segment id.
type vwire struct {
	id      string
	caller  string // SPIFFE ID of the manager that asked for it
	nextHop string
	remote  bool
	cross   crossing
	in      *networkservice.Connection // as returned to the manager
	out     *networkservice.Connection // as the next hop returned it
	files   fileSet                    // descriptors the next hop passed, by the URLs in out
	expires time.Time
	timer   clock.Timer
}

// New returns a Forwarder for cfg.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Name == "" || cfg.Dataplane == nil || cfg.Pool == nil || cfg.Source == nil {
		return nil, errors.New("forwarder: name, dataplane, source and pool are required")
	}
	f := &Forwarder{tokens: token.NewCache(), name: cfg.Name, dp: cfg.Dataplane, src: cfg.Source, pool: cfg.Pool, lifetime: cfg.MaxTokenLifetime, clock: clock.Or(cfg.Clock), log: cfg.Logger, conns: map[string]*vwire{}, closing: map[string][]chan struct{}{}}
	if f.lifetime <= 0 {
		f.lifetime = DefaultMaxTokenLifetime
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if cfg.PublicIP.IsValid() {
		f.publicIP, f.publicIsLocal = cfg.PublicIP.Unmap(), HostHas(cfg.PublicIP)
		f.log.Info("public address for vWires to other registry domains", "public_ip", f.publicIP, "on_this_host", f.publicIsLocal)
	}
	return f, nil
}

// Register adds the NetworkService to a gRPC server.
func (f *Forwarder) Register(g *grpc.Server) { networkservice.RegisterNetworkServiceServer(g, f) }

// Request builds or refreshes one vWire. Its steps, in order:
// validate → path → serialise → incoming mechanism → offers → next hop →
// build → remember → reply.
func (f *Forwarder) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	nextHop, remote, cross, err := validate(ctx, req)
	if err != nil {
		return nil, err
	}
	conn := req.GetConnection() // decoded for this call alone: ours to change
	hop, err := connpath.Enter(conn, f.name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "path: %v", err)
	}
	caller, err := f.tokens.Admit(ctx, conn, hop.PrevIndex, f.src.ID())
	if err != nil {
		return nil, err
	}
	unlock := f.locks.Lock(hop.ID())
	defer unlock()
	expires := connpath.Expiry(hop.Prev(conn), f.clock.Now(), f.lifetime)
	connpath.SetExpires(hop.Segment, expires)
	old := f.get(hop.ID())
	if old != nil && old.caller != caller.String() {
		return nil, status.Errorf(codes.PermissionDenied, "connection %s belongs to %s, not %s", hop.ID(), old.caller, caller)
	}

	if err := f.waitCloses(ctx, hop.ID()); err != nil {
		return nil, err
	}
	in, err := f.acceptIncoming(ctx, hop.ID(), conn, req.GetMechanismPreferences(), old)
	if err != nil {
		return nil, err
	}
	if cross.prev {
		in = f.advertise(in, paramDstIP)
	}
	offers, err := f.offers(ctx, hop.ID(), conn, remote, old)
	if err != nil {
		return nil, err
	}
	if cross.next {
		for i, o := range offers {
			offers[i] = f.advertise(o, paramSrcIP)
		}
	}
	// fresh: the next hop has no connection of ours yet, so an answer we
	// cannot use is ours to close there.
	fresh := old == nil || old.nextHop != nextHop
	var have fileSet
	if !fresh {
		have = old.files
	}
	out, local, files, err := f.callNext(ctx, conn, hop, offers, nextHop, cross.next, fresh, have)
	if err != nil {
		f.log.Info("next hop refused", "conn", hop.ID(), "service", conn.GetNetworkService(), "next_hop", nextHop, "err", err)
		if old == nil {
			// Release what Accept and Offer reserved (VNIs, keys).
			f.undo(ctx, hop.ID(), nil, "", false)
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs(TrailerFailedHop, "next"))
		return nil, status.Errorf(status.Code(err), "next hop %s: %s", hopName(conn, nextHop, remote), status.Convert(err).Message())
	}

	// The incoming connection as this node terminates it: our mechanism,
	// and everything the endpoint decided.
	conn.Mechanism = in
	conn.Context = out.GetContext()
	// The path as the next hop answered it, kept in out too: its segments
	// are shared, never changed, but for our own, which gets our counters.
	conn.Path = connpath.Shallow(out.GetPath())
	conn.Path.PathSegments = slices.Clone(conn.Path.PathSegments)
	conn.Path.PathSegments[hop.Index] = connpath.Shallow(conn.Path.PathSegments[hop.Index])
	conn.Path.Index = uint32(hop.Index)
	conn.NetworkServiceEndpointName = out.GetNetworkServiceEndpointName()
	conn.State = networkservice.State_UP
	start := time.Now()
	if err := f.connect(ctx, hop.ID(), conn, local, cross); err != nil {
		f.log.Error("dataplane connect failed", "conn", hop.ID(), "service", conn.GetNetworkService(), "err", err)
		if fresh {
			// What the next hop built for us is ours to close.
			f.closeNextAsync(ctx, hop.ID(), out, nextHop, files)
		} else {
			for u, fl := range files {
				if old.files[u] != fl {
					fl.Close()
				}
			}
		}
		f.undo(ctx, hop.ID(), nil, "", old != nil && old.nextHop != nextHop)
		return nil, status.Errorf(dataplaneCode(err), "dataplane: %v", err)
	}
	if f.log.Enabled(ctx, slog.LevelDebug) {
		f.log.Debug("vWire built", "conn", hop.ID(), "service", conn.GetNetworkService(), "in", in.GetType(), "out", out.GetMechanism().GetType(), "took", time.Since(start), "refresh", old != nil)
	}
	if mp, ok := f.dp.(interface {
		Metrics(id string) map[string]string
	}); ok {
		// The dataplane's counters for this vWire travel in our segment.
		conn.Path.PathSegments[hop.Index].Metrics = mp.Metrics(hop.ID())
	}
	if old != nil && old.nextHop != nextHop {
		// Rerouted: the old next hop's part of the path is no longer ours.
		f.closeNext(ctx, old.out, old.nextHop, old.files)
		old.files.close()
	}
	// conn is kept as it is from here on; the caller's answer shares all
	// but its own fields and index with it.
	f.remember(&vwire{id: hop.ID(), caller: caller.String(), nextHop: nextHop, remote: remote, cross: cross, in: conn, out: out, files: files, expires: expires})
	reply := connpath.View(conn)
	connpath.Leave(reply, hop)
	return reply, nil
}

// hopName names the next hop in errors: a local endpoint by its name (its
// URL may be a descriptor's path), a remote manager by its URL.
func hopName(conn *networkservice.Connection, nextHop string, remote bool) string {
	if name := conn.GetNetworkServiceEndpointName(); name != "" && !remote {
		return fmt.Sprintf("endpoint %s at %s", name, nextHop)
	}
	return nextHop
}

func validate(ctx context.Context, req *networkservice.NetworkServiceRequest) (nextHop string, remote bool, cross crossing, err error) {
	conn := req.GetConnection()
	switch {
	case conn == nil:
		return "", false, cross, status.Error(codes.InvalidArgument, "request has no connection")
	case conn.GetNetworkService() == "":
		return "", false, cross, status.Error(codes.InvalidArgument, "connection.network_service: must not be empty")
	case len(req.GetMechanismPreferences()) == 0:
		return "", false, cross, status.Error(codes.InvalidArgument, "mechanism_preferences: the previous hop offered no mechanism")
	}
	for i, m := range req.GetMechanismPreferences() {
		if err := mechanisms.ValidateOffer(m); err != nil {
			return "", false, cross, status.Errorf(codes.InvalidArgument, "mechanism_preferences[%d]: %v", i, err)
		}
	}
	// Looked up one by one: FromIncomingContext would copy all of the
	// call's metadata, tokens included, for these three keys.
	hops := metadata.ValueFromIncomingContext(ctx, MDNextHop)
	if len(hops) != 1 || hops[0] == "" {
		return "", false, cross, status.Errorf(codes.InvalidArgument, "metadata %s: the manager must name the next hop", MDNextHop)
	}
	isTrue := func(key string) bool {
		v := metadata.ValueFromIncomingContext(ctx, key)
		return len(v) == 1 && v[0] == "true"
	}
	remote = isTrue(MDNextHopRemote)
	cross = crossing{next: remote && isTrue(MDNextHopInterdomain), prev: isTrue(MDPrevHopInterdomain)}
	return hops[0], remote, cross, nil
}

// connect has the dataplane build the vWire with tunnel addresses it can
// bind (see advertise).
func (f *Forwarder) connect(ctx context.Context, id string, in, out *networkservice.Connection, cross crossing) error {
	if cross.prev {
		in = proto.Clone(in).(*networkservice.Connection)
		in.Mechanism = f.bindable(in.GetMechanism(), paramDstIP)
	}
	if cross.next {
		out = proto.Clone(out).(*networkservice.Connection)
		out.Mechanism = f.bindable(out.GetMechanism(), paramSrcIP)
	}
	return f.dp.Connect(ctx, id, in, out)
}

// acceptIncoming keeps the mechanism of a refreshed connection when the
// previous hop still offers its type with its own side as agreed (its
// parameters, e.g. a VNI, must not change under a live vWire); otherwise
// the dataplane chooses. (A previous hop that restarted may offer its side
// anew: a userspace WireGuard device's key goes with its process.)
func (f *Forwarder) acceptIncoming(ctx context.Context, id string, conn *networkservice.Connection, prefs []*networkservice.Mechanism, old *vwire) (*networkservice.Mechanism, error) {
	if old != nil {
		for _, p := range prefs {
			if p.GetType() == old.in.GetMechanism().GetType() && sameOfferingSide(p, old.in.GetMechanism()) {
				return old.in.GetMechanism(), nil
			}
		}
	}
	m, err := f.dp.Accept(ctx, id, conn, prefs)
	if err != nil {
		if errors.Is(err, ErrNoMechanism) {
			return nil, status.Errorf(codes.InvalidArgument, "mechanism_preferences: %v", err)
		}
		return nil, status.Errorf(codes.Internal, "dataplane accept: %v", err)
	}
	return m, nil
}

// sameOfferingSide reports whether an offer names the offering side (the
// src_ parameters: address, port, public key) as the agreed mechanism m
// does.
func sameOfferingSide(offer, m *networkservice.Mechanism) bool {
	for k, v := range offer.GetParameters() {
		if strings.HasPrefix(k, "src_") && m.GetParameters()[k] != v {
			return false
		}
	}
	return true
}

// offers returns what to offer the next hop; a refresh offers the
// mechanism already agreed first, so the next hop keeps it.
func (f *Forwarder) offers(ctx context.Context, id string, conn *networkservice.Connection, remote bool, old *vwire) ([]*networkservice.Mechanism, error) {
	offers, err := f.dp.Offer(ctx, id, conn, remote)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "dataplane offer: %v", err)
	}
	if old != nil && old.remote == remote && old.out.GetMechanism() != nil {
		offers = append([]*networkservice.Mechanism{old.out.GetMechanism()}, offers...)
	}
	if len(offers) == 0 {
		kind := "LOCAL"
		if remote {
			kind = "REMOTE"
		}
		return nil, status.Errorf(codes.FailedPrecondition, "dataplane offers no %s mechanism", kind)
	}
	return offers, nil
}

// callNext sends the connection to the next hop and returns its answer
// (out, kept for refresh and Close), the same with the mechanism as this
// process can open it (local, for the dataplane) and the descriptors the
// next hop passed. have holds those of the connection's last answer from
// the same next hop: they go beside the call for the URLs that name them.
// An answer that cannot be used fails with a status naming the reason;
// when fresh (the next hop held no connection of ours before) it is also
// closed there, on its own context, not waited for. A refresh's is left to
// expire or to the manager's heal: closing it would take down the vWire
// that still runs on the last good answer.
func (f *Forwarder) callNext(ctx context.Context, conn *networkservice.Connection, hop connpath.Hop, offers []*networkservice.Mechanism, nextHop string, interdomain, fresh bool, have fileSet) (out, local *networkservice.Connection, files fileSet, err error) {
	cc, err := f.pool.Get(nextHop)
	if err != nil {
		return nil, nil, nil, status.Errorf(codes.InvalidArgument, "dial: %v", err)
	}
	aud, err := f.pool.PeerID(ctx, nextHop)
	if err != nil {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "connect: %v", err)
	}
	svid, err := f.src.GetX509SVID()
	if err != nil {
		return nil, nil, nil, status.Errorf(codes.Internal, "own SVID: %v", err)
	}
	own := hop.Segment
	if ctx, err = f.tokens.Stamp(ctx, own, svid, aud, own.GetExpires().AsTime()); err != nil {
		return nil, nil, nil, err
	}
	if interdomain {
		// The next manager tells its forwarder to answer with its public address.
		ctx = metadata.AppendToOutgoingContext(ctx, MDInterdomain, "true")
	}
	// conn is this call's own (the caller sets its Mechanism after us):
	// the next hop gets it without the previous hop's mechanism, uncopied.
	conn.Mechanism = nil
	var p peer.Peer
	opts := append(sendFiles(have, offers...), grpc.Peer(&p))
	out, err = networkservice.NewNetworkServiceClient(cc).Request(ctx, &networkservice.NetworkServiceRequest{
		Connection:           conn,
		MechanismPreferences: offers,
	}, opts...)
	if err != nil {
		if status.Code(err) == codes.Unavailable {
			f.pool.Reset(nextHop) // the next attempt dials afresh
		}
		return nil, nil, nil, err
	}
	switch {
	case out.GetMechanism() == nil:
		err = errors.New("its reply has no mechanism")
	case len(out.GetPath().GetPathSegments()) <= hop.Index:
		err = fmt.Errorf("its reply's path has %d segments, none for this hop (%d)", len(out.GetPath().GetPathSegments()), hop.Index)
	}
	var mech *networkservice.Mechanism
	if err == nil {
		mech, files, err = localMechanism(ctx, &p, out.GetMechanism(), have)
	}
	if err != nil {
		if fresh {
			f.closeNextAsync(ctx, own.GetId(), out, nextHop, nil)
		}
		return nil, nil, nil, status.Errorf(codes.FailedPrecondition, "its answer cannot be used: %v", err)
	}
	local = out
	if mech != out.GetMechanism() {
		local = proto.Clone(out).(*networkservice.Connection)
		local.Mechanism = mech
	}
	return out, local, files, nil
}

// undo removes what a failed Request made here and beyond, on its own
// context: the request's may be what failed.
func (f *Forwarder) undo(ctx context.Context, id string, out *networkservice.Connection, nextHop string, closeNext bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if old := f.get(id); old == nil || closeNext {
		f.closeNext(ctx, out, nextHop, nil)
		if err := f.dp.Disconnect(ctx, id); err != nil {
			f.log.Error("dataplane disconnect after failed connect", "conn", id, "err", err)
		}
		if v := f.forget(id); v != nil {
			// The old route's next hop: the failed Request does not wait.
			f.closeNextAsync(ctx, id, v.out, v.nextHop, v.files)
		}
	}
}

// closeNextAsync closes, at the next hop, connection id's answer that this
// forwarder cannot use, on its own bounded context: the failed Request
// returns at once instead of waiting for it. It owns files from here.
// Until it ends, the next Request for id waits for it (waitCloses).
func (f *Forwarder) closeNextAsync(ctx context.Context, id string, out *networkservice.Connection, nextHop string, files fileSet) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeNextTimeout)
	done := make(chan struct{})
	f.mu.Lock()
	f.closing[id] = append(f.closing[id], done)
	f.mu.Unlock()
	f.cleanups.Add(1)
	go func() {
		defer f.cleanups.Done()
		defer cancel()
		defer func() {
			f.mu.Lock()
			if left := slices.DeleteFunc(f.closing[id], func(c chan struct{}) bool { return c == done }); len(left) > 0 {
				f.closing[id] = left
			} else {
				delete(f.closing, id)
			}
			f.mu.Unlock()
			close(done)
		}()
		f.closeNext(ctx, out, nextHop, files)
		files.close()
	}()
}

// waitCloses waits until the Closes closeNextAsync still runs for id
// have ended, or ctx ends. A retry of a failed Request (the caller's
// own, its manager's heal) has the same connection id at every hop (see
// connpath's segmentID): were it to reach the next hop before the Close
// of the failed try, that Close would take down, there and beyond, the
// vWire the retry just built, while this node kept its own side (the soak
// on VPP, with Connects giving up in the admission queue: WireGuard
// vWires whose far side was gone, VPP logging "Keypair error").
func (f *Forwarder) waitCloses(ctx context.Context, id string) error {
	f.mu.Lock()
	pending := slices.Clone(f.closing[id])
	f.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	f.log.Info("waiting for the Close of an earlier try at the next hop", "conn", id, "closes", len(pending))
	for _, done := range pending {
		select {
		case <-done:
		case <-ctx.Done():
			return status.Errorf(status.FromContextError(ctx.Err()).Code(), "waiting for the Close of an earlier try at the next hop: %v", ctx.Err())
		}
	}
	return nil
}

// Close tears down one vWire and closes the next hop. Closing an unknown
// connection is not an error; the dataplane is still asked to remove
// anything tagged with the id (a restarted forwarder may have left it).
func (f *Forwarder) Close(ctx context.Context, conn *networkservice.Connection) (*empty.Empty, error) {
	id, ok := connpath.Find(conn, f.name)
	if !ok {
		return &empty.Empty{}, nil
	}
	unlock := f.locks.Lock(id)
	defer unlock()
	peer, _ := identity.PeerID(ctx)
	if v := f.get(id); v != nil && v.caller != peer.String() {
		return nil, status.Errorf(codes.PermissionDenied, "connection %s belongs to %s; %s may not close it", id, v.caller, peer)
	}
	if v := f.get(id); v != nil && otherTry(conn.GetMechanism(), v.in.GetMechanism()) {
		f.log.Info("Close of an earlier try ignored: the connection was requested again since", "conn", id)
		return &empty.Empty{}, nil
	}
	ctx, cancel := closeContext(ctx)
	defer cancel()
	old := f.forget(id)
	if old != nil {
		f.closeNext(ctx, old.out, old.nextHop, old.files)
		old.files.close()
	} else if hops := metadata.ValueFromIncomingContext(ctx, MDNextHop); len(hops) == 1 {
		// State lost (a restart): the manager still knows the next hop.
		next := proto.Clone(conn).(*networkservice.Connection)
		if _, err := connpath.Enter(next, f.name); err == nil {
			f.closeNext(ctx, next, hops[0], nil)
		}
	}
	if err := f.dp.Disconnect(ctx, id); err != nil {
		return nil, status.Errorf(codes.Internal, "dataplane disconnect %s: %v", id, err)
	}
	f.log.Debug("vWire closed", "conn", id, "known", old != nil)
	return &empty.Empty{}, nil
}

// otherTry reports whether a Close naming mechanism closing is for an
// earlier try of a connection now held with mechanism held: same type,
// other parameters. A Close can reach this hop after a retry that
// replaced what it names: the previous hop gives up waiting for it
// (closeNextTimeout) and the manager between answers it once its own
// call here gave up, while the Close still waits here (for the
// connection's lock, behind a Request), and would then take down the
// retry's vWire, which the previous hop keeps (remote WireGuard vWires
// on a loaded VPP, silent: the previous hop's peer named a key no
// interface here held). A retry offers anew (the failed try's Disconnect
// freed its keys and VNIs), so its mechanism differs; a refresh keeps
// the agreed one (acceptIncoming), so the Close of the connection as it
// stands names the mechanism held. Only tunnels between nodes are
// judged: a Close naming another type (a restarted previous hop's, built
// from its caller's view) or a local one (a workload's client may hand
// its mechanism back changed) is served.
func otherTry(closing, held *networkservice.Mechanism) bool {
	return closing != nil && held != nil && closing.GetCls() == cls.REMOTE && closing.GetType() == held.GetType() && !proto.Equal(closing, held)
}

// closeContext is the context of a Close's work here and beyond: it
// outlives the caller's cancellation, and lasts as long as the caller
// waits, cleanupTimeout at least, so that a Close the caller still waits
// for does not give up on the next hop (a burst of Closes on a loaded node
// takes longer than cleanupTimeout) and answer before the path is closed.
func closeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(cleanupTimeout)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// closeNext closes the connection out at the next hop, with the
// descriptors its mechanism names beside the call.
func (f *Forwarder) closeNext(ctx context.Context, out *networkservice.Connection, nextHop string, files fileSet) {
	if out == nil || nextHop == "" {
		return
	}
	// Our segment's token goes beside the Close, as beside the Request.
	for _, seg := range out.GetPath().GetPathSegments() {
		if seg.GetName() == f.name {
			ctx = token.Outgoing(ctx, seg)
			break
		}
	}
	cc, err := f.pool.Get(nextHop)
	if err == nil {
		_, err = networkservice.NewNetworkServiceClient(cc).Close(ctx, out, sendFiles(files, out.GetMechanism())...)
	}
	if err != nil {
		f.log.Info("close next hop", "next_hop", nextHop, "conn", out.GetId(), "err", err)
	}
}

func (f *Forwarder) get(id string) *vwire {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[id]
}

func (f *Forwarder) remember(v *vwire) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.conns[v.id]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	v.timer = f.clock.AfterFunc(v.expires.Sub(f.clock.Now()), func() { f.expire(v.id) })
	f.conns[v.id] = v
}

func (f *Forwarder) forget(id string) *vwire {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.conns[id]
	if v != nil {
		v.timer.Stop()
		delete(f.conns, id)
	}
	return v
}

// expire closes a connection nobody refreshed in time.
func (f *Forwarder) expire(id string) {
	unlock := f.locks.Lock(id)
	defer unlock()
	v := f.get(id)
	if v == nil || f.clock.Now().Before(v.expires) {
		return // closed, or refreshed while we waited for the lock
	}
	f.forget(id)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	f.log.Info("vWire expired", "conn", id, "expired", v.expires)
	f.closeNext(ctx, v.out, v.nextHop, v.files)
	v.files.close()
	if err := f.dp.Disconnect(ctx, id); err != nil {
		f.log.Error("dataplane disconnect on expiry", "conn", id, "err", err)
	}
}

// Connections returns a copy of every live connection as returned to the
// manager (for monitoring and tests).
func (f *Forwarder) Connections() []*networkservice.Connection {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*networkservice.Connection, 0, len(f.conns))
	for _, v := range f.conns {
		out = append(out, proto.Clone(v.in).(*networkservice.Connection))
	}
	return out
}

// Shutdown stops expiry timers without tearing anything down: a restarted
// forwarder picks its vWires up again from the refreshes.
func (f *Forwarder) Shutdown() {
	f.mu.Lock()
	for _, v := range f.conns {
		v.timer.Stop()
	}
	f.mu.Unlock()
	f.cleanups.Wait()
}

// String names the forwarder in logs.
func (f *Forwarder) String() string { return fmt.Sprintf("forwarder %s", f.name) }

// dataplaneCode is the gRPC code for a dataplane's failure: Internal,
// unless the dataplane said otherwise with a status of its own (a node
// out of room is ResourceExhausted, not broken).
func dataplaneCode(err error) codes.Code {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		return s.Code()
	}
	return codes.Internal
}
