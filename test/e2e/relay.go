package e2e

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Relay forwards TCP connections accepted on listen inside ns to target,
// dialled from the test process's own namespace: a daemon in the
// namespace reaches a server the test runs on the host's loopback (the
// Kubernetes API server of kubetest). It stops when the test ends.
func Relay(l *Lab, ns *Netns, listen, target string) {
	l.T.Helper()
	ln, err := inNamespace(ns.Name, func() (net.Listener, error) { return net.Listen("tcp", listen) })
	if err != nil {
		l.T.Fatalf("relay in %s: %v", ns.Label, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false // stopped
		}
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
		return true
	}
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				l.T.Logf("relay in %s: accept: %v", ns.Label, err)
				return
			}
			wg.Go(func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					l.T.Logf("relay in %s: dial %s: %v", ns.Label, target, err)
					return
				}
				defer out.Close()
				if !track(in, true) || !track(out, true) {
					return
				}
				defer track(in, false)
				defer track(out, false)
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(out, in)
					out.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(in, out)
				in.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	l.T.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
}
