// Package connpath keeps a Connection's path the way NSM hops do: each hop
// owns one PathSegment (name, id, expiry), found again by name on refresh,
// and Connection.Id is always the id of the segment at Path.Index.
package connpath

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrBadPath is returned for a path whose index points outside its segments.
var ErrBadPath = errors.New("bad path")

// Hop is this hop's place in a Connection's path after Enter.
type Hop struct {
	// Segment is this hop's own segment (in the Connection).
	Segment *networkservice.PathSegment
	// Index of this hop's segment.
	Index int
	// PrevIndex is the caller's index, -1 when this hop is the first.
	PrevIndex int
	// New is true when this call added the segment (not a refresh).
	New bool
}

// ID is this hop's connection id.
func (h Hop) ID() string { return h.Segment.GetId() }

// Prev is the caller's segment, nil when there is none.
func (h Hop) Prev(conn *networkservice.Connection) *networkservice.PathSegment {
	if h.PrevIndex < 0 {
		return nil
	}
	return conn.GetPath().GetPathSegments()[h.PrevIndex]
}

// Enter adds or finds this hop's segment right after the caller's (NSM's
// updatepath): the caller's own segment at Path.Index, ours at Index+1. An
// empty path makes us the first hop, taking conn.Id when it has one.
// It sets Path.Index and conn.Id to ours.
func Enter(conn *networkservice.Connection, name string) (Hop, error) {
	if conn.Path == nil {
		conn.Path = &networkservice.Path{}
	}
	p := conn.Path
	segs := p.PathSegments
	if len(segs) == 0 {
		id := conn.GetId()
		if id == "" {
			id = uuid.NewString()
		}
		p.PathSegments = []*networkservice.PathSegment{{Name: name, Id: id}}
		p.Index = 0
		conn.Id = id
		return Hop{Segment: p.PathSegments[0], Index: 0, PrevIndex: -1, New: true}, nil
	}
	idx := int(p.Index)
	if idx >= len(segs) {
		return Hop{}, fmt.Errorf("%w: index %d of %d segments", ErrBadPath, idx, len(segs))
	}
	if segs[idx].GetName() == name {
		// We are already the current hop: a call from ourselves, or the
		// caller refreshing the connection it got back at our index.
		conn.Id = segs[idx].GetId()
		return Hop{Segment: segs[idx], Index: idx, PrevIndex: idx - 1}, nil
	}
	hop := Hop{Index: idx + 1, PrevIndex: idx}
	if idx+1 < len(segs) && segs[idx+1].GetName() == name && segs[idx+1].GetId() != "" {
		hop.Segment = segs[idx+1]
	} else {
		hop.Segment = &networkservice.PathSegment{Name: name, Id: segmentID(segs[idx].GetId(), name)}
		hop.New = true
		// What followed belonged to an older route through a different next hop.
		p.PathSegments = append(segs[:idx+1:idx+1], hop.Segment)
	}
	p.Index = uint32(hop.Index)
	conn.Id = hop.Segment.Id
	return hop, nil
}

// segmentNamespace names the UUIDs segmentID derives.
var segmentNamespace = uuid.MustParse("6c0d3c8e-3b0e-4f51-9a0c-76776972650a")

// segmentID is the id of hop name's new segment after the caller's segment
// prev: derived from both, so that a caller who sends the same request
// again (its first try timed out on its side while this hop went on and
// finished it) reaches the connection that try made, as a refresh, and not
// a second connection for its one interface. Without a caller's id it is
// random.
func segmentID(prev, name string) string {
	if prev == "" {
		return uuid.NewString()
	}
	return uuid.NewSHA1(segmentNamespace, []byte(prev+"\x00"+name)).String()
}

// Leave restores a returned connection to the caller's view: its index and
// its id. For the first hop there is nothing to restore.
func Leave(conn *networkservice.Connection, hop Hop) {
	if hop.PrevIndex < 0 || conn.GetPath() == nil || hop.PrevIndex >= len(conn.Path.PathSegments) {
		return
	}
	conn.Path.Index = uint32(hop.PrevIndex)
	conn.Id = conn.Path.PathSegments[hop.PrevIndex].GetId()
}

// Find returns, without changing anything, the id of this hop's segment in
// a connection as its caller sends it (e.g. to Close): ours is at Index+1,
// or at Index when we are the current hop.
func Find(conn *networkservice.Connection, name string) (string, bool) {
	segs := conn.GetPath().GetPathSegments()
	idx := int(conn.GetPath().GetIndex())
	for _, i := range []int{idx + 1, idx} {
		if i >= 0 && i < len(segs) && segs[i].GetName() == name {
			return segs[i].GetId(), true
		}
	}
	return "", false
}

// Expiry is when a connection entering a hop must be refreshed by: the
// caller's segment's expiry when it gives one, never more than maxLifetime
// from now.
func Expiry(prev *networkservice.PathSegment, now time.Time, maxLifetime time.Duration) time.Time {
	limit := now.Add(maxLifetime)
	if prev.GetExpires() == nil {
		return limit
	}
	if t := prev.GetExpires().AsTime(); t.Before(limit) {
		return t
	}
	return limit
}

// SetExpires stamps a segment's expiry.
func SetExpires(seg *networkservice.PathSegment, t time.Time) {
	seg.Expires = timestamppb.New(t)
}

// View returns a connection that Leave and a hop's renaming may change
// (its own fields and its path's index) while conn stays as it is. The
// rest (segments, mechanism, context, labels) is conn's, not copied: a hop
// answering with a connection it keeps needs no proto.Clone of the whole
// path and its maps on every call, as long as neither side changes a
// shared part afterwards.
//
// It copies the fields by name, not by protoreflect as Shallow does (2
// allocations instead of 15, every string field boxed there):
// TestViewCopiesEveryField fails when the API gives either message a
// field this does not copy.
func View(conn *networkservice.Connection) *networkservice.Connection {
	v := &networkservice.Connection{
		Id: conn.GetId(), NetworkService: conn.GetNetworkService(), Mechanism: conn.GetMechanism(),
		Context: conn.GetContext(), Labels: conn.GetLabels(), NetworkServiceEndpointName: conn.GetNetworkServiceEndpointName(),
		Payload: conn.GetPayload(), State: conn.GetState(),
	}
	keepUnknown(v, conn)
	if p := conn.GetPath(); p != nil {
		v.Path = &networkservice.Path{Index: p.GetIndex(), PathSegments: p.GetPathSegments()}
		keepUnknown(v.Path, p)
	}
	return v
}

// keepUnknown gives dst the fields of src this build does not know.
func keepUnknown(dst, src proto.Message) {
	if u := src.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.ProtoReflect().SetUnknown(u)
	}
}

// Shallow returns a new message of m's type holding m's fields: its
// messages, maps and lists are m's, shared, not copied.
func Shallow[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	return dst.Interface().(M)
}
