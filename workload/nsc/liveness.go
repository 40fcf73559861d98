package nsc

// The datapath liveness check: a control plane that still answers says
// nothing about packets. For a kernel connection, the client pings the
// endpoint's address (the first destination address of the connection's
// IP context) across the vWire from its own network namespace, as NSM's
// clients do; after a number of losses in a row it asks its manager for
// another endpoint (state RESELECT_REQUESTED), which closes the old path on
// every hop and selects again, trying the failed endpoint last.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// DefaultLivenessFailures is how many probes in a row must be lost before
// the client asks for another endpoint.
const DefaultLivenessFailures = 3

// errNoReply is a probe that got no echo reply in time.
var errNoReply = errors.New("no echo reply")

// probeFunc sends one echo request (id, seq) to dst from the network
// namespace at nsPath ("" for this process's) and waits up to timeout for
// the reply.
type probeFunc func(ctx context.Context, nsPath string, dst netip.Addr, id, seq int, timeout time.Duration) error

// datapath is what the liveness check shares with the refresh loop: the
// connection as last returned, and the way to ask for a reselection.
type datapath struct {
	mu       sync.Mutex // guards conn
	conn     *networkservice.Connection
	reselect chan struct{} // one pending request at most
}

func newDatapath(conn *networkservice.Connection) *datapath {
	return &datapath{conn: conn, reselect: make(chan struct{}, 1)}
}

func (d *datapath) get() *networkservice.Connection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

func (d *datapath) set(conn *networkservice.Connection) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn = conn
}

// checked reports whether the liveness check applies to conn: a kernel
// interface in the client's namespace, and an address to ping.
func checked(conn *networkservice.Connection) bool {
	_, ok := livenessTarget(conn)
	return ok && conn.GetMechanism().GetType() == kernel.MECHANISM
}

// livenessTarget is the address the check pings: the endpoint's side of
// the vWire.
func livenessTarget(conn *networkservice.Connection) (netip.Addr, bool) {
	for _, s := range conn.GetContext().GetIpContext().GetDstIpAddrs() {
		if p, err := netip.ParsePrefix(s); err == nil {
			return p.Addr(), true
		}
		if a, err := netip.ParseAddr(s); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// checkDatapath pings the far end of the connection every liveness
// interval until ctx ends, and asks for a reselection after the configured
// number of losses in a row. A connection that moves to another endpoint
// starts counting again.
func (c *Client) checkDatapath(ctx context.Context, t Target, d *datapath) {
	id := 1 + rand.IntN(0xfffe) // tells our echoes from other pingers' in the namespace
	tick := time.NewTicker(c.liveEvery)
	defer tick.Stop()
	misses, endpoint := 0, d.get().GetNetworkServiceEndpointName()
	for seq := 1; ; seq = seq%0xffff + 1 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		conn := d.get()
		if ep := conn.GetNetworkServiceEndpointName(); ep != endpoint {
			misses, endpoint = 0, ep
		}
		dst, ok := livenessTarget(conn)
		if !ok {
			continue
		}
		err := c.probe(ctx, c.netnsPath(), dst, id, seq, c.liveEvery)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if misses > 0 {
				c.log.Info("datapath answers again", "url", t.URL, "conn", conn.GetId(), "dst", dst, "lost", misses)
			}
			misses = 0
			continue
		}
		misses++
		c.log.Debug("liveness probe lost", "url", t.URL, "conn", conn.GetId(), "dst", dst, "in_a_row", misses, "err", err)
		if misses < c.liveFailures {
			continue
		}
		c.log.Warn("datapath dead; asking the manager for another endpoint (RESELECT_REQUESTED)",
			"url", t.URL, "conn", conn.GetId(), "endpoint", endpoint, "dst", dst, "lost", misses, "err", err)
		select {
		case d.reselect <- struct{}{}:
		default:
		}
		misses = 0
	}
}

// netnsPath is the file of the client's network namespace, "" when it is
// this process's own.
func (c *Client) netnsPath() string {
	p, ok := strings.CutPrefix(c.netns, "file://")
	if !ok || p == "/proc/self/ns/net" || p == fmt.Sprintf("/proc/%d/ns/net", os.Getpid()) {
		return ""
	}
	return p
}

// icmpProbe is the probe the client uses: an ICMP (or ICMPv6) echo over a
// raw socket opened in the client's namespace (vwire nsc runs as root, as
// it must to plug interfaces into namespaces).
func icmpProbe(ctx context.Context, nsPath string, dst netip.Addr, id, seq int, timeout time.Duration) error {
	network, proto := "ip4:icmp", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	var reply icmp.Type = ipv4.ICMPTypeEchoReply
	if dst.Is6() && !dst.Is4In6() {
		network, proto, typ, reply = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	pc, err := listenIn(nsPath, network)
	if err != nil {
		return err
	}
	defer pc.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := pc.SetDeadline(deadline); err != nil {
		return err
	}
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("vwire liveness")}}).Marshal(nil)
	if err != nil {
		return err
	}
	to := &net.IPAddr{IP: dst.Unmap().AsSlice()}
	if _, err := pc.WriteTo(msg, to); err != nil {
		return fmt.Errorf("send echo to %s: %w", dst, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w from %s within %s", errNoReply, dst, timeout)
			}
			return err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != id || echo.Seq != seq {
			continue
		}
		if a, ok := from.(*net.IPAddr); ok && !a.IP.Equal(to.IP) {
			continue
		}
		return nil
	}
}

// listenIn opens a raw ICMP socket in the network namespace at nsPath (this
// process's when ""). The socket stays in that namespace once opened. The
// namespace is entered on a thread of a goroutine of its own: should
// leaving it fail, that thread ends with the goroutine instead of serving
// others from the wrong namespace.
func listenIn(nsPath, network string) (*icmp.PacketConn, error) {
	addr := "0.0.0.0"
	if strings.HasPrefix(network, "ip6") {
		addr = "::"
	}
	if nsPath == "" {
		return icmp.ListenPacket(network, addr)
	}
	type result struct {
		pc  *icmp.PacketConn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		pc, tainted, err := listenInLocked(nsPath, network, addr)
		if !tainted {
			runtime.UnlockOSThread()
		}
		done <- result{pc, err}
	}()
	r := <-done
	return r.pc, r.err
}

// listenInLocked does listenIn's work on a locked thread; tainted reports
// that the thread could not return to its own namespace.
func listenInLocked(nsPath, network, addr string) (pc *icmp.PacketConn, tainted bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return nil, false, fmt.Errorf("own network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, false, fmt.Errorf("network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, false, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	pc, err = icmp.ListenPacket(network, addr)
	tainted = netns.Set(orig) != nil
	if err != nil {
		return nil, tainted, fmt.Errorf("icmp socket in %s: %w", nsPath, err)
	}
	return pc, tainted, nil
}
