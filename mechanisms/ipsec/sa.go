package ipsec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"

	"github.com/vwire/vwire/mechanisms/internal/x25519"
)

// Key sizes of an SA.
const (
	// EncryptionKeyLen is an AES-256 key.
	EncryptionKeyLen = 32
	// IntegrityKeyLen is an HMAC-SHA-256 key.
	IntegrityKeyLen = 32
	// MinSPI is the lowest SPI DeriveSAKeys gives: 1..255 are reserved (RFC 4303).
	MinSPI = 256

	// derivationLabel versions the derivation: changing anything below
	// means a new label, or forwarders of different versions stop talking.
	derivationLabel = "vwire ipsec sa v1"
)

// SA is the keying of one direction's security association. vwire's
// dataplanes use AES-256-GCM with a 16-byte ICV (RFC 4106), keyed with
// EncryptionKey and Salt; IntegrityKey serves a dataplane that must fall back
// to AES-256-CBC with HMAC-SHA-256-128, which both ends must then choose alike.
type SA struct {
	SPI           uint32
	EncryptionKey [EncryptionKeyLen]byte
	IntegrityKey  [IntegrityKeyLen]byte
	Salt          uint32
}

// SAKeys are the two SAs of a tunnel as seen from one end.
type SAKeys struct {
	// Outbound is the SA this end encrypts with (local to remote).
	Outbound SA
	// Inbound is the SA this end decrypts with (remote to local).
	Inbound SA
}

// DeriveSAKeys derives both SAs between this end (localPriv) and the peer
// (remotePub). The peer, calling it with its own private key and this end's
// public key and the same seeds, gets the same two SAs with Outbound and
// Inbound swapped.
//
// The derivation: the X25519 shared secret of localPriv and remotePub is the
// HKDF-SHA256 secret; the salt is the label "vwire ipsec sa v1", the two
// public keys in ascending byte order and each seed (length-prefixed); each
// direction reads, from HKDF-Expand with the info "vwire ipsec sa v1 from
// <sender's public key> to <receiver's public key>", the encryption key (32
// bytes), the integrity key (32), the salt (4) and then 4-byte big-endian
// SPIs until one is at least MinSPI.
//
// Seeds tell apart the tunnels of one pair of keys. A forwarder that makes a
// key pair per connection needs none; one that keeps a key pair per node must
// pass something both ends know identically and that differs per connection,
// such as the id of the first path segment. Inbound SPIs are random 32-bit
// values: unique with high probability among the tunnels to one peer address,
// which is what VPP's tunnel protection keys on.
func DeriveSAKeys(localPriv, remotePub [KeyLen]byte, seeds ...[]byte) (SAKeys, error) {
	localPub, err := x25519.Public(localPriv)
	if err != nil {
		return SAKeys{}, fmt.Errorf("ipsec: derive SA keys: %w", err)
	}
	if localPub == remotePub {
		return SAKeys{}, fmt.Errorf("ipsec: derive SA keys: %w", ErrSameKey)
	}
	secret, err := x25519.Shared(localPriv, remotePub)
	if err != nil {
		return SAKeys{}, fmt.Errorf("ipsec: derive SA keys: %w", err)
	}
	lo, hi := localPub, remotePub
	if bytes.Compare(lo[:], hi[:]) > 0 {
		lo, hi = hi, lo
	}
	salt := []byte(derivationLabel)
	salt = append(salt, lo[:]...)
	salt = append(salt, hi[:]...)
	for _, s := range seeds {
		salt = binary.BigEndian.AppendUint32(salt, uint32(len(s)))
		salt = append(salt, s...)
	}
	prk := hkdf.Extract(sha256.New, secret[:], salt)
	out, err := deriveSA(prk, localPub, remotePub)
	if err != nil {
		return SAKeys{}, err
	}
	in, err := deriveSA(prk, remotePub, localPub)
	if err != nil {
		return SAKeys{}, err
	}
	return SAKeys{Outbound: out, Inbound: in}, nil
}

// deriveSA derives the SA from sender to receiver.
func deriveSA(prk []byte, from, to [KeyLen]byte) (SA, error) {
	info := []byte(derivationLabel + " from ")
	info = append(info, from[:]...)
	info = append(info, " to "...)
	info = append(info, to[:]...)
	r := hkdf.Expand(sha256.New, prk, info)
	var sa SA
	var word [4]byte
	if _, err := io.ReadFull(r, sa.EncryptionKey[:]); err != nil {
		return SA{}, fmt.Errorf("ipsec: derive SA keys: %w", err)
	}
	if _, err := io.ReadFull(r, sa.IntegrityKey[:]); err != nil {
		return SA{}, fmt.Errorf("ipsec: derive SA keys: %w", err)
	}
	if _, err := io.ReadFull(r, word[:]); err != nil {
		return SA{}, fmt.Errorf("ipsec: derive SA keys: %w", err)
	}
	sa.Salt = binary.BigEndian.Uint32(word[:])
	for sa.SPI < MinSPI {
		// HKDF-SHA256 gives 8160 bytes, ~2000 tries; a value below 256
		// comes once in 16 million.
		if _, err := io.ReadFull(r, word[:]); err != nil {
			return SA{}, fmt.Errorf("ipsec: derive SA keys: no SPI of %d or more: %w", MinSPI, err)
		}
		sa.SPI = binary.BigEndian.Uint32(word[:])
	}
	return sa, nil
}
