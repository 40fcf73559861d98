package keyedlock

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestLockSerialisesPerKey(t *testing.T) {
	var l Locker
	var inside [2]atomic.Int32
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % 2
			unlock := l.Lock([]string{"a", "b"}[k])
			if n := inside[k].Add(1); n != 1 {
				t.Errorf("key %d: %d holders at once", k, n)
			}
			inside[k].Add(-1)
			unlock()
			unlock() // safe twice
		}()
	}
	wg.Wait()
	if l.Len() != 0 {
		t.Fatalf("%d keys left behind", l.Len())
	}
}

func TestDifferentKeysDoNotWait(t *testing.T) {
	var l Locker
	unlockA := l.Lock("a")
	done := make(chan struct{})
	go func() {
		l.Lock("b")()
		close(done)
	}()
	<-done // would deadlock if b waited for a
	unlockA()
}
