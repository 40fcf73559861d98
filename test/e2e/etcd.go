package e2e

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdClientPort is where StartEtcd's etcd serves clients, on the
// loopback of the namespace it is started in.
const EtcdClientPort = 2379

// Etcd is a real single-member etcd that runs inside the test process but
// listens in one of the Lab's namespaces, so that it outlives any vwire
// process using it (a registry that is killed and started again).
type Etcd struct {
	// URL is the client URL, valid inside the namespace.
	URL string
	e   *embed.Etcd
}

// StartEtcd starts an etcd listening on 127.0.0.1:EtcdClientPort inside ns,
// with its data in the Lab's directory, and stops it when the test ends.
//
// The listeners are made on a thread that entered ns (setns): they stay
// in ns whichever thread serves them later.
func StartEtcd(l *Lab, ns *Netns) *Etcd {
	l.T.Helper()
	dir := filepath.Join(l.Dir, "etcd-"+ns.Label)
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", EtcdClientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", EtcdClientPort+1)}

	cfg := embed.NewConfig()
	cfg.Name = "e2e"
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// The gateway dials etcd's own client address from a thread of the
	// host's namespace: it would not find it.
	cfg.EnableGRPCGateway = false
	cfg.UnsafeNoFsync = true // the process that holds the data does not crash

	e, err := inNamespace(ns.Name, func() (*embed.Etcd, error) { return embed.StartEtcd(cfg) })
	if err != nil {
		l.T.Fatalf("etcd in %s: %v", ns.Label, err)
	}
	l.T.Cleanup(func() {
		e.Close()
		os.RemoveAll(dir)
	})
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		l.T.Fatalf("etcd in %s failed while starting: %v", ns.Label, err)
	case <-time.After(StartTimeout):
		l.T.Fatalf("etcd in %s not ready after %v", ns.Label, StartTimeout)
	}
	return &Etcd{URL: client.String(), e: e}
}

// inNamespace runs f on a thread of its own moved into the named
// namespace, and moves the thread back before handing it back to the Go
// runtime. Sockets f creates belong to that namespace whichever thread
// uses them later. The thread must not end: a process the harness started
// from it would get its parent-death signal (Pdeathsig) and be killed. If
// the thread cannot be moved back, it is parked for good instead.
func inNamespace[T any](name string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var zero T
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("open namespace %s: %w", name, err)}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("enter namespace %s: %w", name, err)}
			return
		}
		v, err := f()
		if rerr := netns.Set(orig); rerr != nil {
			ch <- result{v, errors.Join(err, fmt.Errorf("leave namespace %s: %w", name, rerr))}
			select {} // keep the thread, in the wrong namespace, out of use
		}
		runtime.UnlockOSThread()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
