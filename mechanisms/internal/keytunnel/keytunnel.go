// Package keytunnel implements the parameters shared by the mechanisms whose
// tunnels run between two addresses and two UDP ports and whose ends are
// named by Curve25519 public keys: WIREGUARD and IPSEC. The public packages
// define their own Params type with the same fields and convert to and from
// Params here, so the two mechanisms cannot be mixed up by their users.
package keytunnel

import (
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"

	"github.com/vwire/vwire/mechanisms/internal/param"
	"github.com/vwire/vwire/mechanisms/internal/x25519"
)

// Params mirrors the public Params types field for field.
type Params struct {
	SrcIP, DstIP               netip.Addr
	SrcPort, DstPort           uint16
	SrcPublicKey, DstPublicKey string
	MTU                        uint32
}

// Spec describes one mechanism: its error prefix, its type, its parameter
// keys for the public keys and its default port.
type Spec struct {
	Mech        string
	Type        string
	SrcKeyParam string
	DstKeyParam string
	DefaultPort uint16
}

func (s Spec) port(p uint16) uint16 {
	if p == 0 {
		return s.DefaultPort
	}
	return p
}

// Normalize replaces zero ports with the default port and unmaps addresses.
func (s Spec) Normalize(p Params) Params {
	p.SrcPort = s.port(p.SrcPort)
	p.DstPort = s.port(p.DstPort)
	p.SrcIP = p.SrcIP.Unmap()
	p.DstIP = p.DstIP.Unmap()
	return p
}

// New renders p; ports are always written (the default for 0), other unset
// fields are left out.
func (s Spec) New(p Params) *networkservice.Mechanism {
	params := map[string]string{}
	param.Set(params, common.SrcIP, param.FormatAddr(p.SrcIP))
	param.Set(params, common.DstIP, param.FormatAddr(p.DstIP))
	param.Set(params, common.SrcPort, param.FormatUint(s.port(p.SrcPort)))
	param.Set(params, common.DstPort, param.FormatUint(s.port(p.DstPort)))
	param.Set(params, s.SrcKeyParam, p.SrcPublicKey)
	param.Set(params, s.DstKeyParam, p.DstPublicKey)
	param.Set(params, common.MTU, param.FormatUint(p.MTU))
	return &networkservice.Mechanism{Cls: cls.REMOTE, Type: s.Type, Parameters: params}
}

// Parse reads m and checks it: complete, or as an offer.
func (s Spec) Parse(m *networkservice.Mechanism, complete bool) (Params, error) {
	params, err := param.Check(s.Mech, m, s.Type, cls.REMOTE)
	if err != nil {
		return Params{}, err
	}
	var p Params
	if p.SrcIP, err = param.Addr(s.Mech, params, common.SrcIP); err != nil {
		return Params{}, err
	}
	if p.DstIP, err = param.Addr(s.Mech, params, common.DstIP); err != nil {
		return Params{}, err
	}
	port, err := param.Uint(s.Mech, params, common.SrcPort, 16)
	if err != nil {
		return Params{}, err
	}
	p.SrcPort = s.port(uint16(port))
	if port, err = param.Uint(s.Mech, params, common.DstPort, 16); err != nil {
		return Params{}, err
	}
	p.DstPort = s.port(uint16(port))
	p.SrcPublicKey = params[s.SrcKeyParam]
	p.DstPublicKey = params[s.DstKeyParam]
	if p.MTU, err = param.MTU(s.Mech, params, common.MTU); err != nil {
		return Params{}, err
	}
	if err := s.Check(p, complete); err != nil {
		return Params{}, err
	}
	return p, nil
}

// Check checks p: malformed values first, so that an offer and a complete
// mechanism get the same error for them, then missing ones: the source side
// is always required, the destination side only when complete.
func (s Spec) Check(p Params, complete bool) error {
	if err := param.CheckAddr(s.Mech, common.SrcIP, p.SrcIP, false); err != nil {
		return err
	}
	if err := param.CheckAddr(s.Mech, common.DstIP, p.DstIP, false); err != nil {
		return err
	}
	if err := param.SameFamily(s.Mech, common.SrcIP, common.DstIP, p.SrcIP, p.DstIP); err != nil {
		return err
	}
	if err := s.checkKey(s.SrcKeyParam, p.SrcPublicKey, false); err != nil {
		return err
	}
	if err := s.checkKey(s.DstKeyParam, p.DstPublicKey, false); err != nil {
		return err
	}
	if p.SrcPublicKey != "" && p.SrcPublicKey == p.DstPublicKey {
		return param.Invalid(s.Mech, s.DstKeyParam, p.DstPublicKey, "the same key as "+s.SrcKeyParam)
	}
	if err := param.CheckMTU(s.Mech, common.MTU, p.MTU); err != nil {
		return err
	}
	switch {
	case !p.SrcIP.IsValid():
		return param.Missing(s.Mech, common.SrcIP)
	case p.SrcPublicKey == "":
		return param.Missing(s.Mech, s.SrcKeyParam)
	case complete && !p.DstIP.IsValid():
		return param.Missing(s.Mech, common.DstIP)
	case complete && p.DstPublicKey == "":
		return param.Missing(s.Mech, s.DstKeyParam)
	}
	return nil
}

func (s Spec) checkKey(key, value string, required bool) error {
	if value == "" {
		if required {
			return param.Missing(s.Mech, key)
		}
		return nil
	}
	if _, err := x25519.Decode(value); err != nil {
		return param.Invalid(s.Mech, key, value, "want the standard base64 (with padding) of a 32-byte public key, not all zero")
	}
	return nil
}

// Key decodes the public key under key from value.
func (s Spec) Key(key, value string) ([x25519.KeyLen]byte, error) {
	if value == "" {
		return [x25519.KeyLen]byte{}, param.Missing(s.Mech, key)
	}
	k, err := x25519.Decode(value)
	if err != nil {
		return k, s.checkKey(key, value, true)
	}
	return k, nil
}

// Offer is the client side's offer.
func (s Spec) Offer(srcIP netip.Addr, srcPort uint16, srcPub [x25519.KeyLen]byte) Params {
	return s.Normalize(Params{SrcIP: srcIP, SrcPort: srcPort, SrcPublicKey: x25519.Encode(srcPub)})
}

// Accept completes offer with the server side's address, port and key.
func (s Spec) Accept(offer Params, dstIP netip.Addr, dstPort uint16, dstPub [x25519.KeyLen]byte) Params {
	p := offer
	p.DstIP = dstIP
	p.DstPort = dstPort
	p.DstPublicKey = x25519.Encode(dstPub)
	return s.Normalize(p)
}

// Confirm checks that reply is complete and keeps what offer fixed.
func (s Spec) Confirm(offer Params, reply *networkservice.Mechanism) (Params, error) {
	p, err := s.Parse(reply, true)
	if err != nil {
		return Params{}, err
	}
	offer = s.Normalize(offer)
	switch {
	case p.SrcIP != offer.SrcIP:
		return Params{}, param.Mismatch(s.Mech, common.SrcIP, param.FormatAddr(offer.SrcIP), param.FormatAddr(p.SrcIP))
	case p.SrcPort != offer.SrcPort:
		return Params{}, param.Mismatch(s.Mech, common.SrcPort, param.FormatUint(offer.SrcPort), param.FormatUint(p.SrcPort))
	case p.SrcPublicKey != offer.SrcPublicKey:
		return Params{}, param.Mismatch(s.Mech, s.SrcKeyParam, offer.SrcPublicKey, p.SrcPublicKey)
	case offer.DstIP.IsValid() && p.DstIP != offer.DstIP:
		return Params{}, param.Mismatch(s.Mech, common.DstIP, param.FormatAddr(offer.DstIP), param.FormatAddr(p.DstIP))
	case offer.DstPublicKey != "" && p.DstPublicKey != offer.DstPublicKey:
		return Params{}, param.Mismatch(s.Mech, s.DstKeyParam, offer.DstPublicKey, p.DstPublicKey)
	}
	return p, nil
}
