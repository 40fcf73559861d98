package bench

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/vwire/vwire/forwarder/vpp"
	mwireguard "github.com/vwire/vwire/mechanisms/wireguard"
)

// The plain loop of the vpp-scale group: the VPP objects vwire's dataplane
// makes for a vWire, made by a plain sequence of VPP API calls (govpp's
// generated bindings behind forwarder/vpp's Client, one round trip each,
// nothing of vwire above it): the dataplane's own floor, next to which the
// mesh's figures show vwire's overhead.
const (
	// plainTagPrefix starts the plain loop's interface tags: not vwire's
	// tag form, so that the forwarders on the same VPPs leave them alone.
	plainTagPrefix = "bench-plain/"
	// plainVNIBase keeps the plain loop's VNIs apart from the forwarders'.
	plainVNIBase = 1 << 23
	// plainTable is the one IP table the plain loop's IP sides share on
	// each node, as the forwarders' do.
	plainTable = 0x76780000
)

// abstractSocket is VPP's name of the abstract unix socket name in the
// network namespace at nsPath.
func abstractSocket(name, nsPath string) string {
	return "abstract:" + name + ",netns_name=" + nsPath
}

// plainMemifVWire makes local memif vWire i's objects on vc by the plain
// loop (vpp.PlainMemifVWire): the client's memif socket in nsClient, the
// endpoint's in nsEndpoint. undo removes what was made, also after a
// failure.
func plainMemifVWire(ctx context.Context, vc *vpp.Client, i int, nsClient, nsEndpoint string) (undoList, error) {
	var socks, tags [2]string
	for k, side := range []struct{ role, ns string }{{"c", nsClient}, {"e", nsEndpoint}} {
		socks[k] = abstractSocket(fmt.Sprintf("vs-plain-%d-%s", i, side.role), side.ns)
		tags[k] = fmt.Sprintf("%s%s/%d", plainTagPrefix, side.role, i)
	}
	u, err := vpp.PlainMemifVWire(ctx, vc, socks, tags)
	return undoList(u), err
}

// plainSide is one node of a plain remote vWire: its VPP, its uplink
// (the tunnels' source) and the namespace of its workload's memif socket.
type plainSide struct {
	vc     *vpp.Client
	uplink vpp.SwIfIndex
	addr   netip.Addr // the node's tunnel address
	nsPath string
}

// plainRemoteVWire makes remote vWire i of the given kind by the plain
// loop (vpp.PlainRemoteSide): node b's side (the endpoint's), then node
// a's (the client's), each with a WireGuard key of its own, on WireGuard's
// port as the forwarders' are.
func plainRemoteVWire(ctx context.Context, a, b plainSide, wireguard bool, i int) (undo undoList, err error) {
	var priv, pub [2][vpp.WireguardKeyLen]byte
	for k := range priv {
		key, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return undo, err
		}
		copy(priv[k][:], key.Bytes())
		copy(pub[k][:], key.PublicKey().Bytes())
	}
	client := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.1/32", 200+i/250, i%250))
	endpoint := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.2/32", 200+i/250, i%250))
	side := func(s, far plainSide, role string, priv, peer [vpp.WireguardKeyLen]byte, mine, theirs netip.Prefix) vpp.PlainRemoteSide {
		return vpp.PlainRemoteSide{
			Socket:    abstractSocket(fmt.Sprintf("vs-plain-r%d-%s", i, role), s.nsPath),
			MemifTag:  fmt.Sprintf("%sr%s/%d", plainTagPrefix, role, i),
			TunTag:    fmt.Sprintf("%sr%s-tun/%d", plainTagPrefix, role, i),
			WireGuard: wireguard, Local: s.addr, Remote: far.addr, VNI: plainVNIBase + uint32(i), Port: mwireguard.DefaultPort,
			PrivateKey: priv, PeerKey: peer, Uplink: s.uplink, Table: plainTable, Mine: mine, Theirs: theirs,
		}
	}
	for _, x := range []struct {
		vc *vpp.Client
		vpp.PlainRemoteSide
	}{
		{b.vc, side(b, a, "e", priv[1], pub[0], endpoint, client)},
		{a.vc, side(a, b, "c", priv[0], pub[1], client, endpoint)},
	} {
		u, err := x.Make(ctx, x.vc)
		undo = append(undo, u...)
		if err != nil {
			return undo, err
		}
	}
	return undo, nil
}
