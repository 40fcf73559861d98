// Package dnssrv finds a registry domain's registry the way NSM's
// reference implementation does: a DNS SRV record under the domain's name.
// For domain example.com the record is
//
//	_registry._tcp.example.com.  SRV  <priority> <weight> <port> <target>
//
// with A or AAAA records for the target. Answers are cached for their TTL
// (the smallest TTL of the records used), so a moved registry is found again
// once its records expire, and a failed look-up is not cached at all.
package dnssrv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Service is the SRV service label of a domain's registry.
const Service = "_registry._tcp"

// RecordName is the SRV record that locates domain's registry.
func RecordName(domain string) string { return Service + "." + dns.Fqdn(domain) }

// ResolvConf is where the system's resolvers are read from when no server
// is configured.
const ResolvConf = "/etc/resolv.conf"

// ErrLookup wraps every failed look-up.
var ErrLookup = errors.New("registry domain look-up failed")

// Resolver looks up registries by SRV and caches the answers.
type Resolver struct {
	servers []string // host:port of DNS servers, tried in order
	timeout time.Duration
	now     func() time.Time

	mu    sync.Mutex // guards cache
	cache map[string]entry
}

type entry struct {
	addrs   []string
	expires time.Time
}

// Config configures a Resolver.
type Config struct {
	// Servers are DNS servers (host or host:port, port 53 by default); empty
	// means the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds each query (default 2s).
	Timeout time.Duration
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// New returns a Resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{timeout: cfg.Timeout, now: cfg.Now, cache: map[string]entry{}}
	if r.timeout <= 0 {
		r.timeout = 2 * time.Second
	}
	if r.now == nil {
		r.now = time.Now
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnssrv: no --dns-server and %s: %w", ResolvConf, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
	}
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, "53")
		}
		if _, err := netip.ParseAddrPort(s); err != nil {
			return nil, fmt.Errorf("dnssrv: DNS server %q: want an IP address with an optional port", s)
		}
		r.servers = append(r.servers, s)
	}
	if len(r.servers) == 0 {
		return nil, errors.New("dnssrv: no DNS server configured")
	}
	return r, nil
}

// Lookup returns the registry addresses (host:port) of domain, best first:
// by SRV priority, then by weight, heaviest first.
func (r *Resolver) Lookup(ctx context.Context, domain string) ([]string, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	r.mu.Lock()
	e, ok := r.cache[domain]
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.addrs, nil
	}
	addrs, ttl, err := r.resolve(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("%w: domain %s: %w", ErrLookup, domain, err)
	}
	r.mu.Lock()
	r.cache[domain] = entry{addrs: addrs, expires: r.now().Add(ttl)}
	r.mu.Unlock()
	return addrs, nil
}

// Forget drops domain's cached answer: its registry did not answer, so the
// next look-up asks DNS again instead of waiting out the TTL.
func (r *Resolver) Forget(domain string) {
	r.mu.Lock()
	delete(r.cache, strings.TrimSuffix(strings.ToLower(domain), "."))
	r.mu.Unlock()
}

func (r *Resolver) resolve(ctx context.Context, domain string) ([]string, time.Duration, error) {
	name := RecordName(domain)
	resp, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, 0, err
	}
	var srvs []*dns.SRV
	ttl := uint32(1<<31 - 1)
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
			ttl = min(ttl, srv.Hdr.Ttl)
		}
	}
	if len(srvs) == 0 {
		return nil, 0, fmt.Errorf("SRV %s: no records", name)
	}
	slices.SortStableFunc(srvs, func(a, b *dns.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight))
	})
	// Targets' addresses: from the additional section when the server gave
	// them, else by asking.
	glue := map[string][]netip.Addr{}
	for _, rr := range resp.Extra {
		if a, ttlOf := addrOf(rr); a.IsValid() {
			glue[strings.ToLower(rr.Header().Name)] = append(glue[strings.ToLower(rr.Header().Name)], a)
			ttl = min(ttl, ttlOf)
		}
	}
	var addrs []string
	var errs []error
	for _, srv := range srvs {
		target := strings.ToLower(dns.Fqdn(srv.Target))
		ips := glue[target]
		if len(ips) == 0 {
			var t uint32
			ips, t, err = r.addresses(ctx, target)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ttl = min(ttl, t)
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.String(), strconv.Itoa(int(srv.Port))))
		}
	}
	if len(addrs) == 0 {
		return nil, 0, fmt.Errorf("SRV %s: no target has an address: %w", name, errors.Join(errs...))
	}
	return addrs, time.Duration(ttl) * time.Second, nil
}

func (r *Resolver) addresses(ctx context.Context, host string) ([]netip.Addr, uint32, error) {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		return []netip.Addr{ip}, 1<<31 - 1, nil
	}
	var out []netip.Addr
	ttl := uint32(1<<31 - 1)
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range resp.Answer {
			if a, tt := addrOf(rr); a.IsValid() {
				out = append(out, a)
				ttl = min(ttl, tt)
			}
		}
	}
	if len(out) == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("%s: no A or AAAA record", host))
		}
		return nil, 0, errors.Join(errs...)
	}
	return out, ttl, nil
}

func addrOf(rr dns.RR) (netip.Addr, uint32) {
	switch v := rr.(type) {
	case *dns.A:
		a, _ := netip.AddrFromSlice(v.A.To4())
		return a, v.Hdr.Ttl
	case *dns.AAAA:
		a, _ := netip.AddrFromSlice(v.AAAA)
		return a, v.Hdr.Ttl
	}
	return netip.Addr{}, 0
}

// query asks each server in turn until one answers authoritatively (an
// answer or NXDOMAIN); UDP first, TCP when the answer was truncated.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	var errs []error
	for _, server := range r.servers {
		qctx, cancel := context.WithTimeout(ctx, r.timeout)
		resp, err := r.exchange(qctx, m, server)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s at %s: %w", dns.TypeToString[qtype], name, server, err))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, nil
		case dns.RcodeNameError:
			return nil, fmt.Errorf("%s %s: no such name (NXDOMAIN from %s)", dns.TypeToString[qtype], name, server)
		default:
			errs = append(errs, fmt.Errorf("%s %s at %s: %s", dns.TypeToString[qtype], name, server, dns.RcodeToString[resp.Rcode]))
		}
	}
	return nil, errors.Join(errs...)
}

func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	return resp, err
}
