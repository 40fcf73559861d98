package passthrough

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/mechanisms/kernel"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in      string
		want    Rule
		wantErr bool
	}{
		{in: "tcp:22", want: Rule{Proto: 6, Port: 22}},
		{in: "UDP:53", want: Rule{Proto: 17, Port: 53}},
		{in: "icmp", want: Rule{Proto: 1}},
		{in: "47", want: Rule{Proto: 47}},
		{in: "tcp", want: Rule{Proto: 6}},
		{in: "icmp:8", wantErr: true},
		{in: "tcp:0", wantErr: true},
		{in: "tcp:70000", wantErr: true},
		{in: "bogus:1", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseRule(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil {
				if back, err := ParseRule(got.String()); err != nil || back != got {
					t.Fatalf("round trip of %v: %v, %v", got, back, err)
				}
			}
		})
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"tcp:22", "icmp", "17:53", "udp:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if back, err := ParseRule(r.String()); err != nil || back != r {
			t.Fatalf("round trip of %q: %v -> %v, %v", s, r, back, err)
		}
	})
}

// fakeOnward records onward requests and closes.
type fakeOnward struct {
	mu       sync.Mutex
	requests []*networkservice.NetworkServiceRequest
	closed   []string
	err      error
}

func (f *fakeOnward) Request(_ context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if f.err != nil {
		return nil, f.err
	}
	conn := req.GetConnection().Clone()
	conn.Mechanism = req.GetMechanismPreferences()[0]
	conn.Context = &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{"10.0.0.1/32"}, DstIpAddrs: []string{"10.0.0.0/32"},
	}}
	return conn, nil
}

func (f *fakeOnward) Close(_ context.Context, conn *networkservice.Connection) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, conn.GetId())
	return nil
}

// fakeWirer reports missing links until ready, then counts.
type fakeWirer struct {
	mu     sync.Mutex
	ready  bool
	wired  map[[2]string]bool
	counts Counters
}

func (f *fakeWirer) Ensure(in, out string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready {
		return ErrNoLink
	}
	f.wired[[2]string{in, out}] = true
	return nil
}

func (f *fakeWirer) Counters(string, string) (Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts, nil
}

func incoming(id string) *networkservice.Connection {
	return &networkservice.Connection{
		Id:             id,
		NetworkService: "secure-vl3",
		Mechanism:      kernel.New(kernel.Params{Name: "nsmin0", NetNSURL: "file:///proc/1/ns/net"}),
		Path: &networkservice.Path{Index: 1, PathSegments: []*networkservice.PathSegment{
			{Name: "manager", Id: "m", Expires: timestamppb.New(time.Now().Add(time.Minute))},
			{Name: "ips", Id: id},
		}},
	}
}

func TestServiceRequestRefreshClose(t *testing.T) {
	on := &fakeOnward{}
	w := &fakeWirer{wired: map[[2]string]bool{}}
	s, err := New(Config{Name: "ips", Labels: map[string]string{"provided": "ips"}, NetNSURL: "file:///proc/1/ns/net",
		Onward: on, Wirer: w, WireInterval: 5 * time.Millisecond, StatsEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	conn := incoming("c1")
	if err := s.Request(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if got := conn.GetContext().GetIpContext().GetSrcIpAddrs(); len(got) != 1 || got[0] != "10.0.0.1/32" {
		t.Fatalf("incoming got src %v, want the onward connection's", got)
	}
	first := on.requests[0].GetConnection()
	if first.GetLabels()["provided"] != "ips" || first.GetNetworkService() != "secure-vl3" || first.GetPath().GetPathSegments()[0].GetName() != "ips" {
		t.Fatalf("onward request %v", first)
	}
	if !first.GetPath().GetPathSegments()[0].GetExpires().AsTime().Equal(conn.GetPath().GetPathSegments()[0].GetExpires().AsTime()) {
		t.Errorf("onward expiry is not the incoming previous hop's")
	}

	// The wire is made once the interfaces appear, and counted.
	w.mu.Lock()
	w.ready, w.counts = true, Counters{Passed: 7, Dropped: 2}
	w.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for s.Counters() != (Counters{Passed: 7, Dropped: 2}) {
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v", s.Counters())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A refresh refreshes the same onward connection.
	if err := s.Request(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if len(on.requests) != 2 || on.requests[1].GetConnection().GetId() != first.GetId() {
		t.Fatalf("refresh made a new onward connection: %v", on.requests)
	}

	if err := s.Close(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if len(on.closed) != 1 || on.closed[0] != first.GetId() {
		t.Fatalf("onward closes %v, want %s", on.closed, first.GetId())
	}
	if got := s.Counters(); got != (Counters{Passed: 7, Dropped: 2}) {
		t.Fatalf("counters after close %+v", got)
	}
	// Closing twice is harmless.
	if err := s.Close(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	s.Wait()
}

func TestServiceOnwardRefused(t *testing.T) {
	on := &fakeOnward{err: status.Error(codes.NotFound, "no endpoint")}
	s, _ := New(Config{Onward: on, Wirer: &fakeWirer{wired: map[[2]string]bool{}}})
	err := s.Request(context.Background(), incoming("c1"))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("error %v, want the onward NotFound", err)
	}
	if s.Counters() != (Counters{}) || len(s.conns) != 0 {
		t.Fatal("a refused request kept state")
	}
	if err := s.Request(context.Background(), &networkservice.Connection{Id: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no kernel mechanism: %v", err)
	}
}
