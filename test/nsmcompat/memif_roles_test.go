package nsmcompat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"github.com/networkservicemesh/sdk/pkg/networkservice/core/next"
	gomemif "go.fd.io/govpp/extras/gomemif/memif"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// NSM's memif workloads (cmd-nsc-vpp, cmd-nse-vpp-style endpoints) run
// sdk-vpp's memif elements, which drive a VPP of their own. sdk-vpp v1.18.0
// builds on NSM's govpp fork (its own binapi) and a VPP of its own per
// workload; here the elements below do what sdk-vpp's do on the wire (the
// same offer, the same answers, sendfd/recvfd as NSM's chains have them)
// and a gomemif peer stands in for the workload's VPP memif.

// ownNetNS opens the process's network namespace once, as sdk-vpp does, and
// names it /proc/<pid>/fd/<n> (a path NSM's sendfd passes by descriptor).
func ownNetNS() (string, error) {
	f, err := netNSFile()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), nil
}

// netNSFile holds the namespace open for the life of the process (the
// cached *os.File keeps its finalizer from closing it).
var netNSFile = sync.OnceValues(func() (*os.File, error) { return os.Open("/proc/self/ns/net") })

// memifPeer is a gomemif interface: the workload's end of a memif.
type memifPeer struct {
	sock  *gomemif.Socket
	iface *gomemif.Interface
	done  chan struct{}
	wg    sync.WaitGroup
	echo  bool
	got   atomic.Int64

	mu     sync.Mutex
	quit   chan struct{} // closed when the peer disconnects
	polled chan struct{} // closed once polling stopped
}

const (
	etherRequest = 0x88b5 // IEEE local experimental EtherTypes
	etherReply   = 0x88b6
)

// startMemif listens (master) or connects (slave) on filename ("@name" is
// abstract) and, once connected, echoes every frame (echo) or counts the
// echoes of its own.
func startMemif(filename string, master, echo bool) (*memifPeer, error) {
	p := &memifPeer{done: make(chan struct{}), polled: make(chan struct{}), echo: echo}
	sock, err := gomemif.NewSocket("nsmcompat", filename)
	if err != nil {
		return nil, fmt.Errorf("memif socket %s: %w", filename, err)
	}
	p.sock = sock
	iface, err := sock.NewInterface(&gomemif.Arguments{
		IsMaster: master, Name: "nsmcompat",
		ConnectedFunc: func(i *gomemif.Interface) error {
			q := make(chan struct{})
			p.mu.Lock()
			p.quit = q
			p.mu.Unlock()
			p.wg.Add(1)
			go p.run(i, q)
			return nil
		},
		// Called before gomemif unmaps the rings: the frame loop must
		// have stopped.
		DisconnectedFunc: func(*gomemif.Interface) error {
			p.mu.Lock()
			q := p.quit
			p.quit = nil
			p.mu.Unlock()
			if q != nil {
				close(q)
			}
			p.wg.Wait()
			return nil
		},
	})
	if err != nil {
		sock.Delete()
		return nil, fmt.Errorf("memif on %s: %w", filename, err)
	}
	p.iface = iface
	// gomemif's poller blocks on its error channel: drain it until it stops
	// (the peer's disconnects show up there too).
	errs := make(chan error)
	go func() {
		for {
			select {
			case err := <-errs:
				fmt.Fprintf(os.Stderr, "memif %s: %v\n", filename, err)
			case <-p.polled:
				return
			}
		}
	}()
	sock.StartPolling(errs)
	if !master {
		if err := iface.RequestConnection(); err != nil {
			p.stop()
			return nil, fmt.Errorf("memif connect %s: %w", filename, err)
		}
	}
	return p, nil
}

// run moves frames while connected: echo mode answers each request frame,
// the other mode sends a request every 50 ms and counts the answers.
func (p *memifPeer) run(i *gomemif.Interface, quit <-chan struct{}) {
	defer p.wg.Done()
	rx, err1 := i.GetRxQueue(0)
	tx, err2 := i.GetTxQueue(0)
	if err1 != nil || err2 != nil {
		return
	}
	buf := make([]byte, 2048)
	var seq uint32
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-quit:
			return
		case <-tick.C:
			if !p.echo {
				seq++
				tx.WritePacket(frame(etherRequest, seq))
			}
		default:
		}
		n, err := rx.ReadPacket(buf)
		if err != nil || n < 18 {
			time.Sleep(time.Millisecond)
			continue
		}
		typ := binary.BigEndian.Uint16(buf[12:14])
		switch {
		case p.echo && typ == etherRequest:
			tx.WritePacket(frame(etherReply, binary.BigEndian.Uint32(buf[14:18])))
			p.got.Add(1)
		case !p.echo && typ == etherReply && bytes.Equal(buf[:6], []byte{2, 0, 0, 0, 0, 1}):
			p.got.Add(1)
		}
	}
}

// frame is an Ethernet frame of EtherType typ carrying seq; requests go
// from 02:..:01 to 02:..:02, answers back.
func frame(typ uint16, seq uint32) []byte {
	f := make([]byte, 64)
	src, dst := []byte{2, 0, 0, 0, 0, 1}, []byte{2, 0, 0, 0, 0, 2}
	if typ == etherReply {
		src, dst = dst, src
	}
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	binary.BigEndian.PutUint32(f[14:], seq)
	return f
}

func (p *memifPeer) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	p.wg.Wait()
	_ = p.sock.StopPolling()
	close(p.polled)
	_ = p.sock.Delete() // disconnects and deletes the interface too
}

// peers are the memifs of one workload, by connection id.
type peers struct {
	mu sync.Mutex
	m  map[string]*memifPeer
}

func (ps *peers) get(id string) *memifPeer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.m[id]
}

func (ps *peers) put(id string, p *memifPeer) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[string]*memifPeer{}
	}
	ps.m[id] = p
}

func (ps *peers) stop(id string) {
	ps.mu.Lock()
	p := ps.m[id]
	delete(ps.m, id)
	ps.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// memifServer is an NSM endpoint's memif server element: "abstract" as
// sdk-vpp v1.18.0's (its own namespace in inodeURL, passed by the sendfd
// after it; "@/tmp/memif/<id>/memif.socket"; it listens), or "file",
// NSM's FS-socket form (no socketfile, inodeURL file://<socket file>,
// which sendfd passes by descriptor; it listens).
type memifServer struct {
	form  string
	dir   string
	peers peers
}

func (s *memifServer) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	m := req.GetConnection().GetMechanism()
	id := req.GetConnection().GetId()
	if m.GetType() != nsmmemif.MECHANISM {
		return next.Server(ctx).Request(ctx, req)
	}
	var filename string
	switch s.form {
	case "abstract":
		ns, err := ownNetNS()
		if err != nil {
			return nil, err
		}
		filename = "@" + filepath.Join("/tmp/memif", id, "memif.socket")
		m.Parameters = map[string]string{nsmmemif.NetNSURL: (&url.URL{Scheme: nsmmemif.FileScheme, Path: ns}).String(), nsmmemif.SocketFilename: filename}
	case "file":
		filename = filepath.Join(s.dir, "nse-"+shortID(id)+".sock")
		m.Parameters = map[string]string{nsmmemif.SocketFileURL: (&url.URL{Scheme: nsmmemif.FileScheme, Path: filename}).String()}
	default:
		return nil, fmt.Errorf("memif form %q", s.form)
	}
	// Listen before the reply goes: sendfd opens the socket file.
	if s.peers.get(id) == nil {
		p, err := startMemif(filename, true, true)
		if err != nil {
			return nil, err
		}
		s.peers.put(id, p)
	}
	conn, err := next.Server(ctx).Request(ctx, req)
	if err != nil {
		s.peers.stop(id)
		return nil, err
	}
	return conn, nil
}

func (s *memifServer) Close(ctx context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	s.peers.stop(conn.GetId())
	if s.form == "file" {
		_ = os.Remove(filepath.Join(s.dir, "nse-"+shortID(conn.GetId())+".sock"))
	}
	return next.Server(ctx).Close(ctx, conn)
}

func shortID(id string) string {
	id = strings.NewReplacer("/", "_", "@", "_").Replace(id)
	if len(id) > 40 {
		id = id[len(id)-40:]
	}
	return id
}

// memifClient is a client's memif element: "abstract" as sdk-vpp v1.18.0's
// memif client in cmd-nsc-vpp (offers its namespace as inodeURL, before
// sendfd, and connects as slave to the '@' name the forwarder answers),
// or "file" (offers inodeURL "file:", asking for a socket file; it sits
// after sendfd, which cannot send "file:", and before recvfd, which turns
// the answer's inode:// into a path).
type memifClient struct {
	form  string
	out   *printer
	peers peers
}

func (c *memifClient) Request(ctx context.Context, req *networkservice.NetworkServiceRequest, opts ...grpc.CallOption) (*networkservice.Connection, error) {
	offer := ""
	switch c.form {
	case "abstract":
		ns, err := ownNetNS()
		if err != nil {
			return nil, err
		}
		offer = (&url.URL{Scheme: nsmmemif.FileScheme, Path: ns}).String()
	case "file":
		offer = "file:"
	}
	found := false
	for _, p := range req.GetMechanismPreferences() {
		if p.GetType() == nsmmemif.MECHANISM {
			if p.Parameters == nil {
				p.Parameters = map[string]string{}
			}
			p.Parameters[nsmmemif.NetNSURL] = offer
			found = true
		}
	}
	if !found {
		req.MechanismPreferences = append(req.MechanismPreferences, &networkservice.Mechanism{
			Cls: "LOCAL", Type: nsmmemif.MECHANISM, Parameters: map[string]string{nsmmemif.NetNSURL: offer}})
	}
	conn, err := next.Client(ctx).Request(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	m := nsmmemif.ToMechanism(conn.GetMechanism())
	if m == nil {
		return conn, nil
	}
	id := conn.GetId()
	if c.peers.get(id) != nil {
		return conn, nil
	}
	filename, err := clientSocket(c.form, m)
	if err == nil {
		var p *memifPeer
		if p, err = startMemif(filename, false, false); err == nil {
			c.peers.put(id, p)
			go c.report(id, p)
			return conn, nil
		}
	}
	_, _ = next.Client(ctx).Close(context.WithoutCancel(ctx), conn, opts...)
	return nil, err
}

// clientSocket is where the client's memif connects, as sdk-vpp's client
// works it out: '@' means abstract (its VPP's "abstract:"), in its own
// namespace; or the socket file it received.
func clientSocket(form string, m *nsmmemif.Mechanism) (string, error) {
	if form == "file" {
		if m.GetSocketFilename() != "" {
			return "", fmt.Errorf("asked for a socket file, got socketfile %q", m.GetSocketFilename())
		}
		u, err := url.Parse(m.GetSocketFileURL())
		if err != nil || u.Scheme != nsmmemif.FileScheme || u.Path == "" {
			return "", fmt.Errorf("socket file URL %q: want file://<path> (recvfd resolves inode://)", m.GetSocketFileURL())
		}
		return u.Path, nil
	}
	name := m.GetSocketFilename()
	if !strings.HasPrefix(name, "@") {
		// sdk-vpp would hand VPP a file name relative to its run directory.
		return "", fmt.Errorf("socketfile %q: NSM's client takes a name without '@' as a file, not an abstract socket", name)
	}
	return name, nil
}

// report prints when frames went across and came back: at 10 echoes and
// at every 100 more (5 s at 20 frames a second), so that a test sees
// traffic go on after a refresh.
func (c *memifClient) report(id string, p *memifPeer) {
	next := int64(10)
	for {
		select {
		case <-p.done:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if n := p.got.Load(); n >= next {
			c.out.print(event{Event: "memif", Message: fmt.Sprintf("%s: %d echoes", id, n)})
			next = n + 100
		}
	}
}

func (c *memifClient) Close(ctx context.Context, conn *networkservice.Connection, opts ...grpc.CallOption) (*emptypb.Empty, error) {
	c.peers.stop(conn.GetId())
	return next.Client(ctx).Close(ctx, conn, opts...)
}

// checkMemifForm checks a --memif flag: empty (no memif), abstract or file.
func checkMemifForm(form string) error {
	if form == "" || form == "abstract" || form == "file" {
		return nil
	}
	return errors.New("--memif: want abstract or file")
}
