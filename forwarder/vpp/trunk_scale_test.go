package vpp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/vishvananda/netns"

	"github.com/vwire/vwire/internal/netnsrun"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// TestKernelTrunkScale is the soak's KERNEL round on the forwarder alone:
// VWIRE_TRUNK_N (default 200) KERNEL vWires of IP payload built at once
// from 20 goroutines on two real VPPs, half local (both sides on node 1's
// trunk), half remote (node 1's trunk, WireGuard, node 2's trunk), their
// clients spread over 10 namespaces with many vWire interfaces each and
// their endpoints in one namespace per node, as in test/e2e's soak. Every
// vWire must carry ping within 30 s; a silent one is described from end to
// end (its VLAN and filter on each trunk, the counters of every veth on its
// path, VPP's sub-interface, neighbours and errors), then all are closed
// and every VLAN must be free again. VWIRE_TRUNK_ROUNDS repeats the round.
func TestKernelTrunkScale(t *testing.T) {
	needVPP(t)
	n := envInt(t, "VWIRE_TRUNK_N", 200)
	rounds := envInt(t, "VWIRE_TRUNK_ROUNDS", 1)
	const (
		workers = 20
		clients = 10
	)
	ctx := context.Background()
	nodes := [2]itNS{newNS(t, "node"), newNS(t, "node")}
	peer := fmt.Sprintf("vwv%dp%d", os.Getpid(), itSeq.Add(1))
	sh(t, "ip", "-n", nodes[0].name, "link", "add", "name", "uplink", "type", "veth", "peer", "name", peer)
	sh(t, "ip", "-n", nodes[0].name, "link", "set", peer, "netns", nodes[1].name)
	sh(t, "ip", "-n", nodes[1].name, "link", "set", peer, "name", "uplink")
	for i, ns := range nodes {
		sh(t, "ip", "-n", ns.name, "addr", "add", fmt.Sprintf("10.223.0.%d/24", i+1), "dev", "uplink")
		sh(t, "ip", "-n", ns.name, "link", "set", "uplink", "up")
	}
	n1, n2 := startNode(t, nodes[0], "uplink"), startNode(t, nodes[1], "uplink")
	var cns []itNS
	for range clients {
		cns = append(cns, newNS(t, "c"))
	}
	localEP, remoteEP := newNS(t, "el"), newNS(t, "er")
	before1, before2 := interfacesOf(t, n1), interfacesOf(t, n2)

	for r := range rounds {
		vws := make([]*trunkVWire, n)
		for i := range n {
			vws[i] = &trunkVWire{
				i: i, remote: i%2 == 1, client: cns[i%clients], ep: localEP,
				id: fmt.Sprintf("ts%d-%d", r, i), name: fmt.Sprintf("v%d", i/clients), ename: fmt.Sprintf("e%d", i),
			}
			// A /32 pair each, handed out again every round but to
			// other vWires, as the soak's endpoints do.
			a := (i + 7*r) % n
			vws[i].caddr = fmt.Sprintf("10.60.%d.%d", a/125, 2*(a%125)+1)
			vws[i].eaddr = fmt.Sprintf("10.60.%d.%d", a/125, 2*(a%125)+2)
			if vws[i].remote {
				vws[i].ep = remoteEP
			}
		}
		start := time.Now()
		errs := eachOf(vws, workers, func(v *trunkVWire) error { return v.connect(ctx, n1, n2) })
		if len(errs) > 0 {
			t.Fatalf("round %d: %d of %d KERNEL vWires failed: %v", r, len(errs), n, errors.Join(errs...))
		}
		built := time.Since(start)
		silent := pingEach(t, vws, 30*time.Second)
		t.Logf("round %d: %d KERNEL vWires on the trunk (%d remote) built in %v, pinged in %v; %d VLANs in use on node 1, %d on node 2; %d silent",
			r, n, n/2, built.Round(time.Millisecond), (time.Since(start) - built).Round(time.Millisecond), n1.trunk.inUse(), n2.trunk.inUse(), len(silent))
		for _, v := range silent {
			t.Errorf("vWire %d (%s, %s %s → %s) carried no ping within 30 s:\n%s", v.i, v.id, v.client.name, v.name, v.eaddr, v.describe(t, [2]*Dataplane{n1, n2}, nodes))
		}
		start = time.Now()
		for _, err := range eachOf(vws, workers, func(v *trunkVWire) error { return v.close(ctx, n1, n2) }) {
			t.Error(err)
		}
		t.Logf("round %d: closed in %v", r, time.Since(start).Round(time.Millisecond))
		for _, d := range []*Dataplane{n1, n2} {
			if got := d.trunk.inUse(); got != 0 {
				t.Errorf("round %d: %d VLANs in use after closing every vWire", r, got)
			}
			if v, err := d.host.trunkVlans(); err != nil || len(v) != 0 {
				t.Errorf("round %d: trunk filters left: %v (%v)", r, v, err)
			}
		}
		if t.Failed() {
			return
		}
	}
	if got := interfacesOf(t, n1); got != before1 {
		t.Errorf("node 1 after close:\n%s\nbefore:\n%s", got, before1)
	}
	if got := interfacesOf(t, n2); got != before2 {
		t.Errorf("node 2 after close:\n%s\nbefore:\n%s", got, before2)
	}
}

// eachOf runs f on every vWire from workers goroutines and returns the
// errors, each naming its vWire.
func eachOf(vws []*trunkVWire, workers int, f func(*trunkVWire) error) []error {
	ids := make(chan *trunkVWire)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range ids {
				if err := f(v); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("vWire %d: %w", v.i, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, v := range vws {
		ids <- v
	}
	close(ids)
	wg.Wait()
	return errs
}

func envInt(t testing.TB, key string, def int) int {
	t.Helper()
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive number", key, s)
	}
	return v
}

// trunkVWire is one vWire of TestKernelTrunkScale.
type trunkVWire struct {
	i            int
	remote       bool
	client, ep   itNS
	id           string // node 1's connection id; node 2's is id+"-b"
	name, ename  string // the client's interface name, the endpoint's
	caddr, eaddr string
}

func (v *trunkVWire) connect(ctx context.Context, n1, n2 *Dataplane) error {
	cc := ipCtx(v.caddr, v.eaddr)
	in := kernelMech(v.client.path, v.name)
	ep := kernelMech(v.ep.path, v.ename)
	if !v.remote {
		return n1.Connect(ctx, v.id, &networkservice.Connection{Mechanism: in, Context: cc, Payload: payload.IP},
			&networkservice.Connection{Mechanism: ep, Context: cc, Payload: payload.IP})
	}
	c := &networkservice.Connection{Payload: payload.IP, Context: cc}
	acc, err := n1.Accept(ctx, v.id, c, []*networkservice.Mechanism{in})
	if err != nil {
		return err
	}
	offers, err := n1.Offer(ctx, v.id, c, true)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == wireguard.Type })
	if i < 0 {
		return fmt.Errorf("wireguard not offered: %v", offers)
	}
	wg, err := n2.Accept(ctx, v.id+"-b", c, offers[i:i+1])
	if err != nil {
		return err
	}
	if err := n2.Connect(ctx, v.id+"-b", &networkservice.Connection{Mechanism: wg, Context: cc, Payload: payload.IP},
		&networkservice.Connection{Mechanism: ep, Context: cc, Payload: payload.IP}); err != nil {
		return err
	}
	return n1.Connect(ctx, v.id, &networkservice.Connection{Mechanism: acc, Context: cc, Payload: payload.IP},
		&networkservice.Connection{Mechanism: wg, Context: cc, Payload: payload.IP})
}

func (v *trunkVWire) close(ctx context.Context, n1, n2 *Dataplane) error {
	err := n1.Disconnect(ctx, v.id)
	if v.remote {
		err = errors.Join(err, n2.Disconnect(ctx, v.id+"-b"))
	}
	if err != nil {
		return fmt.Errorf("close vWire %d: %w", v.i, err)
	}
	return nil
}

// describe says what each hop of a silent vWire's path has: for each node
// and KERNEL side, its VLAN, the trunk's filter of that VLAN, its host and
// workload veths' counters and its VPP sub-interface; and each VPP's
// neighbours and error counters.
func (v *trunkVWire) describe(t *testing.T, d [2]*Dataplane, nodes [2]itNS) string {
	var b strings.Builder
	side := func(n int, id, role string, w itNS, name string) {
		d, node, nsName := d[n], fmt.Sprintf("node %d", n+1), nodes[n].name
		host := linkName(role, tagKey(id))
		vlan, ok := d.trunk.vlanOf(host)
		fmt.Fprintf(&b, "%s %s side: host veth %s, VLAN %d (held: %v)\n", node, role, host, vlan, ok)
		filters, err := d.host.trunkVlans()
		fmt.Fprintf(&b, "  trunk filter of %s: VLAN %d (present: %v, err %v)\n", host, filters[host], filters[host] != 0, err)
		b.WriteString(run("ip", "-n", nsName, "-s", "-d", "link", "show", host))
		b.WriteString(run("ip", "-n", w.name, "-s", "-d", "link", "show", name))
		b.WriteString(run("ip", "-n", w.name, "neigh", "show", "dev", name))
		b.WriteString(run("ip", "-n", w.name, "route", "show", "dev", name))
		if ok {
			b.WriteString(run("tc", "-n", nsName, "-s", "filter", "show", "dev", trunkPort, "ingress", "protocol", "all", "pref", "1", "handle", strconv.Itoa(int(vlan)), "bpf"))
			b.WriteString(vppCLI(t, d, fmt.Sprintf("show interface %s.%d", trunkVPP, vlan)))
		}
	}
	side(0, v.id, roleIn, v.client, v.name)
	if v.remote {
		side(1, v.id+"-b", roleOut, v.ep, v.ename)
	} else {
		side(0, v.id, roleOut, v.ep, v.ename)
	}
	for i, d := range d {
		b.WriteString(run("ip", "-n", nodes[i].name, "-s", "link", "show", trunkPort))
		for _, cmd := range []string{"show ip neighbors", "show errors", "show l3xc"} {
			fmt.Fprintf(&b, "node %d: %s\n%s\n", i+1, cmd, vppCLI(t, d, cmd))
		}
	}
	return b.String()
}

func run(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("$ %s: %v\n%s\n", strings.Join(args, " "), err, out)
	}
	return fmt.Sprintf("$ %s\n%s\n", strings.Join(args, " "), out)
}

// pingEach pings every vWire's endpoint address from its client's
// namespace (one raw ICMP socket per namespace, a request to each
// unanswered address every 200 ms) until each answered or timeout passed,
// and returns the silent ones.
func pingEach(t *testing.T, vws []*trunkVWire, timeout time.Duration) []*trunkVWire {
	t.Helper()
	byNS := map[string][]*trunkVWire{}
	for _, v := range vws {
		byNS[v.client.path] = append(byNS[v.client.path], v)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		silent []*trunkVWire
	)
	for path, vs := range byNS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pingSilent(path, vs, timeout)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			silent = append(silent, s...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(silent, func(a, b *trunkVWire) int { return a.i - b.i })
	return silent
}

func pingSilent(path string, vs []*trunkVWire, timeout time.Duration) ([]*trunkVWire, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var c *net.IPConn
	if err := netnsrun.In(ns, func() (err error) {
		c, err = net.ListenIP("ip4:icmp", &net.IPAddr{IP: net.IPv4zero})
		return err
	}); err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", path, err)
	}
	defer c.Close()
	id := uint16(rand.N(1 << 16))
	answered := map[string]bool{}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(0); len(answered) < len(vs) && time.Now().Before(deadline); seq++ {
		for _, v := range vs {
			if !answered[v.eaddr] {
				b := make([]byte, 16)
				b[0] = 8
				binary.BigEndian.PutUint16(b[4:], id)
				binary.BigEndian.PutUint16(b[6:], seq)
				binary.BigEndian.PutUint16(b[2:], icmpSum(b))
				_, _ = c.WriteToIP(b, &net.IPAddr{IP: net.ParseIP(v.eaddr)})
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for len(answered) < len(vs) {
			n, from, err := c.ReadFromIP(buf)
			if err != nil {
				break
			}
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
				answered[from.IP.String()] = true
			}
		}
	}
	var silent []*trunkVWire
	for _, v := range vs {
		if !answered[v.eaddr] {
			silent = append(silent, v)
		}
	}
	return silent, nil
}

func icmpSum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
