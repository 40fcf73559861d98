// Package keyedlock serialises work per key (a connection id): Requests and
// Closes for the same connection never run at once, different connections
// never wait for each other.
package keyedlock

import "sync"

// Locker is a set of mutexes created on demand and freed when unused.
// The zero value is ready to use.
type Locker struct {
	mu    sync.Mutex // guards locks
	locks map[string]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by Locker.mu
}

// Lock blocks until key is free and returns the function that frees it.
func (l *Locker) Lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*entry{}
	}
	e := l.locks[key]
	if e == nil {
		e = &entry{}
		l.locks[key] = e
	}
	e.refs++
	l.mu.Unlock()

	e.mu.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Unlock()
			l.mu.Lock()
			if e.refs--; e.refs == 0 {
				delete(l.locks, key)
			}
			l.mu.Unlock()
		})
	}
}

// Len is the number of keys held or waited for (for tests and metrics).
func (l *Locker) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
