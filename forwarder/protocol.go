// Package forwarder is the generic half of a vwire forwarder: it receives
// its manager's Requests, asks a Dataplane to terminate the incoming
// mechanism, offers mechanisms to the next hop, calls it, and has the
// dataplane build the vWire when the reply comes back. Close and expiry undo
// it. The kernel and VPP dataplanes live in forwarder/kernel and forwarder/vpp.
package forwarder

// The manager tells its forwarder where the connection goes next in gRPC
// metadata on Request and Close: vWire routing is the manager's decision,
// building it the forwarder's.
const (
	// MDNextHop is the URL of the next hop: a local endpoint or a remote manager.
	MDNextHop = "vwire-next-hop"
	// MDNextHopRemote is "true" when the next hop is another node's manager
	// (REMOTE mechanisms), "false" for an endpoint on this node (LOCAL).
	MDNextHopRemote = "vwire-next-hop-remote"
	// MDNextHopInterdomain is "true" when the next hop is a manager of
	// another registry domain: REMOTE offers carry this node's public address.
	MDNextHopInterdomain = "vwire-next-hop-interdomain"
	// MDPrevHopInterdomain is "true" when the previous hop is another
	// registry domain's forwarder: the accepted mechanism carries this
	// node's public address.
	MDPrevHopInterdomain = "vwire-prev-hop-interdomain"
	// MDInterdomain is what a forwarder tells the next manager when the
	// Request crosses into its registry domain; the manager passes it to its
	// forwarder as MDPrevHopInterdomain.
	MDInterdomain = "vwire-interdomain"
	// TrailerFailedHop, set to "next" in a failed Request's trailer, tells the
	// manager that the next hop failed, not the forwarder: it should try
	// another endpoint rather than another forwarder.
	TrailerFailedHop = "vwire-failed-hop"
)

// ServiceName is the network service forwarders register under.
const ServiceName = "forwarder"
