package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Every link the dataplane makes carries an alias "vwire/<role>/<connID>",
// so that a restarted forwarder finds its own links again (and only them).
const aliasPrefix = "vwire/"

// Roles of the links of one vWire.
const (
	roleIn  = "in"  // this node's end of the incoming side (veth end or vxlan)
	roleOut = "out" // this node's end of the outgoing side
	roleWL  = "wl"  // the veth end inside a workload's namespace
)

func alias(role, id string) string { return aliasPrefix + role + "/" + id }

// parseAlias returns the role and connection id of one of our aliases.
func parseAlias(a string) (role, id string, ok bool) {
	rest, ok := strings.CutPrefix(a, aliasPrefix)
	if !ok {
		return "", "", false
	}
	role, id, ok = strings.Cut(rest, "/")
	return role, id, ok && id != ""
}

// linkName is the name of a link of ours in the forwarder's namespace:
// "vw" + role letter + 10 hex digits of the id's hash, 13 bytes (Linux
// allows 15).
func linkName(role, id string) string {
	sum := sha256.Sum256([]byte(id))
	return "vw" + role[:1] + hex.EncodeToString(sum[:5])
}
