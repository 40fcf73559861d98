package dnssrv_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/vwire/vwire/registry/dnssrv"
	"github.com/vwire/vwire/registry/dnssrv/dnstest"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newResolver(t *testing.T, s *dnstest.Server, c *clock) *dnssrv.Resolver {
	t.Helper()
	r, err := dnssrv.New(dnssrv.Config{Servers: []string{s.Addr}, Now: c.now, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookupOrderGlueAndTTL(t *testing.T) {
	s := startDNS(t)
	if err := s.Set(
		"_registry._tcp.a.test. 30 IN SRV 10 0 5002 backup.a.test.",
		"_registry._tcp.a.test. 30 IN SRV 0 10 5002 light.a.test.",
		"_registry._tcp.a.test. 30 IN SRV 0 90 5003 heavy.a.test.",
		"backup.a.test. 60 IN A 192.0.2.3",
		"light.a.test. 60 IN A 192.0.2.2",
		"heavy.a.test. 5 IN A 192.0.2.1",
	); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1000, 0)}
	r := newResolver(t, s, c)
	ctx := context.Background()
	got, err := r.Lookup(ctx, "A.test.")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1:5003", "192.0.2.2:5002", "192.0.2.3:5002"}
	if !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v (priority, then weight)", got, want)
	}
	srvQueries := func() int { return s.Queries("_registry._tcp.a.test.", dns.TypeSRV) }
	if n := srvQueries(); n != 1 {
		t.Fatalf("%d SRV queries, want 1", n)
	}
	// The smallest TTL (heavy.a.test's 5s) bounds the cache.
	c.add(4 * time.Second)
	if _, err := r.Lookup(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	if n := srvQueries(); n != 1 {
		t.Fatalf("within the TTL: %d SRV queries, want 1 (cached)", n)
	}
	// The registry moves; after the TTL the resolver sees it.
	s.Delete("_registry._tcp.a.test.")
	if err := s.Set("_registry._tcp.a.test. 30 IN SRV 0 0 6000 light.a.test."); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Second)
	got, err = r.Lookup(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if n := srvQueries(); n != 2 || !slices.Equal(got, []string{"192.0.2.2:6000"}) {
		t.Fatalf("after the TTL: %d SRV queries and %v, want 2 and [192.0.2.2:6000]", n, got)
	}
	// Forget makes the next look-up ask at once.
	r.Forget("a.test")
	if _, err := r.Lookup(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	if n := srvQueries(); n != 3 {
		t.Fatalf("after Forget: %d SRV queries, want 3", n)
	}
}

func TestLookupTargetWithoutGlue(t *testing.T) {
	s := startDNS(t)
	// The SRV target is in another zone: no additional records, the
	// resolver asks for its address.
	if err := s.Set(
		"_registry._tcp.b.test. 30 IN SRV 0 0 5002 reg.elsewhere.test.",
		"reg.elsewhere.test. 30 IN AAAA 2001:db8::7",
	); err != nil {
		t.Fatal(err)
	}
	s.Delete("unused")
	r := newResolver(t, s, &clock{t: time.Unix(0, 0)})
	got, err := r.Lookup(context.Background(), "b.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"[2001:db8::7]:5002"}) {
		t.Fatalf("Lookup = %v", got)
	}
}

func TestLookupFailures(t *testing.T) {
	s := startDNS(t)
	if err := s.Set("_registry._tcp.noaddr.test. 30 IN SRV 0 0 5002 ghost.noaddr.test."); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, s, &clock{t: time.Unix(0, 0)})
	ctx := context.Background()
	for _, tc := range []struct{ domain, want string }{
		{"missing.test", "NXDOMAIN"},
		{"noaddr.test", "no target has an address"},
	} {
		_, err := r.Lookup(ctx, tc.domain)
		if !errors.Is(err, dnssrv.ErrLookup) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.domain) {
			t.Errorf("Lookup(%s) = %v, want ErrLookup naming the domain and %q", tc.domain, err, tc.want)
		}
	}
	// A failure is not cached: once the record exists, it is found.
	if err := s.Set("_registry._tcp.missing.test. 30 IN SRV 0 0 5002 192.0.2.9."); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Lookup(ctx, "missing.test"); err != nil || !slices.Equal(got, []string{"192.0.2.9:5002"}) {
		t.Fatalf("after the record appeared: %v, %v", got, err)
	}

	// No server answers at all.
	dead, err := dnssrv.New(dnssrv.Config{Servers: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Lookup(ctx, "a.test"); !errors.Is(err, dnssrv.ErrLookup) {
		t.Fatalf("unreachable DNS server: %v", err)
	}
	if _, err := dnssrv.New(dnssrv.Config{Servers: []string{"dns.example.com"}}); err == nil {
		t.Fatal("a DNS server given by name was accepted")
	}
}
