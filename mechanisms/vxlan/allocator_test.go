package vxlan

import (
	"errors"
	"sync"
	"testing"
)

func TestVNIAllocator(t *testing.T) {
	tests := []struct {
		name        string
		first, last uint32
	}{
		{name: "one VNI", first: 7, last: 7},
		{name: "small range", first: 100, last: 131},
		{name: "top of the space", first: MaxVNI - 3, last: MaxVNI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewVNIAllocatorRange(tt.first, tt.last)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint32]bool{}
			for range tt.last - tt.first + 1 {
				v, err := a.Allocate()
				if err != nil {
					t.Fatalf("Allocate() after %d: %v", len(seen), err)
				}
				if v < tt.first || v > tt.last || seen[v] || !a.InUse(v) {
					t.Fatalf("Allocate() = %d (range %d..%d, seen %v)", v, tt.first, tt.last, seen[v])
				}
				seen[v] = true
			}
			if v, err := a.Allocate(); !errors.Is(err, ErrNoFreeVNI) {
				t.Fatalf("Allocate() on a full range = %d, %v; want ErrNoFreeVNI", v, err)
			}
			a.Release(tt.first)
			a.Release(tt.first) // twice is harmless
			if v, err := a.Allocate(); err != nil || v != tt.first {
				t.Fatalf("Allocate() after Release(%d) = %d, %v", tt.first, v, err)
			}
		})
	}
}

func TestVNIAllocatorReserve(t *testing.T) {
	a, err := NewVNIAllocatorRange(10, 20)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		vni     uint32
		wantErr error
	}{
		{name: "free", vni: 15},
		{name: "taken", vni: 15, wantErr: ErrVNIInUse},
		{name: "below range", vni: 9, wantErr: ErrInvalidParameter},
		{name: "above range", vni: 21, wantErr: ErrInvalidParameter},
		{name: "zero", vni: 0, wantErr: ErrInvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Reserve(tt.vni)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reserve(%d) = %v, want %v", tt.vni, err, tt.wantErr)
			}
			if a.TryReserve(tt.vni) {
				t.Fatalf("TryReserve(%d) succeeded", tt.vni)
			}
		})
	}
	// A reserved VNI is never allocated.
	for range 10 {
		if v, err := a.Allocate(); err != nil || v == 15 {
			t.Fatalf("Allocate() = %d, %v", v, err)
		}
	}
}

func TestNewVNIAllocatorRange(t *testing.T) {
	tests := []struct {
		name        string
		first, last uint32
	}{
		{name: "zero first", first: 0, last: 10},
		{name: "past 24 bits", first: 1, last: MaxVNI + 1},
		{name: "empty", first: 10, last: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewVNIAllocatorRange(tt.first, tt.last); err == nil {
				t.Fatalf("NewVNIAllocatorRange(%d, %d) succeeded", tt.first, tt.last)
			}
		})
	}
}

// TestVNIAllocatorSpread checks that fresh allocators (two nodes) do not
// propose the same first VNI: the search starts at a random point.
func TestVNIAllocatorSpread(t *testing.T) {
	seen := map[uint32]bool{}
	for range 100 {
		var a VNIAllocator // the zero value works
		v, err := a.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		if v < MinVNI || v > MaxVNI {
			t.Fatalf("Allocate() = %d", v)
		}
		seen[v] = true
	}
	if len(seen) < 95 {
		t.Fatalf("100 fresh allocators proposed only %d distinct VNIs", len(seen))
	}
}

func TestVNIAllocatorConcurrent(t *testing.T) {
	a, err := NewVNIAllocatorRange(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 125
	results := make([][]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v, err := a.Allocate()
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], v)
				_ = a.InUse(v)
				_ = a.TryReserve(v)
			}
		}()
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, r := range results {
		for _, v := range r {
			if seen[v] {
				t.Fatalf("VNI %d allocated twice", v)
			}
			seen[v] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d VNIs allocated, want %d", len(seen), workers*each)
	}
	if _, err := a.Allocate(); !errors.Is(err, ErrNoFreeVNI) {
		t.Fatalf("Allocate() on a full range: %v", err)
	}
}
