package vpp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/gso"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/wireguard"
)

// Interface is what VPP reports of one software interface.
type Interface struct {
	Index   SwIfIndex
	Name    string // VPP's name: memif0/1, host-eth0, tap3, vxlan_tunnel2, wg0, ipip1...
	DevType string
	Tag     string
	MAC     net.HardwareAddr
	AdminUp bool
	LinkUp  bool
	MTU     uint32 // L3 MTU
	// Sub is set for a sub-interface, of parent Sup, with id SubID (its
	// VLAN on the KERNEL trunk).
	Sub   bool
	Sup   SwIfIndex
	SubID uint32
}

// kind names the object an interface belongs to by VPP's interface name.
func (i Interface) kind() string {
	if i.Sub {
		return "sub"
	}
	for _, k := range []string{"memif", "host-", "tap", "vxlan_tunnel", "wg", "ipip", "loop"} {
		if strings.HasPrefix(i.Name, k) {
			return k
		}
	}
	return ""
}

// ListInterfaces returns every software interface.
func (c *Client) ListInterfaces(ctx context.Context) ([]Interface, error) {
	out, err := c.listInterfaces(ctx, NoInterface)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return out, nil
}

// GetInterface returns interface idx; ok is false when VPP has none by
// that index. It asks VPP for that one interface, not the whole list.
func (c *Client) GetInterface(ctx context.Context, idx SwIfIndex) (i Interface, ok bool, err error) {
	out, err := c.listInterfaces(ctx, idx)
	if err != nil {
		return Interface{}, false, fmt.Errorf("interface %d: %w", idx, err)
	}
	for _, i := range out {
		if i.Index == idx {
			return i, true, nil
		}
	}
	return Interface{}, false, nil
}

// GetInterfaces returns the interfaces of idxs, in one round trip (their
// dumps pipelined); ok[i] is false when VPP has no interface idxs[i].
func (c *Client) GetInterfaces(ctx context.Context, idxs ...SwIfIndex) (out []Interface, ok []bool, err error) {
	reqs := make([]api.Message, len(idxs))
	for i, idx := range idxs {
		reqs[i] = &interfaces.SwInterfaceDump{SwIfIndex: idx.api()}
	}
	out, ok = make([]Interface, len(idxs)), make([]bool, len(idxs))
	err = dumps(ctx, c, reqs, func(i int, d *interfaces.SwInterfaceDetails) {
		if got := interfaceOf(d); got.Index == idxs[i] {
			out[i], ok[i] = got, true
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("interfaces %v: %w", idxs, err)
	}
	return out, ok, nil
}

// findInterfaceNamed returns the interface named name; ok is false when
// VPP has none. VPP is asked for the interfaces whose name holds name (its
// name filter: a substring, case aside, see sw_interface_dump's handler),
// not the whole list, and the one named exactly name is kept.
func (c *Client) findInterfaceNamed(ctx context.Context, name string) (found Interface, ok bool, err error) {
	req := &interfaces.SwInterfaceDump{SwIfIndex: NoInterface.api(), NameFilterValid: true, NameFilter: name}
	err = dump(ctx, c, req, func(d *interfaces.SwInterfaceDetails) {
		if i := interfaceOf(d); i.Name == name {
			found, ok = i, true
		}
	})
	if err != nil {
		return Interface{}, false, fmt.Errorf("interface %q: find: %w", name, err)
	}
	return found, ok, nil
}

// listInterfaces dumps interface idx, or every one for NoInterface.
func (c *Client) listInterfaces(ctx context.Context, idx SwIfIndex) ([]Interface, error) {
	var out []Interface
	err := dump(ctx, c, &interfaces.SwInterfaceDump{SwIfIndex: idx.api()}, func(d *interfaces.SwInterfaceDetails) {
		out = append(out, interfaceOf(d))
	})
	return out, err
}

// interfaceOf is the Interface of one sw_interface_details.
func interfaceOf(d *interfaces.SwInterfaceDetails) Interface {
	i := Interface{
		Index:   SwIfIndex(d.SwIfIndex),
		Name:    d.InterfaceName,
		DevType: d.InterfaceDevType,
		Tag:     d.Tag,
		MAC:     fromMAC(d.L2Address),
		AdminUp: d.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0,
		LinkUp:  d.Flags&interface_types.IF_STATUS_API_FLAG_LINK_UP != 0,
		Sub:     d.SupSwIfIndex != uint32(d.SwIfIndex),
		Sup:     SwIfIndex(d.SupSwIfIndex),
		SubID:   d.SubID,
	}
	if len(d.Mtu) > 0 {
		i.MTU = d.Mtu[0]
	}
	return i
}

// SetInterfaceUp sets an interface administratively up.
func (c *Client) SetInterfaceUp(ctx context.Context, idx SwIfIndex) error {
	return c.setFlags(ctx, idx, interface_types.IF_STATUS_API_FLAG_ADMIN_UP)
}

// SetInterfaceDown sets an interface administratively down.
func (c *Client) SetInterfaceDown(ctx context.Context, idx SwIfIndex) error {
	return c.setFlags(ctx, idx, 0)
}

func (c *Client) setFlags(ctx context.Context, idx SwIfIndex, flags interface_types.IfStatusFlags) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "sw_interface_set_flags", start, err, "sw_if_index", idx, "flags", flags) }()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceSetFlags(ctx, &interfaces.SwInterfaceSetFlags{SwIfIndex: idx.api(), Flags: flags})
	if err != nil {
		return fmt.Errorf("set interface %d flags %d: %w", idx, flags, err)
	}
	return nil
}

// SetInterfacePolling puts every receive queue of an interface in polling
// mode.
func (c *Client) SetInterfacePolling(ctx context.Context, idx SwIfIndex) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "sw_interface_set_rx_mode", start, err, "sw_if_index", idx, "mode", "polling") }()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceSetRxMode(ctx, &interfaces.SwInterfaceSetRxMode{
		SwIfIndex: idx.api(), Mode: interface_types.RX_MODE_API_POLLING})
	if err != nil {
		return fmt.Errorf("set interface %d rx mode polling: %w", idx, err)
	}
	return nil
}

// SetInterfaceTag tags an interface (at most MaxTagLen bytes).
func (c *Client) SetInterfaceTag(ctx context.Context, idx SwIfIndex, tag string) error {
	return c.tag(ctx, idx, tag, true)
}

// DeleteInterfaceTag removes an interface's tag.
func (c *Client) DeleteInterfaceTag(ctx context.Context, idx SwIfIndex) error {
	return c.tag(ctx, idx, "", false)
}

func (c *Client) tag(ctx context.Context, idx SwIfIndex, tag string, add bool) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "sw_interface_tag_add_del", start, err, "sw_if_index", idx, "tag", tag, "add", add)
	}()
	if len(tag) > MaxTagLen {
		return fmt.Errorf("tag interface %d: tag %q longer than %d bytes", idx, tag, MaxTagLen)
	}
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceTagAddDel(ctx, &interfaces.SwInterfaceTagAddDel{IsAdd: add, SwIfIndex: idx.api(), Tag: tag})
	if err != nil {
		return fmt.Errorf("tag interface %d %q: %w", idx, tag, err)
	}
	return nil
}

// SetInterfaceMTU sets an interface's L3, IPv4, IPv6 and MPLS MTU.
func (c *Client) SetInterfaceMTU(ctx context.Context, idx SwIfIndex, mtu uint32) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "sw_interface_set_mtu", start, err, "sw_if_index", idx, "mtu", mtu) }()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceSetMtu(ctx, &interfaces.SwInterfaceSetMtu{SwIfIndex: idx.api(), Mtu: []uint32{mtu, mtu, mtu, mtu}})
	if err != nil {
		return fmt.Errorf("set interface %d mtu %d: %w", idx, mtu, err)
	}
	return nil
}

// AddInterfaceAddress adds an address to an interface.
func (c *Client) AddInterfaceAddress(ctx context.Context, idx SwIfIndex, p netip.Prefix) error {
	return c.address(ctx, idx, p, true)
}

// DeleteInterfaceAddress removes an address from an interface.
func (c *Client) DeleteInterfaceAddress(ctx context.Context, idx SwIfIndex, p netip.Prefix) error {
	return c.address(ctx, idx, p, false)
}

func (c *Client) address(ctx context.Context, idx SwIfIndex, p netip.Prefix, add bool) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "sw_interface_add_del_address", start, err, "sw_if_index", idx, "prefix", p, "add", add)
	}()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceAddDelAddress(ctx, &interfaces.SwInterfaceAddDelAddress{
		SwIfIndex: idx.api(), IsAdd: add, Prefix: ip_types.AddressWithPrefix(toPrefix(p)),
	})
	if err != nil {
		return fmt.Errorf("address %s on interface %d (add %v): %w", p, idx, add, err)
	}
	return nil
}

// SetInterfaceTable binds an interface to an IP table (before it has
// addresses).
func (c *Client) SetInterfaceTable(ctx context.Context, idx SwIfIndex, table uint32, ip6 bool) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "sw_interface_set_table", start, err, "sw_if_index", idx, "table", table, "ip6", ip6)
	}()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceSetTable(ctx, &interfaces.SwInterfaceSetTable{SwIfIndex: idx.api(), IsIPv6: ip6, VrfID: table})
	if err != nil {
		return fmt.Errorf("interface %d into table %d (ip6 %v): %w", idx, table, ip6, err)
	}
	return nil
}

// SetInterfaceUnnumbered makes idx borrow the addresses of from, which
// enables IP on it without an address of its own (for tunnels).
func (c *Client) SetInterfaceUnnumbered(ctx context.Context, idx, from SwIfIndex) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "sw_interface_set_unnumbered", start, err, "sw_if_index", idx, "from", from) }()
	_, err = interfaces.NewServiceClient(c.conn).SwInterfaceSetUnnumbered(ctx, &interfaces.SwInterfaceSetUnnumbered{SwIfIndex: from.api(), UnnumberedSwIfIndex: idx.api(), IsAdd: true})
	if err != nil {
		return fmt.Errorf("interface %d unnumbered to %d: %w", idx, from, err)
	}
	return nil
}

// InterfaceSetup is what SetupInterface sets, in this order.
type InterfaceSetup struct {
	Tag string // none when empty
	// Peer is the WireGuard peer of a WireGuard interface (added before
	// the interface goes up, as VPP then starts its first handshake).
	Peer *WireguardPeerSpec
	// IP: the tables the interface goes into (one per family), the
	// interface it is unnumbered to (when Unnumbered), its addresses, and
	// the routes through it.
	Tables       []TableBinding
	Unnumbered   bool
	UnnumberedTo SwIfIndex
	Addrs        []netip.Prefix
	Routes       []Route
	MTU          uint32 // left as it is when 0
	GSO          bool   // turn on VPP's software segmentation of GSO packets sent by it
	Up           bool   // set admin up
}

// TableBinding puts an interface into IP table ID of one family.
type TableBinding struct {
	ID  uint32
	IP6 bool
}

// SetupMade is what SetupInterface made that outlives the interface in
// VPP (or is told apart from it), to be removed on its own: the routes,
// and the WireGuard peer.
type SetupMade struct {
	Routes   []Route
	Peer     uint32
	PeerMade bool
}

// SetupInterface sets up interface idx as s says, every request pipelined
// (one round trip to VPP, see Client.pipeline). Requests after a failed
// one run all the same: made says what to remove besides the interface,
// also on error.
func (c *Client) SetupInterface(ctx context.Context, idx SwIfIndex, s InterfaceSetup) (made SetupMade, err error) {
	calls, err := c.setupCalls(idx, s, &made)
	if err != nil || len(calls) == 0 {
		return made, err
	}
	return made, c.pipeline(ctx, calls...)
}

// setupCalls are the requests that set up interface idx as s says, for a
// pipeline; each that succeeds records in made what it made.
func (c *Client) setupCalls(idx SwIfIndex, s InterfaceSetup, made *SetupMade) ([]pipelined, error) {
	var calls []pipelined
	if s.Tag != "" {
		if len(s.Tag) > MaxTagLen {
			return nil, fmt.Errorf("tag interface %d: tag %q longer than %d bytes", idx, s.Tag, MaxTagLen)
		}
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceTagAddDel{IsAdd: true, SwIfIndex: idx.api(), Tag: s.Tag},
			attrs: []any{"sw_if_index", idx, "tag", s.Tag, "add", true},
			wrap:  func(err error) error { return fmt.Errorf("tag interface %d %q: %w", idx, s.Tag, err) },
		})
	}
	if s.Peer != nil {
		peer := *s.Peer
		peer.Interface = idx
		p := c.wireguardPeerCall(peer)
		p.got = func(m api.Message) {
			if r, ok := m.(*wireguard.WireguardPeerAddReply); ok {
				made.Peer, made.PeerMade = r.PeerIndex, true
			}
		}
		calls = append(calls, p)
	}
	for _, t := range s.Tables {
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceSetTable{SwIfIndex: idx.api(), IsIPv6: t.IP6, VrfID: t.ID},
			attrs: []any{"sw_if_index", idx, "table", t.ID, "ip6", t.IP6},
			wrap: func(err error) error {
				return fmt.Errorf("interface %d into table %d (ip6 %v): %w", idx, t.ID, t.IP6, err)
			},
		})
	}
	if s.Unnumbered {
		from := s.UnnumberedTo
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceSetUnnumbered{SwIfIndex: from.api(), UnnumberedSwIfIndex: idx.api(), IsAdd: true},
			attrs: []any{"sw_if_index", idx, "from", from},
			wrap:  func(err error) error { return fmt.Errorf("interface %d unnumbered to %d: %w", idx, from, err) },
		})
	}
	for _, a := range s.Addrs {
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceAddDelAddress{SwIfIndex: idx.api(), IsAdd: true, Prefix: ip_types.AddressWithPrefix(toPrefix(a))},
			attrs: []any{"sw_if_index", idx, "prefix", a, "add", true},
			wrap:  func(err error) error { return fmt.Errorf("address %s on interface %d (add true): %w", a, idx, err) },
		})
	}
	for _, r := range s.Routes {
		p := c.routeCall(r, true)
		p.got = func(api.Message) { made.Routes = append(made.Routes, r) }
		// A route whose reply was lost may be in VPP: its removal is
		// recorded too (a delete of what is not there is no failure).
		// Left behind, it would outlive its interface, and the next
		// vWire given its prefix in its table would replace it.
		p.lost = func() { made.Routes = append(made.Routes, r) }
		calls = append(calls, p)
	}
	if s.MTU != 0 {
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceSetMtu{SwIfIndex: idx.api(), Mtu: []uint32{s.MTU, s.MTU, s.MTU, s.MTU}},
			attrs: []any{"sw_if_index", idx, "mtu", s.MTU},
			wrap:  func(err error) error { return fmt.Errorf("set interface %d mtu %d: %w", idx, s.MTU, err) },
		})
	}
	if s.GSO {
		calls = append(calls, pipelined{
			req:   &gso.FeatureGsoEnableDisable{SwIfIndex: idx.api(), EnableDisable: true},
			attrs: []any{"sw_if_index", idx, "enable", true},
			wrap:  func(err error) error { return fmt.Errorf("interface %d: enable gso feature: %w", idx, err) },
		})
	}
	if s.Up {
		flags := interface_types.IF_STATUS_API_FLAG_ADMIN_UP
		calls = append(calls, pipelined{
			req:   &interfaces.SwInterfaceSetFlags{SwIfIndex: idx.api(), Flags: flags},
			attrs: []any{"sw_if_index", idx, "flags", flags},
			wrap:  func(err error) error { return fmt.Errorf("set interface %d flags %d: %w", idx, flags, err) },
		})
	}
	return calls, nil
}
