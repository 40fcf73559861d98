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
// connection id, the endpoint's (Dst) before the client's (Src). Released
// addresses are reused first, the longest released first (an address just
// released is not handed out again while older ones are free, so a late
// packet to it finds no one rather than a new client); then addresses never
// handed out, from the bottom of the CIDR up. Allocate and Release cost O(1) amortised,
// whatever the number of live connections, unless a Request's excluded
// prefixes cover the free addresses it would get (then the scan crosses
// them). Every address of the CIDR is usable: the ends are host routes, so
// there is no network or broadcast address to skip. It is safe for
// concurrent use.
type IPAM struct {
	prefix netip.Prefix

	mu     sync.Mutex              // guards the fields below
	byConn map[string]Pair         // pair held by each connection id
	used   map[netip.Addr]struct{} // addresses held by some pair
	// fresh: every address below it has been held at some time (or is
	// held); from it up, only addresses asked for by a Request (want) may
	// be held.
	fresh netip.Addr
	// freed: addresses below fresh released since, oldest first, from
	// index head. An entry may be held again meanwhile (asked for by
	// want); used is the truth, and such entries are dropped when met.
	freed []netip.Addr
	head  int
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
	return &IPAM{prefix: p, byConn: map[string]Pair{}, used: map[netip.Addr]struct{}{}, fresh: p.Addr()}, nil
}

// Prefix is the pool's CIDR.
func (p *IPAM) Prefix() netip.Prefix { return p.prefix }

// Contains reports whether addr belongs to the pool.
func (p *IPAM) Contains(addr netip.Addr) bool { return p.prefix.Contains(addr) }

// Allocate returns the pair of connID: the one it already holds (a refresh
// keeps its addresses), else want when want lies in the pool and is free
// (a connection kept across a restart of the endpoint), else two free
// addresses outside exclude (see IPAM). It fails with ErrExhausted when
// none are left.
func (p *IPAM) Allocate(connID string, want Pair, exclude []netip.Prefix) (Pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pair, ok := p.byConn[connID]; ok {
		return pair, nil
	}
	if p.free(want.Src) && p.free(want.Dst) && want.Src.Addr() != want.Dst.Addr() {
		return p.hold(connID, want), nil
	}
	dst, ok := p.take(exclude)
	if !ok {
		return Pair{}, p.exhausted()
	}
	p.used[dst] = struct{}{}
	src, ok := p.take(exclude)
	if !ok {
		p.unhold(dst)
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
	p.unhold(pair.Dst.Addr())
	p.unhold(pair.Src.Addr())
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

// unhold frees a: one below fresh goes to the back of freed; one above
// it is found again by the scan from fresh.
func (p *IPAM) unhold(a netip.Addr) {
	delete(p.used, a)
	if a.Less(p.fresh) || !p.fresh.IsValid() {
		p.freed = append(p.freed, a)
	}
}

// take returns a free address outside exclude, not yet held: the oldest
// released one, else the lowest never handed out.
func (p *IPAM) take(exclude []netip.Prefix) (netip.Addr, bool) {
	for i := p.head; i < len(p.freed); {
		a := p.freed[i]
		if _, held := p.used[a]; held {
			if i == p.head { // held again meanwhile: drop it
				p.popFreed()
				i = p.head
			} else {
				i++
			}
			continue
		}
		if _, ok := excludedBy(a, exclude); ok {
			i++
			continue // stays for a Request that does not exclude it
		}
		// Shift the entries skipped one place up over a (they keep their
		// order) and drop the head, now a duplicate of the next one.
		copy(p.freed[p.head+1:i+1], p.freed[p.head:i])
		p.popFreed()
		return a, true
	}
	// Advance fresh over what was held from it (the last take, or wants).
	for p.fresh.IsValid() && p.prefix.Contains(p.fresh) {
		if _, held := p.used[p.fresh]; !held {
			break
		}
		p.fresh = p.fresh.Next()
	}
	// Excluded ranges are crossed here, not by fresh: the addresses in
	// them stay for Requests that do not exclude them.
	for a := p.fresh; a.IsValid() && p.prefix.Contains(a); {
		if x, ok := excludedBy(a, exclude); ok {
			a = lastAddr(x).Next()
			continue
		}
		if _, held := p.used[a]; !held {
			if a == p.fresh {
				// Handed out now: released, it goes to freed.
				p.fresh = a.Next()
			}
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

// popFreed drops freed's oldest entry, compacting the slice once half of
// it is spent.
func (p *IPAM) popFreed() {
	p.freed[p.head] = netip.Addr{}
	p.head++
	if p.head == len(p.freed) {
		p.freed, p.head = p.freed[:0], 0
	} else if p.head > 64 && p.head*2 > len(p.freed) {
		n := copy(p.freed, p.freed[p.head:])
		p.freed, p.head = p.freed[:n], 0
	}
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
