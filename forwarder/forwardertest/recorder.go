// Package forwardertest has a Dataplane that builds nothing and records
// what it was asked, for tests of the forwarder and manager protocols. It is
// never linked into the vwire binary.
package forwardertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/forwarder"
)

// Call is one recorded Dataplane call.
type Call struct {
	Op     string // Accept, Offer, Connect, Disconnect
	ID     string
	In     string // mechanism types, for Connect
	Out    string
	Remote bool
}

// VWire is what Connect was last given for an id.
type VWire struct {
	In, Out *networkservice.Connection
}

// Recorder implements forwarder.Dataplane. FailConnect, when set, makes
// Connect fail for the ids it returns an error for.
type Recorder struct {
	TunnelIP    string
	FailConnect func(id string) error
	// Counters, when set, are what Metrics reports for every live vWire.
	Counters map[string]string

	mu    sync.Mutex // guards the fields below
	calls []Call
	live  map[string]VWire
	vni   uint32
}

// New returns a Recorder whose REMOTE offers carry tunnelIP.
func New(tunnelIP string) *Recorder {
	return &Recorder{TunnelIP: tunnelIP, live: map[string]VWire{}}
}

var _ forwarder.Dataplane = (*Recorder)(nil)

func (r *Recorder) record(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// Accept takes the first KERNEL, MEMIF or VXLAN preference; for VXLAN it
// fills this side's address.
func (r *Recorder) Accept(_ context.Context, id string, _ *networkservice.Connection, prefs []*networkservice.Mechanism) (*networkservice.Mechanism, error) {
	r.record(Call{Op: "Accept", ID: id})
	for _, p := range prefs {
		switch p.GetType() {
		case kernel.MECHANISM, memif.MECHANISM:
			return proto.Clone(p).(*networkservice.Mechanism), nil
		case vxlan.MECHANISM:
			m := proto.Clone(p).(*networkservice.Mechanism)
			m.Parameters[vxlan.DstIP] = r.TunnelIP
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w among %d preferences", forwarder.ErrNoMechanism, len(prefs))
}

// Offer offers VXLAN to a remote hop, KERNEL then MEMIF to a local one.
func (r *Recorder) Offer(_ context.Context, id string, _ *networkservice.Connection, remote bool) ([]*networkservice.Mechanism, error) {
	r.record(Call{Op: "Offer", ID: id, Remote: remote})
	if remote {
		r.mu.Lock()
		r.vni++
		vni := r.vni
		r.mu.Unlock()
		return []*networkservice.Mechanism{{Cls: cls.REMOTE, Type: vxlan.MECHANISM, Parameters: map[string]string{
			vxlan.SrcIP: r.TunnelIP, vxlan.VNI: strconv.Itoa(int(vni)),
		}}}, nil
	}
	return []*networkservice.Mechanism{
		{Cls: cls.LOCAL, Type: kernel.MECHANISM, Parameters: map[string]string{}},
		{Cls: cls.LOCAL, Type: memif.MECHANISM, Parameters: map[string]string{}},
	}, nil
}

// Connect records the vWire.
func (r *Recorder) Connect(_ context.Context, id string, in, out *networkservice.Connection) error {
	r.record(Call{Op: "Connect", ID: id, In: in.GetMechanism().GetType(), Out: out.GetMechanism().GetType()})
	if r.FailConnect != nil {
		if err := r.FailConnect(id); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[id] = VWire{In: proto.Clone(in).(*networkservice.Connection), Out: proto.Clone(out).(*networkservice.Connection)}
	return nil
}

// Disconnect forgets the vWire.
func (r *Recorder) Disconnect(_ context.Context, id string) error {
	r.record(Call{Op: "Disconnect", ID: id})
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, id)
	return nil
}

// Metrics reports Counters for a live vWire, as a counting dataplane would.
func (r *Recorder) Metrics(id string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.live[id]; !ok || r.Counters == nil {
		return nil
	}
	out := make(map[string]string, len(r.Counters))
	for k, v := range r.Counters {
		out[k] = v
	}
	return out
}

// Live returns the vWires connected and not disconnected, by id.
func (r *Recorder) Live() map[string]VWire {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]VWire, len(r.live))
	for k, v := range r.live {
		out[k] = v
	}
	return out
}

// Calls returns the recorded calls with op (all when op is empty).
func (r *Recorder) Calls(op string) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(r.calls), func(c Call) bool { return op != "" && c.Op != op })
}
