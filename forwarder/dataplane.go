package forwarder

import (
	"context"
	"errors"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// ErrNoMechanism is returned (wrapped) by Dataplane.Accept when none of the
// previous hop's preferences can be terminated here.
var ErrNoMechanism = errors.New("no acceptable mechanism")

// ErrWorkloadNameTaken is returned (wrapped) by a refresh (Connect for an id
// the dataplane has built) whose KERNEL side lost its workload interface
// name to another vWire: a newer Request for that interface took it. The
// refresh leaves the name alone, or the two would take it from each other at
// every refresh.
var ErrWorkloadNameTaken = errors.New("the workload's interface name is another vWire's now")

// Dataplane programs one node's share of vWires. The forwarder's pipeline
// calls it; the kernel and VPP dataplanes implement it.
//
// The contract: Accept and Offer create nothing; Connect makes (or, on a
// refresh, re-checks and updates) every object for a connection id; a first
// Connect that fails leaves nothing behind, a refresh that fails leaves the
// live vWire as it was; Disconnect removes every object made for
// an id and succeeds when there is none. All methods are safe for concurrent
// use with different ids; the forwarder never calls them concurrently for the
// same id.
type Dataplane interface {
	// Accept chooses, from the previous hop's preferences, the mechanism this
	// node terminates on its incoming side, and fills in this side's
	// parameters (a VXLAN destination address, a WireGuard public key...).
	Accept(ctx context.Context, id string, conn *networkservice.Connection, prefs []*networkservice.Mechanism) (*networkservice.Mechanism, error)
	// Offer returns the mechanisms, with this side's parameters, offered to
	// the next hop: LOCAL ones to an endpoint on this node, REMOTE ones to
	// another node's manager, most preferred first.
	Offer(ctx context.Context, id string, conn *networkservice.Connection, remote bool) ([]*networkservice.Mechanism, error)
	// Connect builds the vWire's pieces on this node: the incoming side
	// (in.Mechanism), the outgoing side (out.Mechanism) and the
	// cross-connect between them. in.Context carries what the endpoint chose
	// (addresses, routes, MTU). It may set in.Context.MTU to the path's MTU.
	Connect(ctx context.Context, id string, in, out *networkservice.Connection) error
	// Disconnect removes everything made for id.
	Disconnect(ctx context.Context, id string) error
}
