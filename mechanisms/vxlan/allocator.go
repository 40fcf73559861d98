package vxlan

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// VNIAllocator hands out the VNIs of one node. Allocate starts its search at
// a random point of the range, so two nodes rarely propose the same VNI to
// each other. The zero value allocates from MinVNI..MaxVNI; it must not be
// copied after first use.
type VNIAllocator struct {
	first, last uint32 // fixed at construction; both 0 means MinVNI..MaxVNI

	mu   sync.Mutex
	used map[uint32]struct{} // guarded by mu
}

// NewVNIAllocator returns an allocator of MinVNI..MaxVNI.
func NewVNIAllocator() *VNIAllocator { return &VNIAllocator{} }

// NewVNIAllocatorRange returns an allocator of first..last, for a node that
// must leave other VNIs to other users of VXLAN. Give every node the same
// range: a server refuses offered VNIs outside its own range.
func NewVNIAllocatorRange(first, last uint32) (*VNIAllocator, error) {
	if err := CheckVNI(first); err != nil {
		return nil, err
	}
	if err := CheckVNI(last); err != nil {
		return nil, err
	}
	if first > last {
		return nil, fmt.Errorf("%s: %w: vni range %d..%d is empty", mech, ErrInvalidParameter, first, last)
	}
	return &VNIAllocator{first: first, last: last}, nil
}

func (a *VNIAllocator) bounds() (first, last uint32) {
	if a.first == 0 && a.last == 0 {
		return MinVNI, MaxVNI
	}
	return a.first, a.last
}

// Allocate takes a free VNI, or fails with ErrNoFreeVNI.
func (a *VNIAllocator) Allocate() (uint32, error) {
	first, last := a.bounds()
	n := last - first + 1
	a.mu.Lock()
	defer a.mu.Unlock()
	if uint32(len(a.used)) >= n {
		return 0, fmt.Errorf("%s: %w: all %d of %d..%d are taken", mech, ErrNoFreeVNI, n, first, last)
	}
	start := rand.N(n)
	for i := range n {
		vni := first + (start+i)%n
		if _, taken := a.used[vni]; !taken {
			a.mark(vni)
			return vni, nil
		}
	}
	// Unreachable: len(used) < n leaves a free VNI in the range.
	return 0, fmt.Errorf("%s: %w in %d..%d", mech, ErrNoFreeVNI, first, last)
}

// Reserve takes a given VNI: one offered by a peer, or one found in the
// dataplane when reconciling after a restart. It fails with ErrVNIInUse if
// the VNI is taken, and with ErrInvalidParameter if it is outside the range.
func (a *VNIAllocator) Reserve(vni uint32) error {
	first, last := a.bounds()
	if vni < first || vni > last {
		return fmt.Errorf("%s: %w: vni %d is outside this node's range %d..%d", mech, ErrInvalidParameter, vni, first, last)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, taken := a.used[vni]; taken {
		return fmt.Errorf("%s: vni %d: %w", mech, vni, ErrVNIInUse)
	}
	a.mark(vni)
	return nil
}

// TryReserve is Reserve answering true on success: the isFree to give Accept.
func (a *VNIAllocator) TryReserve(vni uint32) bool { return a.Reserve(vni) == nil }

// Release returns vni to the free pool; releasing a free VNI does nothing.
func (a *VNIAllocator) Release(vni uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, vni)
}

// InUse reports whether vni is taken.
func (a *VNIAllocator) InUse(vni uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, taken := a.used[vni]
	return taken
}

// mark takes vni; a.mu must be held.
func (a *VNIAllocator) mark(vni uint32) {
	if a.used == nil {
		a.used = map[uint32]struct{}{}
	}
	a.used[vni] = struct{}{}
}
