package connpath

import (
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func names(c *networkservice.Connection) string {
	s := ""
	for _, seg := range c.GetPath().GetPathSegments() {
		s += seg.Name + ","
	}
	return s
}

func TestEnterLeave(t *testing.T) {
	// A client with its own segment, then a manager, then a forwarder.
	conn := &networkservice.Connection{Id: "c1"}
	client, err := Enter(conn, "nsc")
	if err != nil || !client.New || conn.Id != "c1" || client.PrevIndex != -1 {
		t.Fatalf("client enter: %+v %v id=%s", client, err, conn.Id)
	}
	mgr, err := Enter(conn, "mgr")
	if err != nil || !mgr.New || mgr.Index != 1 || conn.Id == "c1" || conn.Id != mgr.ID() {
		t.Fatalf("manager enter: %+v %v", mgr, err)
	}
	fwd, _ := Enter(conn, "fwd")
	if names(conn) != "nsc,mgr,fwd," || conn.Path.Index != 2 {
		t.Fatalf("path %s index %d", names(conn), conn.Path.Index)
	}
	Leave(conn, fwd)
	if conn.Id != mgr.ID() || conn.Path.Index != 1 {
		t.Fatal("leave forwarder did not restore the manager's view")
	}
	Leave(conn, mgr)
	if conn.Id != "c1" || conn.Path.Index != 0 {
		t.Fatal("leave manager did not restore the client's view")
	}

	// A refresh of the returned connection finds the same segments.
	mgr2, _ := Enter(conn, "mgr")
	if mgr2.New || mgr2.ID() != mgr.ID() {
		t.Fatalf("refresh made a new manager segment: %+v", mgr2)
	}
	if id, ok := Find(&networkservice.Connection{Path: &networkservice.Path{Index: 1, PathSegments: conn.Path.PathSegments}}, "fwd"); !ok || id != fwd.ID() {
		t.Fatalf("Find fwd = %s %v", id, ok)
	}

	// A different next hop replaces what followed.
	fwdB, _ := Enter(conn, "fwd-b")
	if !fwdB.New || names(conn) != "nsc,mgr,fwd-b," {
		t.Fatalf("reroute: %s", names(conn))
	}
}

func TestEnterBadIndex(t *testing.T) {
	conn := &networkservice.Connection{Path: &networkservice.Path{Index: 3, PathSegments: []*networkservice.PathSegment{{Name: "a"}}}}
	if _, err := Enter(conn, "b"); err == nil {
		t.Fatal("index past the end accepted")
	}
}

func TestExpiry(t *testing.T) {
	now := time.Now()
	if got := Expiry(nil, now, time.Minute); !got.Equal(now.Add(time.Minute)) {
		t.Fatalf("no prev: %v", got)
	}
	soon := &networkservice.PathSegment{Expires: timestamppb.New(now.Add(time.Second))}
	if got := Expiry(soon, now, time.Minute); !got.Equal(soon.Expires.AsTime()) {
		t.Fatalf("prev sooner: %v", got)
	}
	late := &networkservice.PathSegment{Expires: timestamppb.New(now.Add(time.Hour))}
	if got := Expiry(late, now, time.Minute); !got.Equal(now.Add(time.Minute)) {
		t.Fatalf("prev later than the limit: %v", got)
	}
}

// TestEnterSameCallerSameID: a caller that sends its request again without
// our segment (it never got our reply) gets the same segment id; another
// caller's connection, or another hop, gets another.
func TestEnterSameCallerSameID(t *testing.T) {
	first := func(caller, hop string) string {
		c := &networkservice.Connection{Id: caller, Path: &networkservice.Path{
			PathSegments: []*networkservice.PathSegment{{Name: "nsc", Id: caller}}}}
		h, err := Enter(c, hop)
		if err != nil {
			t.Fatal(err)
		}
		return h.ID()
	}
	a := first("c1", "manager-node1")
	if b := first("c1", "manager-node1"); a != b {
		t.Errorf("the same request twice: ids %s and %s", a, b)
	}
	if b := first("c2", "manager-node1"); a == b {
		t.Errorf("two callers' connections share id %s", a)
	}
	if b := first("c1", "manager-node2"); a == b {
		t.Errorf("two hops share id %s", a)
	}
	c := &networkservice.Connection{Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: "nsc"}}}}
	h1, _ := Enter(c, "m")
	c.Path.PathSegments = c.Path.PathSegments[:1]
	h2, _ := Enter(c, "m")
	if h1.ID() == "" || h1.ID() == h2.ID() {
		t.Errorf("caller without an id: ids %q and %q, want two random ones", h1.ID(), h2.ID())
	}
}

// TestView: an answer made with View and changed the way hops change
// theirs (Leave, names) leaves the kept connection as it was, holds every
// field of it (unknown ones too), and shares, not copies, the rest.
func TestView(t *testing.T) {
	kept := &networkservice.Connection{
		Id:             "c1",
		NetworkService: "svc@here",
		Labels:         map[string]string{"app": "a"},
		Mechanism:      &networkservice.Mechanism{Type: "KERNEL", Parameters: map[string]string{"name": "nsm-1"}},
		Context:        &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{SrcIpAddrs: []string{"10.0.0.1/32"}}},
		State:          networkservice.State_UP,
	}
	if _, err := Enter(kept, "nsc"); err != nil {
		t.Fatal(err)
	}
	hop, err := Enter(kept, "mgr")
	if err != nil {
		t.Fatal(err)
	}
	kept.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
	before := proto.Clone(kept)

	view := View(kept)
	if !proto.Equal(view, kept) {
		t.Fatalf("view differs from the connection:\n%v\n%v", view, kept)
	}
	Leave(view, hop)
	view.NetworkService = "svc"
	if !proto.Equal(kept, before) {
		t.Fatalf("changing the view changed the kept connection:\n%v\nwas\n%v", kept, before)
	}
	if view.GetPath().GetIndex() != 0 || view.GetId() != kept.GetPath().GetPathSegments()[0].GetId() {
		t.Fatalf("view after Leave: index %d id %s", view.GetPath().GetIndex(), view.GetId())
	}
	switch {
	case view.Mechanism != kept.Mechanism, view.Context != kept.Context,
		&view.Path.PathSegments[0] != &kept.Path.PathSegments[0]:
		t.Fatal("View copied what it should share")
	}
	if View(&networkservice.Connection{}).GetPath() != nil {
		t.Fatal("View of a connection without a path has one")
	}
}

// TestViewCopiesEveryField: a connection with every field of its own and
// of its path set (and fields this build does not know) has a view equal
// to it. A field the API adds is set here too, through protoreflect, so
// View must learn to copy it.
func TestViewCopiesEveryField(t *testing.T) {
	conn := &networkservice.Connection{}
	fill(t, conn.ProtoReflect(), 2)
	conn.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
	conn.GetPath().ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x02})
	if n := conn.GetPath().GetPathSegments(); len(n) == 0 || conn.GetMechanism() == nil || len(conn.GetLabels()) == 0 {
		t.Fatalf("fill left fields unset: %v", conn)
	}
	if v := View(conn); !proto.Equal(v, conn) {
		t.Fatalf("view differs from the connection:\n%v\n%v", v, conn)
	}
}

// fill sets every field of m to a value that is not the default: messages
// (filled down to depth more levels), one-element lists and maps.
func fill(t *testing.T, m protoreflect.Message, depth int) {
	t.Helper()
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(scalar(t, fd.MapKey()).MapKey(), scalar(t, fd.MapValue()))
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Message() != nil {
				e := l.NewElement()
				if depth > 0 {
					fill(t, e.Message(), depth-1)
				}
				l.Append(e)
			} else {
				l.Append(scalar(t, fd))
			}
		case fd.Message() != nil:
			e := m.NewField(fd)
			if depth > 0 {
				fill(t, e.Message(), depth-1)
			}
			m.Set(fd, e)
		default:
			m.Set(fd, scalar(t, fd))
		}
	}
}

// scalar is a value of fd's kind that is not its default.
func scalar(t *testing.T, fd protoreflect.FieldDescriptor) protoreflect.Value {
	t.Helper()
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(7)
	}
	t.Fatalf("field %s: kind %v", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}
