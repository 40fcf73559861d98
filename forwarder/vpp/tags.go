package vpp

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Every VPP interface and IP table the dataplane makes carries a tag
// "vwire/<role>/<connID>" (VPP keeps at most 63 bytes), and so does every
// Linux link it makes, as its alias, so that a restarted forwarder finds its
// own objects again, and only them.
const (
	tagPrefix = "vwire/"
	// MaxTagLen is the longest tag VPP stores (64 bytes with the NUL).
	MaxTagLen = 63
)

// Roles of the objects of one vWire, and of the node's shared uplink.
const (
	roleIn     = "in"     // this node's end of the incoming side
	roleOut    = "out"    // this node's end of the outgoing side
	roleWL     = "wl"     // a veth end inside a workload's namespace
	roleUplink = "uplink" // the af_packet interface on the node's uplink; id = host interface name
)

// Tag is the decoded form of a tag.
type Tag struct {
	Role string
	// Key is the connection id, or "~" and 40 hex digits of its SHA-256
	// when the id is too long to fit (see tagKey).
	Key string
}

// String renders t.
func (t Tag) String() string { return tagPrefix + t.Role + "/" + t.Key }

// tagKey is how a connection id appears in tags: itself when the tag fits
// in MaxTagLen bytes with the longest role, else a hash of it.
func tagKey(id string) string {
	if len(tagPrefix)+len(roleUplink)+1+len(id) <= MaxTagLen && !strings.ContainsAny(id, "\x00") {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "~" + hex.EncodeToString(sum[:20])
}

// tagOf returns the tag of id's object in role.
func tagOf(role, id string) Tag { return Tag{Role: role, Key: tagKey(id)} }

// ParseTag decodes a tag; ok is false for a tag that is not ours.
func ParseTag(s string) (t Tag, ok bool) {
	rest, ok := strings.CutPrefix(s, tagPrefix)
	if !ok {
		return Tag{}, false
	}
	t.Role, t.Key, ok = strings.Cut(rest, "/")
	return t, ok && t.Role != "" && t.Key != ""
}

// linkName is the name of a Linux link of ours in the forwarder's
// namespace, from a tag key: "vv" + role letter + 10 hex digits of the
// key's hash, 13 bytes
// (Linux allows 15). It differs from the kernel dataplane's names, so both
// dataplanes can share a node while one is being replaced.
func linkName(role, key string) string {
	sum := sha256.Sum256([]byte(key))
	return "vv" + role[:1] + hex.EncodeToString(sum[:5])
}
