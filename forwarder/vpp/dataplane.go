package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"go.fd.io/govpp/core"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"github.com/vwire/vwire/internal/keyedlock"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

const (
	// cleanupTimeout bounds rollback work, which never runs on the
	// caller's context (it may be the one that expired).
	cleanupTimeout = 15 * time.Second
	// callTimeout bounds work given a context without a deadline: govpp
	// waits for a reply forever otherwise.
	callTimeout = 30 * time.Second
)

// bounded returns ctx, with callTimeout when it has no deadline.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, callTimeout)
}

// Dataplane implements forwarder.Dataplane with VPP.
type Dataplane struct {
	log          *slog.Logger
	metrics      *Metrics
	vpp          *Client
	conn         *core.Connection
	statsMu      sync.Mutex  // serialises reads of the stats segment
	stats        *ifCounters // nil when the stats segment could not be reached; guarded by statsMu
	statsConn    *core.StatsConnection
	proc         *vppstart.Process // nil when attached to a running VPP; guarded by mu after New
	apiSocket    string            // VPP's API socket; empty with a test's adapter
	host         hostNet
	kernelTap    bool
	memifDir     string
	memifReserve int // memifs reserved at connect and restore (0: none)
	uplinkName   string
	grace        time.Duration
	vnis         *vxlan.VNIAllocator
	tables       *tableAllocator
	vrfs         *ipTables  // the IP tables IP-payload local sides share
	memifSockIDs socketIDs  // memif socket ids for pipelined builds
	memifs       *memifRoom // keeps vWires' memifs within the reserved pool (memifroom.go)
	// passiveFallback: how long a passive WireGuard peer waits for the
	// far end's handshake (activateLater).
	passiveFallback time.Duration
	trunk           *trunk           // KERNEL sides on veths (see trunk.go)
	intents         *journal         // creates that may leave untagged objects (intents.go)
	locks           keyedlock.Locker // serialises work on one connection id
	admission       *admission       // bounds the operations in VPP at once

	// Set by New and by recovery after VPP comes back; read under mu by
	// those that may race with recovery.
	tunnel      netip.Addr
	underlayMTU int
	uplink      SwIfIndex

	life      context.Context // ends when Close begins
	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu       sync.Mutex                    // guards the fields below
	held     map[string]map[string]uint32  // VNIs by connection id and role
	keys     map[string]map[string]keyPair // key pairs by connection id and role/type
	wgPorts  map[uint16]bool               // WireGuard listen ports held (holdWireguard)
	accepted map[string]string             // mechanism type Accept chose, by id
	conns    map[string]*vwireState        // built vWires, by id
	orphans  map[string]bool               // tag keys found at start, not yet claimed
	// unclean holds the tag keys of ids whose last Connect failed after
	// calling VPP: its rollback may have left objects, so their Disconnect
	// sweeps. An id in none of conns, orphans and unclean has nothing in
	// VPP, and its Disconnect makes no VPP call.
	unclean map[string]bool
	// leftovers are, by vWire id, undo steps of creates that got no
	// answer whose lookup failed (keepLeftovers): run again by the id's
	// next Connect or its Disconnect. Their intents stay open in the
	// journal (d.intents) until they succeed, and so outlive the steps,
	// which Disconnect and the VPP connection's return drop.
	leftovers map[string][]undoStep
	// placed holds, by tag key, the interfaces whose create VPP answered
	// this process for the vWire since its last sweep that succeeded:
	// with leftovers and the intent journal (creates with no answer), all
	// this process may have left of it in VPP. A sweep looks at those
	// indexes only (sweepKnown), unless the key is in blind.
	placed map[string][]SwIfIndex
	// blind holds the tag keys VPP may hold objects of that this process
	// did not make (a previous run's: Start), until a sweep of all of VPP
	// for the key succeeds.
	blind map[string]bool
}

// vwireState is what Connect built for one id, and what it was given, so
// that a refresh can check it and a VPP restart can replay it.
type vwireState struct {
	plan    *plan
	in, out SwIfIndex
	inConn  *networkservice.Connection
	outConn *networkservice.Connection
	// undo removes what build made, without listing VPP; nil when this
	// process did not build the whole vWire (adopted, one side rebuilt):
	// Disconnect then sweeps.
	undo *undoStack
}

var _ forwarder.Dataplane = (*Dataplane)(nil)

// Accept takes the first preference this node can terminate: KERNEL and
// MEMIF from a local client, VXLAN, WIREGUARD and IPSEC from a peer node.
func (d *Dataplane) Accept(_ context.Context, id string, conn *networkservice.Connection, prefs []*networkservice.Mechanism) (*networkservice.Mechanism, error) {
	var reasons []error
	for _, p := range prefs {
		m, err := d.accept(id, conn, p)
		if err != nil {
			reasons = append(reasons, err)
			continue
		}
		d.mu.Lock()
		d.accepted[id] = m.GetType()
		d.mu.Unlock()
		return m, nil
	}
	return nil, fmt.Errorf("%w: %w", forwarder.ErrNoMechanism, errors.Join(reasons...))
}

func (d *Dataplane) accept(id string, conn *networkservice.Connection, p *networkservice.Mechanism) (*networkservice.Mechanism, error) {
	ipPayload := isIPPayload(conn)
	switch p.GetType() {
	case kernel.Type:
		params, err := kernel.FromOffer(p)
		if err != nil {
			return nil, err
		}
		if params.NetNSURL == "" {
			return nil, errors.New("kernel: the client named no network namespace (inodeURL)")
		}
		if _, err := netnsPath(params.NetNSURL); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if params.Name == "" {
			params.Name = kernel.DefaultName(id)
		}
		return kernel.New(params), nil
	case memif.Type:
		return d.acceptMemif(id, p)
	case vxlan.Type:
		offer, err := vxlan.FromOffer(p)
		if err != nil {
			return nil, err
		}
		if err := d.checkTunnel(d.tunnel, offer.SrcIP); err != nil {
			return nil, fmt.Errorf("vxlan: %w", err)
		}
		params, err := vxlan.Accept(offer, d.tunnel, func(vni uint32) bool { return d.holdVNI(id, roleIn, vni) })
		if err != nil {
			return nil, err
		}
		params.MTU = uint32(d.underlayMTU - d.overhead(vxlan.Type))
		params.DstNoOffload = true // see vxlan.Params.SrcNoOffload
		return vxlan.New(params), nil
	case wireguard.Type:
		if !ipPayload {
			return nil, errors.New("wireguard: carries IP packets, the payload is ETHERNET")
		}
		offer, err := wireguard.FromOffer(p)
		if err != nil {
			return nil, err
		}
		if err := d.checkTunnel(d.tunnel, offer.SrcIP); err != nil {
			return nil, fmt.Errorf("wireguard: %w", err)
		}
		pub, port, err := d.holdWireguard(id, roleIn)
		if err != nil {
			return nil, err
		}
		params := wireguard.Accept(offer, d.tunnel, port, pub)
		params.MTU = uint32(d.underlayMTU - d.overhead(wireguard.Type))
		return wireguard.New(params), nil
	case ipsec.Type:
		if !ipPayload {
			return nil, errors.New("ipsec: carries IP packets, the payload is ETHERNET")
		}
		offer, err := ipsec.FromOffer(p)
		if err != nil {
			return nil, err
		}
		if err := d.checkTunnel(d.tunnel, offer.SrcIP); err != nil {
			return nil, fmt.Errorf("ipsec: %w", err)
		}
		pub, err := d.holdKey(id, roleIn, ipsec.Type)
		if err != nil {
			return nil, err
		}
		params := ipsec.Accept(offer, d.tunnel, ipsec.DefaultPort, pub)
		params.MTU = uint32(d.underlayMTU - d.overhead(ipsec.Type))
		return ipsec.New(params), nil
	}
	return nil, fmt.Errorf("%s: not supported by the VPP dataplane", p.GetType())
}

// Offer offers KERNEL and MEMIF to a local endpoint; to a remote hop,
// WIREGUARD, IPSEC and VXLAN for an IP payload (VXLAN last: it is what a
// kernel-dataplane peer takes), VXLAN for an Ethernet one.
func (d *Dataplane) Offer(_ context.Context, id string, conn *networkservice.Connection, remote bool) ([]*networkservice.Mechanism, error) {
	d.mu.Lock()
	in := d.accepted[id]
	d.mu.Unlock()
	ipPayload := isIPPayload(conn)
	if !remote {
		offers := []*networkservice.Mechanism{kernel.New(kernel.Params{})}
		if !(ipPayload && in == vxlan.Type) {
			offers = append(offers, memif.New(memif.Params{SocketFile: memif.DefaultSocketFile(id + "/" + roleOut)}))
		}
		return offers, nil
	}
	if !d.tunnel.IsValid() || d.uplinkIndex() == NoInterface {
		return nil, nil
	}
	var offers []*networkservice.Mechanism
	if ipPayload {
		pub, port, err := d.holdWireguard(id, roleOut)
		if err != nil {
			return nil, err
		}
		wg := wireguard.Offer(d.tunnel, port, pub)
		wg.MTU = uint32(d.underlayMTU - d.overhead(wireguard.Type))
		if pub, err = d.holdKey(id, roleOut, ipsec.Type); err != nil {
			return nil, err
		}
		is := ipsec.Offer(d.tunnel, ipsec.DefaultPort, pub)
		is.MTU = uint32(d.underlayMTU - d.overhead(ipsec.Type))
		offers = append(offers, wireguard.New(wg), ipsec.New(is))
	}
	if !(ipPayload && in == memif.Type) {
		vni, err := d.offerVNI(id)
		if err != nil {
			return nil, err
		}
		vx := vxlan.Offer(d.tunnel, vni)
		vx.MTU = uint32(d.underlayMTU - d.overhead(vxlan.Type))
		vx.SrcNoOffload = true // see vxlan.Params.SrcNoOffload
		offers = append(offers, vxlan.New(vx))
	}
	return offers, nil
}

// Connect builds (or re-checks) the vWire id: the incoming side, the
// outgoing side and the cross-connect between them. Everything is worked
// out and checked first; a failure after the first VPP call removes what
// was made, in reverse order.
func (d *Dataplane) Connect(ctx context.Context, id string, in, out *networkservice.Connection) (err error) {
	// Before the lock: the restore that opens the gate takes the
	// vWires' locks (readmitMemifs).
	if in.GetMechanism().GetType() == memif.Type || out.GetMechanism().GetType() == memif.Type {
		if err := d.memifs.await(ctx, d.closing()); err != nil {
			return err
		}
	}
	unlock := d.locks.Lock(id)
	defer unlock()
	log := d.log.With("conn", id)
	p, err := d.plan(id, in, out)
	if err != nil {
		return err
	}
	if err := d.claimMemifs(id, p); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			d.memifs.settle(tagKey(id), p.memifs())
		}
	}()
	// At most so many operations talk to VPP at once (admission.go); a
	// caller that gives up while this one waits costs VPP nothing.
	release, err := d.admission.admit(ctx, opBuild)
	if err != nil {
		log.Debug("Connect gave up waiting for VPP; nothing sent", "err", err)
		return err
	}
	defer release()
	// A VPP call its caller gave up on still runs in VPP: an interface
	// created after the caller's deadline would come back to nobody, stay
	// untagged, and no sweep would ever find it (the soak on VPP left such
	// WireGuard interfaces). So a Connect, once begun, runs to its end or
	// its rollback on its own bounded context, from its admission.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	// From here on VPP is called: a failure may leave objects (a sweep or
	// rollback that failed, an orphan not taken back), which the id's
	// Disconnect then sweeps.
	defer func() {
		if err != nil {
			d.mu.Lock()
			d.unclean[tagKey(id)] = true
			d.mu.Unlock()
		}
	}()
	if in.Context == nil {
		in.Context = &networkservice.ConnectionContext{}
	}
	in.Context.MTU = p.mtu

	d.mu.Lock()
	old := d.conns[id]
	orphan, unclean := d.orphans[tagKey(id)], d.unclean[tagKey(id)]
	delete(d.orphans, tagKey(id))
	delete(d.unclean, tagKey(id))
	d.mu.Unlock()

	cl := d.vpp.WithLogger(log)
	switch {
	case old != nil && samePlan(old.plan, p):
		ok, err := d.intact(ctx, cl, id, old)
		if err == nil && ok {
			ok, err = d.vethsStand(old)
		}
		if err != nil {
			return err
		}
		if ok {
			d.remember(id, old.plan, old.in, old.out, old.undo, in, out)
			return nil
		}
		log.Info("vWire damaged in VPP or its veths; rebuilding")
	case old == nil && orphan:
		if st, err := d.adopt(ctx, cl, p); err != nil {
			return err
		} else if st != nil {
			log.Info("vWire from a previous run taken back")
			d.remember(id, p, st.in, st.out, nil, in, out)
			return nil
		}
	}
	if old != nil && !samePlan(old.plan, p) {
		if keep := keptSide(old.plan, p); keep != "" {
			// What a side rebuild that fails may leave, its answered
			// creates, is in placed: the sweep below looks there.
			inIdx, outIdx, err := d.rebuildSide(ctx, cl, old, p, keep)
			if err == nil {
				log.Info("vWire changed: one side rebuilt", "kept", keep)
				d.remember(id, p, inIdx, outIdx, nil, in, out)
				return nil
			}
			log.Warn("rebuilding one side failed; rebuilding the vWire", "kept", keep, "err", err)
		}
	}
	if old != nil || orphan || unclean || d.intents.has(id) {
		// What an earlier build (or a peer that changed) left: its tagged
		// objects first, then the untagged ones its rollback could not
		// look for (or a previous run's open intents). A leftover step
		// may need a tagged object gone: a memif socket under the memif
		// a failed rollback could not delete is refused as in use until
		// then, and the id's every retry failed on it.
		if err := d.sweepKnown(ctx, cl, id, old, roleIn, roleOut); err != nil {
			return err
		}
		if err := d.removeLeftovers(ctx, cl, id); err != nil {
			return err
		}
	}
	start := time.Now()
	// Nothing of the vWire stood here: new to this node, and so (the
	// previous hop builds after us) to the other.
	first := old == nil && !orphan && !unclean
	inIdx, outIdx, undo, err := d.build(ctx, cl, p, first)
	if err != nil {
		if old != nil {
			// A refresh that fails leaves the vWire as it was.
			if in, out, undo, rerr := d.build(ctx, cl, old.plan, false); rerr == nil {
				d.remember(id, old.plan, in, out, undo, old.inConn, old.outConn)
			} else {
				log.Error("could not put the previous vWire back", "err", rerr)
				d.mu.Lock()
				delete(d.conns, id)
				d.mu.Unlock()
			}
		}
		return err
	}
	d.remember(id, p, inIdx, outIdx, undo, in, out)
	if passivePeer(&p.in, first) {
		select {
		case <-d.closing():
		default:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.activateLater(id, inIdx, undo)
			}()
		}
	}
	log.Debug("vpp vWire built", "in", p.in.typ, "out", p.out.typ, "l3", p.l3, "mtu", p.mtu, "took", time.Since(start))
	return nil
}

func (d *Dataplane) remember(id string, p *plan, in, out SwIfIndex, undo *undoStack, inConn, outConn *networkservice.Connection) {
	st := &vwireState{plan: p, in: in, out: out, undo: undo,
		inConn: proto.Clone(inConn).(*networkservice.Connection), outConn: proto.Clone(outConn).(*networkservice.Connection)}
	d.mu.Lock()
	d.conns[id] = st
	d.mu.Unlock()
}

// Disconnect removes every object tagged with id (whether this process made
// it or a previous one did) and frees its VNIs and keys.
//
// Like Connect, once begun it runs to its end on its own bounded context:
// removals cut off at the caller's deadline leave the vWire half in VPP,
// and the next Close of it must then list all of VPP to sweep it (the full
// soak on VPP, its callers timing out under load, swept hundreds of such
// vWires at once, each listing thousands of interfaces, and fell further
// behind with each).
//
// A Disconnect that has VPP work to do waits for its slot (admission.go)
// whatever its caller does: the caller has forgotten the vWire, and a
// Disconnect that gave up would leave it in VPP with nobody left to remove
// it. Removals go first, so it waits at most for the operations in VPP
// (each bounded by callTimeout) and the removals ahead of it. One with
// nothing in VPP waits for nothing.
func (d *Dataplane) Disconnect(ctx context.Context, id string) error {
	unlock := d.locks.Lock(id)
	defer unlock()
	var err error
	if d.mayHave(id) {
		release, aerr := d.admission.admit(d.life, opRemove)
		if aerr != nil {
			return aerr // the dataplane is closing
		}
		defer release()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		cl := d.vpp.WithLogger(d.log.With("conn", id))
		// Tagged objects first, as in Connect.
		err = errors.Join(d.teardown(ctx, cl, id), d.removeLeftovers(ctx, cl, id))
	}
	d.mu.Lock()
	if left := d.leftovers[id]; len(left) > 0 {
		// Their intents stay open in the journal, looked up again when
		// the VPP connection comes back, at the next start, or at this
		// id's next Connect or Disconnect.
		for _, s := range left {
			d.log.Error("an object a create with no answer may have made is still in VPP, untagged: kept in the intent journal", "conn", id, "step", s.what)
		}
		delete(d.leftovers, id)
	}
	for _, vni := range d.held[id] {
		// A VNI an open intent names stays taken until its lookup
		// succeeds: another vWire's tunnel would be taken for it.
		if !d.intents.vniOpen(vni) {
			d.vnis.Release(vni)
		}
	}
	delete(d.held, id)
	d.dropKeysLocked(id)
	delete(d.accepted, id)
	delete(d.conns, id)
	delete(d.orphans, tagKey(id))
	delete(d.unclean, tagKey(id))
	delete(d.placed, tagKey(id))
	delete(d.blind, tagKey(id))
	d.mu.Unlock()
	if err == nil {
		d.memifs.settle(tagKey(id), 0)
	}
	return err
}

// claimMemifs claims, before VPP is called, the room in VPP's memif pool
// the Connect of id to plan p may fill at its peak (memifroom.go): the
// memifs of p, of the vWire as it stands, or what id holds already (a
// failed Connect's leftovers, or a previous run's vWire), whichever is
// most: every path of Connect removes what stands (or its changed side)
// before it builds anew. A Connect that succeeds settles the claim to p's
// memifs; a failed one keeps it until its Disconnect succeeds, for what
// it may have left in VPP.
func (d *Dataplane) claimMemifs(id string, p *plan) error {
	d.mu.Lock()
	old := d.conns[id]
	d.mu.Unlock()
	standing := 0
	if old != nil {
		standing = old.plan.memifs()
	}
	// By tag key, as a previous run's vWires are counted (reconcile).
	key := tagKey(id)
	return d.memifs.claim(key, max(d.memifs.holding(key), standing, p.memifs()))
}

// Metrics returns the counters of vWire id as path segment metrics
// (rx_packets, rx_bytes, tx_packets, tx_bytes, drops; see metricsOf), or
// nil when id is unknown or the stats segment cannot be read.
func (d *Dataplane) Metrics(id string) map[string]string {
	d.mu.Lock()
	st := d.conns[id]
	d.mu.Unlock()
	if st == nil {
		return nil
	}
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	if d.stats == nil {
		return nil
	}
	c, err := d.stats.read(st.in, st.out)
	if err != nil {
		d.log.Debug("metrics", "conn", id, "err", err)
		return nil
	}
	return metricsOf(c[st.in], c[st.out])
}

// holdVNI reserves vni for id's role, or confirms the id already holds it.
func (d *Dataplane) holdVNI(id, role string, vni uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.held[id][role]; ok && v == vni {
		return true
	}
	if !d.vnis.TryReserve(vni) {
		return false
	}
	if old, ok := d.held[id][role]; ok {
		d.vnis.Release(old)
	}
	if d.held[id] == nil {
		d.held[id] = map[string]uint32{}
	}
	d.held[id][role] = vni
	return true
}

// offerVNI returns the VNI id offers on its outgoing side, allocating one
// the first time.
func (d *Dataplane) offerVNI(id string) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if vni, ok := d.held[id][roleOut]; ok {
		return vni, nil
	}
	vni, err := d.vnis.Allocate()
	if err != nil {
		return 0, fmt.Errorf("vxlan: %w", err)
	}
	if d.held[id] == nil {
		d.held[id] = map[string]uint32{}
	}
	d.held[id][roleOut] = vni
	return vni, nil
}

// keyPair is a tunnel side's X25519 key pair. The public key is kept with
// the private one: deriving it is a scalar multiplication, and a vWire's
// Offer, Accept and plans on two nodes would do it about ten times.
type keyPair struct {
	priv, pub [32]byte
	// port is a WireGuard side's listen port (see holdWireguard).
	port uint16
}

// maxWireguardPorts bounds the listen ports WireGuard sides take, from
// wireguard.DefaultPort up (51820–55915, as the kernel dataplane's): one
// a side (see holdWireguard).
const maxWireguardPorts = 4096

// holdWireguard is holdKey for a WireGuard side, with the listen port it
// holds for it: a port of its own, the lowest free from
// wireguard.DefaultPort. VPP 25.10 finds a handshake's interface among
// every WireGuard interface on the packet's port, asking each whether it
// is under load, and an interface with no peer always is (its threshold
// is 40 handshakes a peer), which puts every interface of the VPP under
// load for a second (one flag for all): each handshake then gets a
// cookie reply instead of an answer and is tried again only after 5 s.
// A WireGuard interface has no peer from its creation to its setup's
// round trip, and a node building and closing vWires always has some:
// on one shared port, handshakes never stopped meeting them, and at
// load vWires stayed silent past the soak's 30 s (keys agreeing on both
// VPPs, neither peer established). On a port of its own, a handshake
// meets its own interface only.
func (d *Dataplane) holdWireguard(id, role string) (pub [32]byte, port uint16, err error) {
	if pub, err = d.holdKey(id, role, wireguard.Type); err != nil {
		return pub, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := role + "/" + wireguard.Type
	kp := d.keys[id][k]
	if kp.port == 0 {
		for i := range maxWireguardPorts {
			if p := wireguard.DefaultPort + uint16(i); !d.wgPorts[p] {
				kp.port = p
				break
			}
		}
		if kp.port == 0 {
			return pub, 0, fmt.Errorf("wireguard: all %d listen ports from %d are held", maxWireguardPorts, wireguard.DefaultPort)
		}
		d.wgPorts[kp.port] = true
		d.keys[id][k] = kp
	}
	return kp.pub, kp.port, nil
}

// dropKeysLocked forgets id's key pairs and frees their WireGuard ports;
// d.mu held.
func (d *Dataplane) dropKeysLocked(id string) {
	for _, kp := range d.keys[id] {
		if kp.port != 0 {
			delete(d.wgPorts, kp.port)
		}
	}
	delete(d.keys, id)
}

// holdKey returns the public key of the key pair id uses on role for a
// tunnel of type typ, making the pair the first time. Private keys never
// leave this process.
func (d *Dataplane) holdKey(id, role, typ string) ([32]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := role + "/" + typ
	kp, ok := d.keys[id][k]
	if !ok {
		var err error
		if kp.priv, kp.pub, err = wireguard.GenerateKey(); err != nil {
			return [32]byte{}, err
		}
		if d.keys[id] == nil {
			d.keys[id] = map[string]keyPair{}
		}
		d.keys[id][k] = kp
	}
	return kp.pub, nil
}

// privateKey returns the private key id holds for role and typ, checking
// that its public key is the one the mechanism names for this node.
func (d *Dataplane) privateKey(id, role, typ, wantPub string) ([32]byte, error) {
	d.mu.Lock()
	kp, ok := d.keys[id][role+"/"+typ]
	d.mu.Unlock()
	if !ok {
		return kp.priv, fmt.Errorf("%s: this forwarder holds no key for this vWire (did it offer or accept it, before a restart?)", typ)
	}
	if wireguard.EncodeKey(kp.pub) != wantPub {
		return kp.priv, fmt.Errorf("%s: the mechanism names public key %s for this node, which holds %s", typ, wantPub, wireguard.EncodeKey(kp.pub))
	}
	return kp.priv, nil
}
