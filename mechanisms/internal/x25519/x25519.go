// Package x25519 holds the Curve25519 key helpers that the wireguard and ipsec
// mechanisms share: generating a key pair, deriving a public key, computing a
// shared secret and the base64 text form in which keys travel as mechanism
// parameters (standard encoding with padding, 44 characters, as wg(8) prints
// them).
package x25519

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// Sentinel errors.
var (
	// ErrBadKey: the text is not the base64 of 32 bytes, or the key is all zero.
	ErrBadKey = errors.New("not a base64-encoded 32-byte Curve25519 key")
	// ErrLowOrder: the peer's public key gives an all-zero shared secret.
	ErrLowOrder = errors.New("public key is a low-order point")
)

// KeyLen is the length of a Curve25519 key in bytes.
const KeyLen = 32

var encoding = base64.StdEncoding.Strict()

// Generate returns a new private key (clamped as WireGuard does) and its
// public key.
func Generate() (private, public [KeyLen]byte, err error) {
	if _, err := rand.Read(private[:]); err != nil {
		return private, public, fmt.Errorf("x25519: read random key: %w", err)
	}
	private[0] &= 248
	private[31] = private[31]&127 | 64
	public, err = Public(private)
	return private, public, err
}

// Public derives the public key of private. crypto/ecdh does it with one
// scalar multiplication; curve25519.X25519 with the base point does two
// (it makes the ecdh key, then multiplies the base point again), and a
// VPP node builds a key pair per tunnel side.
func Public(private [KeyLen]byte) ([KeyLen]byte, error) {
	var public [KeyLen]byte
	k, err := ecdh.X25519().NewPrivateKey(private[:])
	if err != nil {
		return public, fmt.Errorf("x25519: derive public key: %w", err)
	}
	copy(public[:], k.PublicKey().Bytes())
	return public, nil
}

// Shared computes the X25519 shared secret of private and peer's public key.
func Shared(private, peer [KeyLen]byte) ([KeyLen]byte, error) {
	var secret [KeyLen]byte
	out, err := curve25519.X25519(private[:], peer[:])
	if err != nil {
		return secret, fmt.Errorf("x25519: %w", ErrLowOrder)
	}
	copy(secret[:], out)
	return secret, nil
}

// Encode renders k as standard base64 with padding.
func Encode(k [KeyLen]byte) string {
	return encoding.EncodeToString(k[:])
}

// Decode parses a key rendered by Encode. Only the canonical form is accepted
// (so that decoding then encoding gives back the same text), and an all-zero
// key is refused.
func Decode(s string) ([KeyLen]byte, error) {
	var k [KeyLen]byte
	if len(s) != encoding.EncodedLen(KeyLen) {
		return k, ErrBadKey
	}
	// Decode writes up to DecodedLen bytes: 33 for 44 characters unpadded.
	buf := make([]byte, encoding.DecodedLen(len(s)))
	n, err := encoding.Decode(buf, []byte(s))
	if err != nil || n != KeyLen {
		return k, ErrBadKey
	}
	copy(k[:], buf)
	if k == [KeyLen]byte{} || Encode(k) != s {
		return [KeyLen]byte{}, ErrBadKey
	}
	return k, nil
}
