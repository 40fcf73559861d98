// Package etcdtest runs a real single-member etcd inside a test process, so
// that tests of etcd-backed code need no external cluster. The server listens
// on loopback, keeps its data in t.TempDir(), logs nothing, and can be
// stopped and started again on the same data and address to test restarts.
//
//	srv := etcdtest.Start(t)
//	s, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: srv.Endpoints()})
//	...
//	srv.Restart()
//
// Clients reach etcd through a small TCP forwarder. Stop cuts every client
// connection before shutting etcd down; otherwise etcd's graceful shutdown
// waits about seven seconds for open watch streams to end. To a client a
// Stop looks like a crashed member: connections drop and new ones are
// refused until Restart.
//
// StartTLS runs etcd with client-certificate TLS on: a client must trust
// the test CA and present a certificate it signed (see TLSFiles).
package etcdtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

const (
	// readyTimeout bounds how long a start may take before the test fails.
	readyTimeout = 60 * time.Second
	// dialTimeout bounds the forwarder's connection to etcd.
	dialTimeout = 5 * time.Second
)

// Server is an embedded etcd owned by one test. Its methods are safe for
// concurrent use.
type Server struct {
	t     testing.TB
	front *forwarder

	// mu serialises Stop and Restart and guards the fields below.
	mu sync.Mutex
	// dir, clientURL and peerURL are where etcd keeps data and listens;
	// they change only while Start looks for free ports.
	dir       string
	clientURL url.URL
	peerURL   url.URL
	// etcd is the running server; nil while stopped.
	etcd *embed.Etcd

	// tls is the server's side of client-certificate TLS; nil for plain
	// HTTP. clientTLS is what a client needs.
	tls       *serverTLS
	clientTLS TLSFiles
}

// Start runs a new, empty etcd and stops it when the test ends. It fails the
// test if etcd does not become ready.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start with TLS on the client port: etcd presents a
// certificate for 127.0.0.1 and refuses clients without a certificate
// signed by the test CA. TLS returns the files a client needs.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, withTLS bool) *Server {
	t.Helper()
	front, err := listenForwarder()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	s := &Server{t: t, front: front}
	t.Cleanup(front.close)
	if withTLS {
		client, srv, err := writeTLS(t.TempDir())
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		s.tls, s.clientTLS = &srv, client
		front.scheme = "https"
	}

	// Free ports are found by binding and releasing them before etcd binds
	// them, so another process may win the race: try again with new ports
	// and a fresh directory.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		err := s.startFresh(t.TempDir())
		if err == nil {
			// Registered after t.TempDir, so it runs before the
			// directory is removed.
			t.Cleanup(s.Stop)
			return s
		}
		if attempt == attempts {
			t.Fatalf("etcdtest: start: %v", err)
		}
	}
}

// TLS returns the files a client of a server started with StartTLS needs;
// they are empty for a server started with Start.
func (s *Server) TLS() TLSFiles { return s.clientTLS }

// Endpoints returns the client URLs to give to an etcd client. They stay
// the same across Stop and Restart.
func (s *Server) Endpoints() []string {
	return []string{s.front.url()}
}

// Stop drops every client connection and shuts etcd down, waiting until it
// has finished. Calling it on a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etcd == nil {
		return
	}
	s.front.cut()
	s.etcd.Close()
	s.etcd = nil
}

// Restart stops etcd, if running, and starts it again on the same data
// directory and ports, as a restarted member would. It fails the test if
// etcd does not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

// startFresh picks new ports and starts etcd on an empty dir.
func (s *Server) startFresh(dir string) error {
	clientURL, err := freeURL()
	if err != nil {
		return err
	}
	peerURL, err := freeURL()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir, s.clientURL, s.peerURL = dir, clientURL, peerURL
	return s.startLocked()
}

// startLocked runs etcd on s's directory and ports, waits until it serves
// and lets clients in. s.mu must be held.
func (s *Server) startLocked() error {
	if s.etcd != nil {
		return errors.New("etcd already running")
	}

	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	listen := s.clientURL
	if s.tls != nil {
		listen.Scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       s.tls.cert,
			KeyFile:        s.tls.key,
			TrustedCAFile:  s.tls.ca,
			ClientCertAuth: true,
		}
	}
	cfg.ListenClientUrls = []url.URL{listen}
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: listen.Scheme, Host: s.front.addr()}}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.EnableGRPCGateway = false
	// Test data need not reach the disk: the process does not crash
	// between a Stop and a Restart, so nothing is lost.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd in %s: %w", s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd in %s failed while starting: %w", s.dir, err)
	case <-time.After(readyTimeout):
		e.Close()
		return fmt.Errorf("etcd in %s not ready after %v", s.dir, readyTimeout)
	}
	s.etcd = e
	s.front.open(s.clientURL.Host)
	return nil
}

// freeURL returns an http URL on a loopback port that was free a moment ago.
func freeURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return url.URL{}, fmt.Errorf("release port %s: %w", addr, err)
	}
	return url.URL{Scheme: "http", Host: addr}, nil
}

// forwarder passes client connections through to etcd while it is open and
// refuses them while it is shut.
type forwarder struct {
	listener net.Listener
	// scheme is the clients' URL scheme: http, or https with TLS.
	scheme string
	// done counts the accept loop and the copying goroutines.
	done sync.WaitGroup

	// mu guards the fields below.
	mu sync.Mutex
	// backend is etcd's client address; empty while shut.
	backend string
	// cuts counts calls to cut, so that a connection dialled across a
	// cut is dropped even if the backend is open again.
	cuts uint64
	// conns holds both ends of every open connection.
	conns map[net.Conn]struct{}
}

func listenForwarder() (*forwarder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for clients: %w", err)
	}
	f := &forwarder{listener: l, scheme: "http", conns: make(map[net.Conn]struct{})}
	f.done.Add(1)
	go f.acceptLoop()
	return f, nil
}

func (f *forwarder) addr() string { return f.listener.Addr().String() }

func (f *forwarder) url() string { return f.scheme + "://" + f.addr() }

// open lets clients through to backend.
func (f *forwarder) open(backend string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backend = backend
}

// cut refuses new clients and closes every open connection.
func (f *forwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backend = ""
	f.cuts++
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}

// close stops accepting, closes every connection and waits for the
// forwarder's goroutines.
func (f *forwarder) close() {
	f.listener.Close()
	f.cut()
	f.done.Wait()
}

func (f *forwarder) acceptLoop() {
	defer f.done.Done()
	for {
		client, err := f.listener.Accept()
		if err != nil {
			return // closed
		}
		f.done.Add(1)
		go f.serve(client)
	}
}

// serve connects one client to etcd and copies both ways until either side
// or cut closes the connection.
func (f *forwarder) serve(client net.Conn) {
	defer f.done.Done()
	f.mu.Lock()
	backend, cuts := f.backend, f.cuts
	f.mu.Unlock()
	if backend == "" {
		client.Close()
		return
	}
	server, err := net.DialTimeout("tcp", backend, dialTimeout)
	if err != nil {
		client.Close()
		return
	}
	// A cut may have come while dialling.
	f.mu.Lock()
	if f.cuts != cuts {
		f.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	f.conns[client] = struct{}{}
	f.conns[server] = struct{}{}
	f.mu.Unlock()

	copied := make(chan struct{}, 2)
	go func() { io.Copy(server, client); copied <- struct{}{} }()
	go func() { io.Copy(client, server); copied <- struct{}{} }()
	<-copied
	client.Close()
	server.Close()
	<-copied

	f.mu.Lock()
	delete(f.conns, client)
	delete(f.conns, server)
	f.mu.Unlock()
}
