// Package ipsec is the IPSEC mechanism (class REMOTE): ESP security
// associations between SrcIP (the client-side forwarder) and DstIP (the
// server-side forwarder), encapsulated in UDP (RFC 3948) from SrcPort to
// DstPort (0 or absent means DefaultPort, 4500). Each end is named by a
// Curve25519 public key, SrcPublicKey and DstPublicKey, exchanged exactly as
// the wireguard mechanism does: Offer, FromOffer and Accept, Confirm. There is
// no IKE: each forwarder computes the X25519 shared secret of its private key
// and the peer's public key and derives both SAs from it with HKDF-SHA256
// (DeriveSAKeys), the direction named in the HKDF info by the sending and the
// receiving public key. Both ends thus install the same pair of SAs (A to B,
// B to A) from the parameters they already exchanged, so two vwire forwarders
// interoperate without an IKE daemon, without a second round trip, and
// without keys on the wire. The exchange is as trustworthy as the control
// plane that carries it (mTLS between every hop, signed path tokens); rekey
// by requesting again with new key pairs.
package ipsec

import (
	"errors"
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	nsmipsec "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/ipsec"

	"github.com/vwire/vwire/mechanisms/internal/keytunnel"
	"github.com/vwire/vwire/mechanisms/internal/param"
	"github.com/vwire/vwire/mechanisms/internal/x25519"
)

// Sentinel errors (shared by all mechanism packages, except the last three).
var (
	ErrWrongType        = param.ErrWrongType
	ErrWrongClass       = param.ErrWrongClass
	ErrMissingParameter = param.ErrMissing
	ErrInvalidParameter = param.ErrInvalid
	ErrMismatch         = param.ErrMismatch
	// ErrBadKey: DecodeKey was given something other than a canonical
	// base64-encoded, non-zero 32-byte key.
	ErrBadKey = x25519.ErrBadKey
	// ErrLowOrder: the peer's public key gives an all-zero shared secret.
	ErrLowOrder = x25519.ErrLowOrder
	// ErrSameKey: DeriveSAKeys was given the local public key as the peer's,
	// which leaves the two directions indistinguishable.
	ErrSameKey = errors.New("peer public key is the local public key")
)

const (
	// Type is the mechanism type, ipsec.MECHANISM.
	Type = nsmipsec.MECHANISM
	// Class is the class an IPSEC mechanism must have.
	Class = cls.REMOTE
	// DefaultPort is the UDP port of ESP in UDP (RFC 3948), used for a port of 0.
	DefaultPort = 4500
	// KeyLen is the length of a Curve25519 key in bytes.
	KeyLen = x25519.KeyLen
)

var spec = keytunnel.Spec{
	Mech:        "ipsec",
	Type:        Type,
	SrcKeyParam: nsmipsec.SrcPublicKey,
	DstKeyParam: nsmipsec.DstPublicKey,
	DefaultPort: DefaultPort,
}

// Params are the IPSEC mechanism's parameters.
type Params struct {
	// SrcIP and DstIP are the tunnel's addresses (parameters "src_ip",
	// "dst_ip"), both IPv4 or both IPv6.
	SrcIP, DstIP netip.Addr
	// SrcPort and DstPort are the UDP ports of the ESP-in-UDP encapsulation;
	// 0 means DefaultPort (parameters "src_port", "dst_port").
	SrcPort, DstPort uint16
	// SrcPublicKey and DstPublicKey are each end's Curve25519 public key in
	// base64 (parameters "src_public_key", "dst_public_key").
	SrcPublicKey, DstPublicKey string
	// MTU is the tunnel interface MTU; 0 leaves it to the dataplane.
	MTU uint32
}

// New renders p as a REMOTE IPSEC mechanism. Ports are always written
// (DefaultPort for 0); other unset fields are left out.
func New(p Params) *networkservice.Mechanism { return spec.New(keytunnel.Params(p)) }

// FromMechanism parses complete parameters, ready to build: both addresses
// and both keys are required. Ports are never 0 in the result.
func FromMechanism(m *networkservice.Mechanism) (Params, error) {
	p, err := spec.Parse(m, true)
	return Params(p), err
}

// FromOffer parses an offer: SrcIP and SrcPublicKey are required, the
// destination's fields may be missing. Ports are never 0 in the result.
func FromOffer(m *networkservice.Mechanism) (Params, error) {
	p, err := spec.Parse(m, false)
	return Params(p), err
}

// Validate checks that p is complete and well formed.
func (p Params) Validate() error { return spec.Check(keytunnel.Params(p), true) }

// ValidateOffer checks what an offer must hold (SrcIP, SrcPublicKey) and
// that the other fields, when set, are well formed.
func (p Params) ValidateOffer() error { return spec.Check(keytunnel.Params(p), false) }

// SrcKey decodes SrcPublicKey.
func (p Params) SrcKey() ([KeyLen]byte, error) {
	return spec.Key(nsmipsec.SrcPublicKey, p.SrcPublicKey)
}

// DstKey decodes DstPublicKey.
func (p Params) DstKey() ([KeyLen]byte, error) {
	return spec.Key(nsmipsec.DstPublicKey, p.DstPublicKey)
}

// Offer returns what the client-side forwarder offers: its tunnel address,
// UDP port (0 for DefaultPort) and public key. Set MTU on the result to ask
// for one, then render it with New.
func Offer(srcIP netip.Addr, srcPort uint16, srcPub [KeyLen]byte) Params {
	return Params(spec.Offer(srcIP, srcPort, srcPub))
}

// Accept completes an offer (parsed with FromOffer) on the server-side
// forwarder with its tunnel address, UDP port (0 for DefaultPort) and public
// key. It checks nothing: the offer was checked by FromOffer and the rest is
// the server's own; call Validate on the result if in doubt.
func Accept(offer Params, dstIP netip.Addr, dstPort uint16, dstPub [KeyLen]byte) Params {
	return Params(spec.Accept(keytunnel.Params(offer), dstIP, dstPort, dstPub))
}

// Confirm checks the server's reply to offer on the client-side forwarder:
// complete, and with the offered source address, port and key (and the
// destination's address or key, if the offer named them). It returns the
// parameters to build the tunnel with.
func Confirm(offer Params, reply *networkservice.Mechanism) (Params, error) {
	p, err := spec.Confirm(keytunnel.Params(offer), reply)
	return Params(p), err
}

// GenerateKey returns a new private key and its public key.
func GenerateKey() (private, public [KeyLen]byte, err error) { return x25519.Generate() }

// PublicKey derives the public key of private.
func PublicKey(private [KeyLen]byte) ([KeyLen]byte, error) { return x25519.Public(private) }

// EncodeKey renders a key as standard base64 with padding.
func EncodeKey(k [KeyLen]byte) string { return x25519.Encode(k) }

// DecodeKey parses a key rendered by EncodeKey; it refuses non-canonical
// base64 and the all-zero key with ErrBadKey.
func DecodeKey(s string) ([KeyLen]byte, error) { return x25519.Decode(s) }
