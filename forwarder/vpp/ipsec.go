package vpp

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.fd.io/govpp/binapi/ipip"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
	"go.fd.io/govpp/binapi/tunnel_types"
)

// An IPSEC vWire is an IP-in-IP tunnel between the two nodes whose packets
// ESP protects (route-based IPsec, "tunnel protection"): two SAs in
// transport mode over the tunnel, encapsulated in UDP.

// IpipTunnel is a point-to-point IP-in-IP tunnel.
type IpipTunnel struct {
	Src, Dst netip.Addr
}

// IpipTunnelInfo is what VPP reports of one IP-in-IP tunnel.
type IpipTunnelInfo struct {
	Index SwIfIndex
	IpipTunnel
}

// CreateIpipTunnel creates a tunnel.
func (c *Client) CreateIpipTunnel(ctx context.Context, t IpipTunnel) (idx SwIfIndex, err error) {
	start := time.Now()
	defer func() { c.done(ctx, "ipip_add_tunnel", start, err, "src", t.Src, "dst", t.Dst, "sw_if_index", idx) }()
	reply, err := ipip.NewServiceClient(c.conn).IpipAddTunnel(ctx, t.request())
	if err != nil {
		return NoInterface, fmt.Errorf("ipip %s->%s: create: %w", t.Src, t.Dst, err)
	}
	return SwIfIndex(reply.SwIfIndex), nil
}

// request is the request that creates t.
func (t IpipTunnel) request() *ipip.IpipAddTunnel {
	return &ipip.IpipAddTunnel{Tunnel: ipip.IpipTunnel{
		Instance: ^uint32(0),
		Src:      toAddress(t.Src),
		Dst:      toAddress(t.Dst),
		Mode:     tunnel_types.TUNNEL_API_MODE_P2P,
	}}
}

// DeleteIpipTunnel deletes a tunnel.
func (c *Client) DeleteIpipTunnel(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteIpipTunnelCall(idx))
}

// deleteIpipTunnelCall is the request that deletes tunnel idx, for a
// pipeline.
func deleteIpipTunnelCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &ipip.IpipDelTunnel{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("ipip %d: delete: %w", idx, err) },
	}
}

// ListIpipTunnels returns every IP-in-IP tunnel.
func (c *Client) ListIpipTunnels(ctx context.Context) ([]IpipTunnelInfo, error) {
	var out []IpipTunnelInfo
	err := dump(ctx, c, &ipip.IpipTunnelDump{SwIfIndex: NoInterface.api()}, func(d *ipip.IpipTunnelDetails) {
		out = append(out, IpipTunnelInfo{Index: SwIfIndex(d.Tunnel.SwIfIndex), IpipTunnel: IpipTunnel{Src: fromAddress(d.Tunnel.Src), Dst: fromAddress(d.Tunnel.Dst)}})
	})
	if err != nil {
		return nil, fmt.Errorf("list ipip tunnels: %w", err)
	}
	return out, nil
}

// SA is one direction's ESP security association: AES-256-GCM with a
// 16-byte ICV (RFC 4106), anti-replay, encapsulated in UDP (RFC 3948).
type SA struct {
	// ID is VPP's SA id; vwire uses the SPI.
	ID      uint32
	SPI     uint32
	Key     [32]byte
	Salt    uint32
	Inbound bool
	// UDPSrcPort and UDPDstPort are the ports of the UDP encapsulation.
	UDPSrcPort, UDPDstPort uint16
}

// CreateSA adds an SA.
func (c *Client) CreateSA(ctx context.Context, sa SA) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "ipsec_sad_entry_add_v2", start, err, "sa", sa.ID, "spi", sa.SPI, "inbound", sa.Inbound)
	}()
	_, err = ipsec.NewServiceClient(c.conn).IpsecSadEntryAddV2(ctx, sa.request())
	if err != nil {
		return fmt.Errorf("ipsec sa %d (spi %d): create: %w", sa.ID, sa.SPI, err)
	}
	return nil
}

// request is the request that adds sa.
func (sa SA) request() *ipsec.IpsecSadEntryAddV2 {
	flags := ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP | ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY
	if sa.Inbound {
		flags |= ipsec_types.IPSEC_API_SAD_FLAG_IS_INBOUND
	}
	return &ipsec.IpsecSadEntryAddV2{Entry: ipsec_types.IpsecSadEntryV4{
		SadID:                sa.ID,
		Spi:                  sa.SPI,
		Protocol:             ipsec_types.IPSEC_API_PROTO_ESP,
		CryptoAlgorithm:      ipsec_types.IPSEC_API_CRYPTO_ALG_AES_GCM_256,
		CryptoKey:            ipsec_types.Key{Length: uint8(len(sa.Key)), Data: sa.Key[:]},
		IntegrityAlgorithm:   ipsec_types.IPSEC_API_INTEG_ALG_NONE,
		Flags:                flags,
		Salt:                 sa.Salt,
		UDPSrcPort:           sa.UDPSrcPort,
		UDPDstPort:           sa.UDPDstPort,
		AntiReplayWindowSize: 64,
	}}
}

// DeleteSA deletes an SA no tunnel uses any more.
func (c *Client) DeleteSA(ctx context.Context, id uint32) error {
	return c.pipeline(ctx, deleteSACall(id))
}

// deleteSACall is the request that deletes SA id, for a pipeline.
func deleteSACall(id uint32) pipelined {
	return pipelined{
		req:   &ipsec.IpsecSadEntryDel{ID: id},
		attrs: []any{"sa", id},
		wrap:  func(err error) error { return fmt.Errorf("ipsec sa %d: delete: %w", id, err) },
	}
}

// TunnelProtection is the SAs protecting one tunnel interface.
type TunnelProtection struct {
	Interface SwIfIndex
	Out       uint32
	In        []uint32
}

// CreateTunnelProtection protects a tunnel with SAs.
func (c *Client) CreateTunnelProtection(ctx context.Context, p TunnelProtection) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "ipsec_tunnel_protect_update", start, err, "sw_if_index", p.Interface, "sa_out", p.Out, "sa_in", p.In)
	}()
	_, err = ipsec.NewServiceClient(c.conn).IpsecTunnelProtectUpdate(ctx, &ipsec.IpsecTunnelProtectUpdate{Tunnel: ipsec.IpsecTunnelProtect{
		SwIfIndex: p.Interface.api(), SaOut: p.Out, NSaIn: uint8(len(p.In)), SaIn: p.In,
	}})
	if err != nil {
		return fmt.Errorf("protect tunnel %d: %w", p.Interface, err)
	}
	return nil
}

// DeleteTunnelProtection removes a tunnel's protection (not its SAs).
func (c *Client) DeleteTunnelProtection(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteTunnelProtectionCall(idx))
}

// deleteTunnelProtectionCall is the request that removes tunnel idx's
// protection, for a pipeline.
func deleteTunnelProtectionCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &ipsec.IpsecTunnelProtectDel{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("unprotect tunnel %d: %w", idx, err) },
	}
}

// ListTunnelProtections returns the protections of one interface, or of
// all with NoInterface.
func (c *Client) ListTunnelProtections(ctx context.Context, idx SwIfIndex) ([]TunnelProtection, error) {
	var out []TunnelProtection
	err := dump(ctx, c, &ipsec.IpsecTunnelProtectDump{SwIfIndex: idx.api()}, func(d *ipsec.IpsecTunnelProtectDetails) {
		out = append(out, TunnelProtection{Interface: SwIfIndex(d.Tun.SwIfIndex), Out: d.Tun.SaOut, In: append([]uint32(nil), d.Tun.SaIn...)})
	})
	if err != nil {
		return nil, fmt.Errorf("list tunnel protections: %w", err)
	}
	return out, nil
}

// removeIpipTunnelOf deletes the untagged IP-in-IP tunnel from t.Src to
// t.Dst if VPP has one: the undo of an ipip_add_tunnel that got no answer.
// VPP serves a connection's messages in order, so the listing, sent after
// the create, shows the tunnel if the create made it; a tagged one is
// another vWire's. One that cannot be looked for or deleted is logged.
func removeIpipTunnelOf(ctx context.Context, cl *Client, t IpipTunnel) error {
	err := func() error {
		tuns, err := cl.ListIpipTunnels(ctx)
		if err != nil {
			return err
		}
		for _, x := range tuns {
			if x.Src != t.Src || x.Dst != t.Dst {
				continue
			}
			i, ok, err := cl.GetInterface(ctx, x.Index)
			if err != nil {
				return err
			}
			if ok && i.Tag == "" {
				return cl.DeleteIpipTunnel(ctx, x.Index)
			}
		}
		return nil
	}()
	if err != nil {
		cl.log.Error("an ipip_add_tunnel got no answer and the tunnel it may have made cannot be removed: left untagged in VPP",
			"src", t.Src, "dst", t.Dst, "err", err)
	}
	return err
}
