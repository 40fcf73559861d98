package icmpresponder

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrExhausted means a pool has no two free addresses left.
var ErrExhausted = errors.New("address pool exhausted")

// Pair is the two ends of one point-to-point vWire, as host prefixes
// (/32 or /128): Src is the client's side, Dst the endpoint's.
type Pair struct {
	Src, Dst netip.Prefix
}

// IPAM hands out point-to-point address pairs from one CIDR, one pair per
// connection id, the lowest free addresses first, the endpoint's (Dst)
// before the client's (Src). Every address of the CIDR is usable: the ends
// are host routes, so there is no network or broadcast address to skip.
// It is safe for concurrent use.
type IPAM struct {
	prefix netip.Prefix

	mu     sync.Mutex              // guards the fields below
	byConn map[string]Pair         // pair held by each connection id
	used   map[netip.Addr]struct{} // addresses held by some pair
}

// NewIPAM returns an IPAM for cidr (IPv4 or IPv6). The CIDR must hold at
// least two addresses.
func NewIPAM(cidr string) (*IPAM, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("ipam: cidr %q: %w", cidr, err)
	}
	p = p.Masked()
	if p.Bits() >= p.Addr().BitLen() {
		return nil, fmt.Errorf("ipam: cidr %s holds fewer than two addresses", p)
	}
	return &IPAM{prefix: p, byConn: map[string]Pair{}, used: map[netip.Addr]struct{}{}}, nil
}

// Prefix is the pool's CIDR.
func (p *IPAM) Prefix() netip.Prefix { return p.prefix }

// Contains reports whether addr belongs to the pool.
func (p *IPAM) Contains(addr netip.Addr) bool { return p.prefix.Contains(addr) }

// Allocate returns the pair of connID: the one it already holds (a refresh
// keeps its addresses), else want when want lies in the pool and is free
// (a connection kept across a restart of the endpoint), else the lowest two
// free addresses outside exclude. It fails with ErrExhausted when none are
// left.
func (p *IPAM) Allocate(connID string, want Pair, exclude []netip.Prefix) (Pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pair, ok := p.byConn[connID]; ok {
		return pair, nil
	}
	if p.free(want.Src) && p.free(want.Dst) && want.Src.Addr() != want.Dst.Addr() {
		return p.hold(connID, want), nil
	}
	dst, ok := p.nextFree(p.prefix.Addr(), exclude)
	if !ok {
		return Pair{}, p.exhausted()
	}
	// Everything below dst is held or excluded, so src lies above it.
	src, ok := p.nextFree(dst.Next(), exclude)
	if !ok {
		return Pair{}, p.exhausted()
	}
	return p.hold(connID, Pair{Src: host(src), Dst: host(dst)}), nil
}

// Release frees the pair of connID; it reports whether there was one.
func (p *IPAM) Release(connID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pair, ok := p.byConn[connID]
	if !ok {
		return false
	}
	delete(p.byConn, connID)
	delete(p.used, pair.Src.Addr())
	delete(p.used, pair.Dst.Addr())
	return true
}

// Len is the number of connections holding a pair.
func (p *IPAM) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byConn)
}

func (p *IPAM) hold(connID string, pair Pair) Pair {
	p.byConn[connID] = pair
	p.used[pair.Src.Addr()] = struct{}{}
	p.used[pair.Dst.Addr()] = struct{}{}
	return pair
}

// free reports whether hp is a host prefix of the pool nobody holds.
func (p *IPAM) free(hp netip.Prefix) bool {
	if !hp.IsValid() || hp.Bits() != hp.Addr().BitLen() || !p.prefix.Contains(hp.Addr()) {
		return false
	}
	_, used := p.used[hp.Addr()]
	return !used
}

// nextFree scans from start for an address of the pool that is neither
// held nor excluded. Scanning costs at most one step per held
// address plus the excluded ranges it crosses, so a /8 or an IPv6 /64 is
// no slower than a /30.
func (p *IPAM) nextFree(start netip.Addr, exclude []netip.Prefix) (netip.Addr, bool) {
	for a := start; a.IsValid() && p.prefix.Contains(a); {
		if x, ok := excludedBy(a, exclude); ok {
			a = lastAddr(x).Next()
			continue
		}
		if _, used := p.used[a]; !used {
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

func (p *IPAM) exhausted() error {
	return fmt.Errorf("%w: no two free addresses in %s (%d connections hold %d addresses)",
		ErrExhausted, p.prefix, len(p.byConn), len(p.used))
}

func excludedBy(a netip.Addr, exclude []netip.Prefix) (netip.Prefix, bool) {
	for _, x := range exclude {
		if x.Addr().BitLen() == a.BitLen() && x.Contains(a) {
			return x.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
