// Package netnsrun runs a function inside a network namespace: the sockets
// it opens and the /proc/sys/net files it touches belong to that namespace.
package netnsrun

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// In runs fn on an OS thread of its own, moved into ns and back. The
// thread stays locked, and so ends with its goroutine, if it could not be
// moved back: no other goroutine ever runs in the wrong namespace.
func In(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// InPath is In for the namespace at path (a bind mount or /proc/<pid>/ns/net).
func InPath(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	if err := In(ns, fn); err != nil {
		return fmt.Errorf("in netns %s: %w", path, err)
	}
	return nil
}
