package vpp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"time"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/wireguard"
)

// WireguardKeyLen is the length of a WireGuard key.
const WireguardKeyLen = 32

// WireguardInterfaceSpec is a WireGuard interface listening on Src:Port.
type WireguardInterfaceSpec struct {
	PrivateKey [WireguardKeyLen]byte
	Src        netip.Addr
	Port       uint16
}

// WireguardInterface is what VPP reports of one WireGuard interface.
type WireguardInterface struct {
	Index      SwIfIndex
	PrivateKey [WireguardKeyLen]byte
	PublicKey  [WireguardKeyLen]byte
	Src        netip.Addr
	Port       uint16
}

// CreateWireguardInterface creates an interface with the given key.
func (c *Client) CreateWireguardInterface(ctx context.Context, s WireguardInterfaceSpec) (idx SwIfIndex, err error) {
	idx = NoInterface
	return idx, c.pipeline(ctx, createWireguardInterfaceCall(s, func(i SwIfIndex) { idx = i }))
}

// createWireguardInterfaceCall is the request that creates interface s,
// for a pipeline; made gets its index.
func createWireguardInterfaceCall(s WireguardInterfaceSpec, made func(SwIfIndex)) pipelined {
	return pipelined{
		req: &wireguard.WireguardInterfaceCreate{
			Interface: wireguard.WireguardInterface{
				UserInstance: ^uint32(0),
				SwIfIndex:    NoInterface.api(),
				PrivateKey:   s.PrivateKey[:],
				Port:         s.Port,
				SrcIP:        toAddress(s.Src),
			},
		},
		attrs: []any{"src", s.Src, "port", s.Port},
		wrap:  func(err error) error { return fmt.Errorf("wireguard interface %s:%d: create: %w", s.Src, s.Port, err) },
		got: func(m api.Message) {
			if r, ok := m.(*wireguard.WireguardInterfaceCreateReply); ok {
				made(SwIfIndex(r.SwIfIndex))
			}
		},
	}
}

// DeleteWireguardInterface deletes an interface and its peers.
func (c *Client) DeleteWireguardInterface(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteWireguardInterfaceCall(idx))
}

// deleteWireguardInterfaceCall is the request that deletes interface idx
// (and its peers), for a pipeline.
func deleteWireguardInterfaceCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &wireguard.WireguardInterfaceDelete{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("wireguard interface %d: delete: %w", idx, err) },
	}
}

// ListWireguardInterfaces returns every WireGuard interface, with its
// private key: a restarted forwarder takes its WireGuard vWires back with
// the keys VPP holds for them.
func (c *Client) ListWireguardInterfaces(ctx context.Context) ([]WireguardInterface, error) {
	var out []WireguardInterface
	err := dump(ctx, c, &wireguard.WireguardInterfaceDump{SwIfIndex: NoInterface.api(), ShowPrivateKey: true}, func(d *wireguard.WireguardInterfaceDetails) {
		w := WireguardInterface{Index: SwIfIndex(d.Interface.SwIfIndex), Src: fromAddress(d.Interface.SrcIP), Port: d.Interface.Port}
		copy(w.PrivateKey[:], d.Interface.PrivateKey)
		copy(w.PublicKey[:], d.Interface.PublicKey)
		out = append(out, w)
	})
	if err != nil {
		return nil, fmt.Errorf("list wireguard interfaces: %w", err)
	}
	return out, nil
}

// WireguardPeerSpec is the one peer of a vWire's WireGuard interface.
type WireguardPeerSpec struct {
	Interface SwIfIndex
	PublicKey [WireguardKeyLen]byte
	Endpoint  netip.Addr
	Port      uint16
	// AllowedIPs are the inner addresses the peer may send from and is
	// sent to.
	AllowedIPs []netip.Prefix
	// Keepalive is the persistent keepalive interval in seconds (0: none).
	Keepalive uint16
	// Passive adds the peer with port 0: VPP then has no way to send to
	// it, so it starts no handshake (not the first one a peer gets when
	// its interface goes up, nor retries), and takes the peer's endpoint
	// from the first valid handshake the peer starts. For a side whose
	// far end comes up after it (see passivePeer): a handshake it started
	// would reach no interface there, cost both ends (X25519 here, a MAC
	// check against every WireGuard interface on the port there) and be
	// retried.
	Passive bool
}

// CreateWireguardPeer adds a peer and returns its index.
func (c *Client) CreateWireguardPeer(ctx context.Context, p WireguardPeerSpec) (peer uint32, err error) {
	call := c.wireguardPeerCall(p)
	call.got = func(m api.Message) {
		if r, ok := m.(*wireguard.WireguardPeerAddReply); ok {
			peer = r.PeerIndex
		}
	}
	return peer, c.pipeline(ctx, call)
}

// wireguardPeerCall is the request that adds peer p, for a pipeline.
func (c *Client) wireguardPeerCall(p WireguardPeerSpec) pipelined {
	allowed := make([]ip_types.Prefix, 0, len(p.AllowedIPs))
	for _, a := range p.AllowedIPs {
		allowed = append(allowed, toPrefix(a))
	}
	port := p.Port
	if p.Passive {
		port = 0
	}
	return pipelined{
		req: &wireguard.WireguardPeerAdd{Peer: wireguard.WireguardPeer{
			PublicKey:           p.PublicKey[:],
			Port:                port,
			PersistentKeepalive: p.Keepalive,
			Endpoint:            toAddress(p.Endpoint),
			SwIfIndex:           p.Interface.api(),
			NAllowedIps:         uint8(len(allowed)),
			AllowedIps:          allowed,
		}},
		attrs: []any{"sw_if_index", p.Interface, "endpoint", p.Endpoint, "port", port},
		wrap: func(err error) error {
			return fmt.Errorf("wireguard peer %s:%d on %d: add: %w", p.Endpoint, p.Port, p.Interface, err)
		},
	}
}

// WireguardPeer is what VPP reports of one WireGuard peer.
type WireguardPeer struct {
	Index     uint32
	Interface SwIfIndex
	PublicKey [WireguardKeyLen]byte
	Endpoint  netip.Addr
	Port      uint16 // 0 for a passive peer before its first handshake
	// Established: a handshake with the peer has completed.
	Established bool
}

// ListWireguardPeers returns every WireGuard peer.
func (c *Client) ListWireguardPeers(ctx context.Context) ([]WireguardPeer, error) {
	var out []WireguardPeer
	err := dump(ctx, c, &wireguard.WireguardPeersDump{PeerIndex: ^uint32(0)}, func(d *wireguard.WireguardPeersDetails) {
		p := WireguardPeer{Index: d.Peer.PeerIndex, Interface: SwIfIndex(d.Peer.SwIfIndex), Endpoint: fromAddress(d.Peer.Endpoint), Port: d.Peer.Port,
			Established: d.Peer.Flags&wireguard.WIREGUARD_PEER_ESTABLISHED != 0}
		copy(p.PublicKey[:], d.Peer.PublicKey)
		out = append(out, p)
	})
	if err != nil {
		return nil, fmt.Errorf("list wireguard peers: %w", err)
	}
	return out, nil
}

// DeleteWireguardPeer removes a peer.
func (c *Client) DeleteWireguardPeer(ctx context.Context, peer uint32) error {
	return c.pipeline(ctx, deleteWireguardPeerCall(peer))
}

// deleteWireguardPeerCall is the request that removes peer, for a pipeline.
func deleteWireguardPeerCall(peer uint32) pipelined {
	return pipelined{
		req:   &wireguard.WireguardPeerRemove{PeerIndex: peer},
		attrs: []any{"peer", peer},
		wrap:  func(err error) error { return fmt.Errorf("wireguard peer %d: remove: %w", peer, err) },
	}
}

// ListWireguardPeer returns peer index, ok false when VPP has none.
func (c *Client) ListWireguardPeer(ctx context.Context, index uint32) (p WireguardPeer, ok bool, err error) {
	err = dump(ctx, c, &wireguard.WireguardPeersDump{PeerIndex: index}, func(d *wireguard.WireguardPeersDetails) {
		if d.Peer.PeerIndex != index {
			return
		}
		p = WireguardPeer{Index: d.Peer.PeerIndex, Interface: SwIfIndex(d.Peer.SwIfIndex), Endpoint: fromAddress(d.Peer.Endpoint), Port: d.Peer.Port,
			Established: d.Peer.Flags&wireguard.WIREGUARD_PEER_ESTABLISHED != 0}
		copy(p.PublicKey[:], d.Peer.PublicKey)
		ok = true
	})
	if err != nil {
		return p, false, fmt.Errorf("list wireguard peer %d: %w", index, err)
	}
	return p, ok, nil
}

// DefaultPassiveFallback is how long a passive peer (passivePeer) waits
// for the far end's handshake before this end starts one (activateLater):
// past VPP's first handshake (within 340 ms of the far end's peer) and
// the far end's Connect after ours.
const DefaultPassiveFallback = 2 * time.Second

// activateLater makes vWire id's passive WireGuard peer, on interface wg,
// active if VPP still has no endpoint for it d.passiveFallback after the
// build: a far end that does not start a handshake as it comes up (the
// kernel dataplane's WireGuard starts one only for a packet to send)
// would otherwise leave this end unable to send at all. VPP has no call
// that changes a peer: it is removed and added again with its port, and
// the vWire's undo stack told the new index. It gives up quietly when the
// vWire was rebuilt or removed meanwhile, or the dataplane closes.
func (d *Dataplane) activateLater(id string, wg SwIfIndex, undo *undoStack) {
	select {
	case <-time.After(d.passiveFallback):
	case <-d.closing():
		return
	}
	unlock := d.locks.Lock(id)
	defer unlock()
	d.mu.Lock()
	st := d.conns[id]
	d.mu.Unlock()
	if st == nil || st.undo != undo || st.in != wg {
		return
	}
	step := undo.peerStep()
	if step == nil {
		return
	}
	release, err := d.admission.admit(d.life, opBuild)
	if err != nil {
		return // closing
	}
	defer release()
	ctx, cancel := context.WithTimeout(d.life, callTimeout)
	defer cancel()
	old := step.call.req.(*wireguard.WireguardPeerRemove).PeerIndex
	cl := d.vpp.WithLogger(d.log.With("conn", id))
	p, ok, err := cl.ListWireguardPeer(ctx, old)
	if err != nil || !ok || p.Port != 0 || p.Interface != wg {
		return // answered (the far end's handshake gave VPP its endpoint), gone, or VPP unreachable
	}
	spec := st.plan.in.wgPeer
	spec.Interface = wg
	add := cl.wireguardPeerCall(spec)
	var made uint32
	added := false
	add.got = func(m api.Message) {
		if r, ok := m.(*wireguard.WireguardPeerAddReply); ok {
			made, added = r.PeerIndex, true
		}
	}
	err = cl.pipeline(ctx, deleteWireguardPeerCall(old), add)
	if added {
		*step.call = deleteWireguardPeerCall(made)
	}
	if err != nil {
		d.log.Warn("passive WireGuard peer not made active", "conn", id, "err", err)
		return
	}
	d.log.Info("no handshake from the far end: WireGuard peer made active", "conn", id, "after", d.passiveFallback,
		"sw_if_index", wg, "peer", made, "was", old, "peer_key", base64.StdEncoding.EncodeToString(spec.PublicKey[:]))
}

// removeWireguardInterfaceOf deletes the WireGuard interface with s's
// private key, source and port if VPP has one: the undo of a
// wireguard_interface_create that got no answer (the key is the vWire's
// own, see plan). VPP serves a connection's messages in order, so the
// listing, sent after the create, shows the interface if the create made
// it. One that cannot be looked for or deleted is logged.
func removeWireguardInterfaceOf(ctx context.Context, cl *Client, s WireguardInterfaceSpec) error {
	err := func() error {
		wgs, err := cl.ListWireguardInterfaces(ctx)
		if err != nil {
			return err
		}
		for _, w := range wgs {
			if w.PrivateKey == s.PrivateKey && w.Port == s.Port && w.Src == s.Src {
				return cl.DeleteWireguardInterface(ctx, w.Index)
			}
		}
		return nil
	}()
	if err != nil {
		cl.log.Error("a wireguard_interface_create got no answer and the interface it may have made cannot be removed: left untagged in VPP, holding its port",
			"src", s.Src, "port", s.Port, "err", err)
	}
	return err
}
