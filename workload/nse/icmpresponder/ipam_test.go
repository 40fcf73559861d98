package icmpresponder

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func pair(src, dst string) Pair {
	return Pair{Src: netip.MustParsePrefix(src), Dst: netip.MustParsePrefix(dst)}
}

// step is one operation on an IPAM: allocate (want the pair or wantErr) or release.
type step struct {
	release string // connection to release; else allocate conn
	conn    string
	asked   Pair
	exclude []string
	want    Pair
	wantErr error
}

func TestIPAM(t *testing.T) {
	tests := []struct {
		name  string
		cidr  string
		steps []step
	}{
		{
			name: "pairs from the bottom, endpoint first",
			cidr: "10.0.0.0/24",
			steps: []step{
				{conn: "a", want: pair("10.0.0.1/32", "10.0.0.0/32")},
				{conn: "b", want: pair("10.0.0.3/32", "10.0.0.2/32")},
			},
		},
		{
			name: "refresh keeps the pair",
			cidr: "10.0.0.0/24",
			steps: []step{
				{conn: "a", want: pair("10.0.0.1/32", "10.0.0.0/32")},
				{conn: "b", want: pair("10.0.0.3/32", "10.0.0.2/32")},
				{conn: "a", want: pair("10.0.0.1/32", "10.0.0.0/32")},
			},
		},
		{
			name: "release makes the pair reusable",
			cidr: "10.0.0.0/24",
			steps: []step{
				{conn: "a", want: pair("10.0.0.1/32", "10.0.0.0/32")},
				{conn: "b", want: pair("10.0.0.3/32", "10.0.0.2/32")},
				{release: "a"},
				{conn: "c", want: pair("10.0.0.1/32", "10.0.0.0/32")},
			},
		},
		{
			name: "a /31 holds one pair",
			cidr: "192.168.7.4/31",
			steps: []step{
				{conn: "a", want: pair("192.168.7.5/32", "192.168.7.4/32")},
				{conn: "b", wantErr: ErrExhausted},
				{conn: "a", want: pair("192.168.7.5/32", "192.168.7.4/32")},
				{release: "a"},
				{conn: "b", want: pair("192.168.7.5/32", "192.168.7.4/32")},
			},
		},
		{
			name: "a /30 holds two pairs",
			cidr: "192.168.7.0/30",
			steps: []step{
				{conn: "a", want: pair("192.168.7.1/32", "192.168.7.0/32")},
				{conn: "b", want: pair("192.168.7.3/32", "192.168.7.2/32")},
				{conn: "c", wantErr: ErrExhausted},
				{release: "b"},
				{conn: "c", want: pair("192.168.7.3/32", "192.168.7.2/32")},
			},
		},
		{
			name: "holes left by releases are filled across pairs",
			cidr: "10.1.0.0/29",
			steps: []step{
				{conn: "a", want: pair("10.1.0.1/32", "10.1.0.0/32")},
				{conn: "b", want: pair("10.1.0.3/32", "10.1.0.2/32")},
				{conn: "c", want: pair("10.1.0.5/32", "10.1.0.4/32")},
				{release: "a"},
				{release: "c"},
				{conn: "d", want: pair("10.1.0.1/32", "10.1.0.0/32")},
				{conn: "e", want: pair("10.1.0.5/32", "10.1.0.4/32")},
			},
		},
		{
			name: "excluded prefixes are skipped",
			cidr: "10.0.0.0/24",
			steps: []step{
				{conn: "a", exclude: []string{"10.0.0.0/30", "10.0.0.5/32"}, want: pair("10.0.0.6/32", "10.0.0.4/32")},
			},
		},
		{
			name: "everything excluded",
			cidr: "10.0.0.0/30",
			steps: []step{
				{conn: "a", exclude: []string{"10.0.0.0/8"}, wantErr: ErrExhausted},
			},
		},
		{
			name: "a pair carried over a restart is kept when free",
			cidr: "10.0.0.0/24",
			steps: []step{
				{conn: "a", asked: pair("10.0.0.9/32", "10.0.0.8/32"), want: pair("10.0.0.9/32", "10.0.0.8/32")},
				{conn: "b", asked: pair("10.0.0.9/32", "10.0.0.8/32"), want: pair("10.0.0.1/32", "10.0.0.0/32")},
				{conn: "c", asked: pair("10.9.0.1/32", "10.9.0.0/32"), want: pair("10.0.0.3/32", "10.0.0.2/32")},
			},
		},
		{
			name: "IPv6",
			cidr: "fd00:1::/126",
			steps: []step{
				{conn: "a", want: pair("fd00:1::1/128", "fd00:1::/128")},
				{conn: "b", want: pair("fd00:1::3/128", "fd00:1::2/128")},
				{conn: "c", wantErr: ErrExhausted},
				{release: "a"},
				{conn: "c", want: pair("fd00:1::1/128", "fd00:1::/128")},
			},
		},
		{
			name: "IPv6 /64 with half excluded",
			cidr: "fd00:2::/64",
			steps: []step{
				{conn: "a", exclude: []string{"fd00:2::/65"}, want: pair("fd00:2::8000:0:0:1/128", "fd00:2::8000:0:0:0/128")},
			},
		},
		{
			name: "the top of the address space",
			cidr: "255.255.255.254/31",
			steps: []step{
				{conn: "a", want: pair("255.255.255.255/32", "255.255.255.254/32")},
				{conn: "b", wantErr: ErrExhausted},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewIPAM(tt.cidr)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				if s.release != "" {
					if !p.Release(s.release) {
						t.Fatalf("step %d: release %s: held nothing", i, s.release)
					}
					continue
				}
				var ex []netip.Prefix
				for _, x := range s.exclude {
					ex = append(ex, netip.MustParsePrefix(x))
				}
				got, err := p.Allocate(s.conn, s.asked, ex)
				if s.wantErr != nil {
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: allocate %s = %v, %v; want error %v", i, s.conn, got, err, s.wantErr)
					}
					continue
				}
				if err != nil || got != s.want {
					t.Fatalf("step %d: allocate %s = %v, %v; want %v", i, s.conn, got, err, s.want)
				}
			}
		})
	}
}

func TestNewIPAMRejects(t *testing.T) {
	for _, cidr := range []string{"", "10.0.0.1", "10.0.0.1/32", "fd00::1/128", "10.0.0.0/33", "nonsense/8"} {
		if _, err := NewIPAM(cidr); err == nil {
			t.Errorf("NewIPAM(%q) accepted", cidr)
		}
	}
	// A CIDR with host bits is taken as its network.
	p, err := NewIPAM("10.0.0.77/24")
	if err != nil || p.Prefix().String() != "10.0.0.0/24" {
		t.Fatalf("NewIPAM(10.0.0.77/24) = %v, %v", p.Prefix(), err)
	}
}

func TestIPAMRelease(t *testing.T) {
	p, _ := NewIPAM("10.0.0.0/30")
	if p.Release("nobody") {
		t.Fatal("release of an unknown connection reported a pair")
	}
	p.Allocate("a", Pair{}, nil)
	if !p.Release("a") || p.Release("a") || p.Len() != 0 {
		t.Fatal("release twice")
	}
}

func TestIPAMConcurrent(t *testing.T) {
	p, _ := NewIPAM("10.0.0.0/23") // 256 pairs
	const n = 200
	var wg sync.WaitGroup
	got := make([]Pair, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, err := p.Allocate(fmt.Sprint("c", i), Pair{}, nil)
			if err != nil {
				t.Error(err)
			}
			got[i] = pr
			if i%2 == 0 {
				p.Release(fmt.Sprint("c", i))
				got[i] = Pair{}
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, pr := range got {
		if !pr.Src.IsValid() {
			continue
		}
		for _, a := range []netip.Addr{pr.Src.Addr(), pr.Dst.Addr()} {
			if seen[a] {
				t.Fatalf("%s handed out twice", a)
			}
			seen[a] = true
		}
	}
	if p.Len() != n/2 {
		t.Fatalf("%d connections hold pairs, want %d", p.Len(), n/2)
	}
}

func TestServiceIPContext(t *testing.T) {
	s, err := New("10.0.0.0/24", "fd00::/120")
	if err != nil {
		t.Fatal(err)
	}
	conn := &networkservice.Connection{Id: "a"}
	if err := s.Request(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	ipc := conn.GetContext().GetIpContext()
	want := &networkservice.IPContext{
		SrcIpAddrs: []string{"10.0.0.1/32", "fd00::1/128"},
		DstIpAddrs: []string{"10.0.0.0/32", "fd00::/128"},
		SrcRoutes:  []*networkservice.Route{{Prefix: "10.0.0.0/32"}, {Prefix: "fd00::/128"}},
		DstRoutes:  []*networkservice.Route{{Prefix: "10.0.0.1/32"}, {Prefix: "fd00::1/128"}},
	}
	if fmt.Sprint(ipc) != fmt.Sprint(want) {
		t.Fatalf("ip context\n got %v\nwant %v", ipc, want)
	}
	// A refresh carrying the context back changes nothing.
	if err := s.Request(context.Background(), conn); err != nil || fmt.Sprint(conn.GetContext().GetIpContext()) != fmt.Sprint(want) {
		t.Fatalf("refresh: %v %v", conn.GetContext().GetIpContext(), err)
	}
	// Another connection is refused when a pool is exhausted, and takes nothing.
	small, _ := New("10.0.0.0/31", "fd00::/127")
	small.Request(context.Background(), &networkservice.Connection{Id: "a"})
	small.Pools()[0].Release("a")
	err = small.Request(context.Background(), &networkservice.Connection{Id: "b"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("exhausted pool: %v", err)
	}
	if small.Pools()[0].Len() != 0 {
		t.Fatal("a refused request kept its IPv4 pair")
	}
	if _, err := New("10.0.0.0/24", "10.0.0.128/25"); err == nil {
		t.Fatal("overlapping pools accepted")
	}
}

// TestIPAMReuseOrder: released addresses come back oldest release first,
// before any address never handed out.
func TestIPAMReuseOrder(t *testing.T) {
	p, _ := NewIPAM("10.0.0.0/24")
	for _, c := range []string{"a", "b", "c"} {
		p.Allocate(c, Pair{}, nil)
	}
	p.Release("c") // .4, .5
	p.Release("a") // .0, .1
	for _, s := range []step{
		{conn: "d", want: pair("10.0.0.5/32", "10.0.0.4/32")},
		{conn: "e", want: pair("10.0.0.1/32", "10.0.0.0/32")},
		{conn: "f", want: pair("10.0.0.7/32", "10.0.0.6/32")},
	} {
		if got, err := p.Allocate(s.conn, Pair{}, nil); err != nil || got != s.want {
			t.Fatalf("allocate %s = %v, %v; want %v", s.conn, got, err, s.want)
		}
	}
}

// TestIPAMChurn: a long random run of allocations (some asking for a pair,
// some excluding a range) and releases against a model. No address is ever
// held twice or lies outside the pool; a release makes its addresses
// available again; a full pool refuses with an error that says which pool
// and how full, and takes the next Request once a pair is released.
func TestIPAMChurn(t *testing.T) {
	const cidr = "10.9.0.0/26" // 64 addresses, 32 pairs
	p, _ := NewIPAM(cidr)
	rng := rand.New(rand.NewPCG(1, 2))
	held := map[string]Pair{}
	owner := map[netip.Addr]string{}
	var ids []string
	addr := func(i int) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 32) }
	for i := range 20000 {
		if len(ids) > 0 && rng.IntN(100) < 45 {
			k := rng.IntN(len(ids))
			id := ids[k]
			ids[k], ids = ids[len(ids)-1], ids[:len(ids)-1]
			if !p.Release(id) {
				t.Fatalf("op %d: release %s: held nothing", i, id)
			}
			delete(owner, held[id].Src.Addr())
			delete(owner, held[id].Dst.Addr())
			delete(held, id)
			continue
		}
		id := fmt.Sprint("c", i)
		var want Pair
		var exclude []netip.Prefix
		switch rng.IntN(10) {
		case 0:
			want = Pair{Src: addr(rng.IntN(64)), Dst: addr(rng.IntN(64))}
		case 1:
			exclude = []netip.Prefix{netip.PrefixFrom(addr(rng.IntN(64)).Addr(), 28+rng.IntN(5)).Masked()}
		}
		free := 64 - len(owner)
		for a := range 64 {
			if _, ok := owner[addr(a).Addr()]; !ok && len(exclude) > 0 && exclude[0].Contains(addr(a).Addr()) {
				free--
			}
		}
		got, err := p.Allocate(id, want, exclude)
		if free < 2 {
			if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), cidr) ||
				!strings.Contains(err.Error(), fmt.Sprintf("(%d connections hold %d addresses)", len(held), len(owner))) {
				t.Fatalf("op %d: %d free: allocate = %v, %v; want ErrExhausted naming the pool and its use", i, free, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("op %d: %d addresses free: %v", i, free, err)
		}
		for _, a := range []netip.Prefix{got.Src, got.Dst} {
			if !p.Contains(a.Addr()) || a.Bits() != 32 {
				t.Fatalf("op %d: %v outside %s", i, a, cidr)
			}
			if o, ok := owner[a.Addr()]; ok {
				t.Fatalf("op %d: %s handed to %s, held by %s", i, a, id, o)
			}
			for _, x := range exclude {
				if x.Contains(a.Addr()) {
					t.Fatalf("op %d: %s handed out, excluded by %s", i, a, x)
				}
			}
			owner[a.Addr()] = id
		}
		if got.Src == got.Dst {
			t.Fatalf("op %d: %s on both ends", i, got.Src)
		}
		held[id] = got
		ids = append(ids, id)
		if p.Len() != len(held) {
			t.Fatalf("op %d: %d held, model %d", i, p.Len(), len(held))
		}
	}
}

// BenchmarkIPAMAllocate: Allocate+Release with 50,000 connections live
// (O(1) amortised: no scan over the held addresses).
func BenchmarkIPAMAllocate(b *testing.B) {
	p, _ := NewIPAM("10.0.0.0/8")
	for i := range 50000 {
		if _, err := p.Allocate(fmt.Sprint("live", i), Pair{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Allocate("c", Pair{}, nil); err != nil {
			b.Fatal(err)
		}
		p.Release("c")
	}
}
