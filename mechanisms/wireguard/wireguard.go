// Package wireguard is the WIREGUARD mechanism (class REMOTE): a WireGuard
// tunnel between SrcIP:SrcPort (the client-side forwarder) and DstIP:DstPort
// (the server-side forwarder), whose ends are the peers SrcPublicKey and
// DstPublicKey (standard base64 of 32 bytes, as wg(8) prints them). Ports are
// UDP listening ports; 0 or absent means DefaultPort. Negotiation takes one
// round trip: the client-side forwarder sends Offer(its address, port and
// public key), the server-side forwarder parses it with FromOffer and answers
// with Accept(offer, its address, port and public key), and the client checks
// the reply with Confirm. Private keys never leave the forwarder that made
// them (GenerateKey).
package wireguard

import (
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	nsmwireguard "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/wireguard"

	"github.com/vwire/vwire/mechanisms/internal/keytunnel"
	"github.com/vwire/vwire/mechanisms/internal/param"
	"github.com/vwire/vwire/mechanisms/internal/x25519"
)

// Sentinel errors (shared by all mechanism packages, except ErrBadKey).
var (
	ErrWrongType        = param.ErrWrongType
	ErrWrongClass       = param.ErrWrongClass
	ErrMissingParameter = param.ErrMissing
	ErrInvalidParameter = param.ErrInvalid
	ErrMismatch         = param.ErrMismatch
	// ErrBadKey: DecodeKey was given something other than a canonical
	// base64-encoded, non-zero 32-byte key.
	ErrBadKey = x25519.ErrBadKey
)

const (
	// Type is the mechanism type, wireguard.MECHANISM.
	Type = nsmwireguard.MECHANISM
	// Class is the class a WIREGUARD mechanism must have.
	Class = cls.REMOTE
	// DefaultPort is WireGuard's customary port, used for a port of 0.
	DefaultPort = 51820
	// KeyLen is the length of a key in bytes.
	KeyLen = x25519.KeyLen
)

var spec = keytunnel.Spec{
	Mech:        "wireguard",
	Type:        Type,
	SrcKeyParam: nsmwireguard.SrcPublicKey,
	DstKeyParam: nsmwireguard.DstPublicKey,
	DefaultPort: DefaultPort,
}

// Params are the WIREGUARD mechanism's parameters.
type Params struct {
	// SrcIP and DstIP are the tunnel's addresses (parameters "src_ip",
	// "dst_ip"), both IPv4 or both IPv6.
	SrcIP, DstIP netip.Addr
	// SrcPort and DstPort are the UDP ports each end listens on; 0 means
	// DefaultPort (parameters "src_port", "dst_port").
	SrcPort, DstPort uint16
	// SrcPublicKey and DstPublicKey are each end's public key in base64
	// (parameters "src_public_key", "dst_public_key").
	SrcPublicKey, DstPublicKey string
	// MTU is the tunnel interface MTU; 0 leaves it to the dataplane.
	MTU uint32
}

// New renders p as a REMOTE WIREGUARD mechanism. Ports are always written
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
	return spec.Key(nsmwireguard.SrcPublicKey, p.SrcPublicKey)
}

// DstKey decodes DstPublicKey.
func (p Params) DstKey() ([KeyLen]byte, error) {
	return spec.Key(nsmwireguard.DstPublicKey, p.DstPublicKey)
}

// Offer returns what the client-side forwarder offers: its tunnel address,
// listening port (0 for DefaultPort) and public key. Set MTU on the result to
// ask for one, then render it with New.
func Offer(srcIP netip.Addr, srcPort uint16, srcPub [KeyLen]byte) Params {
	return Params(spec.Offer(srcIP, srcPort, srcPub))
}

// Accept completes an offer (parsed with FromOffer) on the server-side
// forwarder with its tunnel address, listening port (0 for DefaultPort) and
// public key. It checks nothing: the offer was checked by FromOffer and the
// rest is the server's own; call Validate on the result if in doubt.
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

// GenerateKey returns a new private key, clamped as WireGuard does, and its
// public key.
func GenerateKey() (private, public [KeyLen]byte, err error) { return x25519.Generate() }

// PublicKey derives the public key of private.
func PublicKey(private [KeyLen]byte) ([KeyLen]byte, error) { return x25519.Public(private) }

// EncodeKey renders a key as standard base64 with padding.
func EncodeKey(k [KeyLen]byte) string { return x25519.Encode(k) }

// DecodeKey parses a key rendered by EncodeKey; it refuses non-canonical
// base64 and the all-zero key with ErrBadKey.
func DecodeKey(s string) ([KeyLen]byte, error) { return x25519.Decode(s) }
