package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NamePrefix starts the name of every namespace a Lab makes:
// vw-<pid>-<lab>-<label>. The pid lets a later run find namespaces that a
// crashed run left behind (RemoveStaleNamespaces).
const NamePrefix = "vw-"

// commandTimeout bounds every ip, ping or other short command the harness
// runs.
const commandTimeout = 30 * time.Second

// Lab is one test's world: the namespaces it made, the processes it started
// and a short temporary directory for state, sockets and logs. Everything is
// removed when the test ends, in reverse order of creation: processes are
// stopped before the namespaces they run in are deleted.
type Lab struct {
	T   testing.TB
	Bin string // the vwire binary
	// Dir is short (unix socket paths must stay under 108 bytes): the
	// shared --state-dir (development CA), sockets and logs.
	Dir string

	id string // unique among live Labs: the random part of Dir

	mu         sync.Mutex // guards namespaces, logNames
	namespaces []*Netns
	logNames   map[string]int
}

// NewLab returns an empty Lab that runs bin. It is torn down when t ends.
func NewLab(t testing.TB, bin string) *Lab {
	t.Helper()
	dir, err := os.MkdirTemp("", "vw")
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{T: t, Bin: bin, Dir: dir, id: strings.TrimPrefix(filepath.Base(dir), "vw"), logNames: map[string]int{}}
	t.Cleanup(func() {
		if os.Getenv("VWIRE_E2E_KEEP") != "" {
			t.Logf("keeping %s (VWIRE_E2E_KEEP)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return l
}

// Netns is a named network namespace (as `ip netns` knows it) that a Lab
// made.
type Netns struct {
	Name  string // vw-<pid>-<lab>-<label>
	Label string // the test's name for it: fabric, node1, nsc1...
	lab   *Lab
}

func (n *Netns) String() string { return n.Label }

// Netns makes a namespace with lo up and nothing else. It is deleted when
// the test ends.
func (l *Lab) Netns(label string) *Netns {
	l.T.Helper()
	n := &Netns{Name: fmt.Sprintf("%s%d-%s-%s", NamePrefix, os.Getpid(), l.id, label), Label: label, lab: l}
	if out, err := run("ip", "netns", "add", n.Name); err != nil {
		l.T.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	l.T.Cleanup(n.remove)
	l.mu.Lock()
	l.namespaces = append(l.namespaces, n)
	l.mu.Unlock()
	n.MustIP("link", "set", "lo", "up")
	return n
}

// Namespaces returns every namespace the Lab made, in creation order.
func (l *Lab) Namespaces() []*Netns {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Netns(nil), l.namespaces...)
}

// remove deletes the namespace. Processes still in it can only be ones the
// test started (through the Lab, or a child of one); they are killed by pid
// first, so that the namespace and its links really go away.
func (n *Netns) remove() {
	if out, err := run("ip", "netns", "pids", n.Name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				n.lab.T.Logf("namespace %s: killing leftover process %d", n.Label, pid)
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	}
	if out, err := run("ip", "netns", "del", n.Name); err != nil {
		n.lab.T.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// IP runs `ip -n <ns> args...` and returns its combined output.
func (n *Netns) IP(args ...string) (string, error) {
	return run("ip", append([]string{"-n", n.Name}, args...)...)
}

// MustIP is IP that fails the test on error.
func (n *Netns) MustIP(args ...string) string {
	n.lab.T.Helper()
	out, err := n.IP(args...)
	if err != nil {
		n.lab.T.Fatalf("%s: ip %s: %v: %s", n.Label, strings.Join(args, " "), err, out)
	}
	return out
}

// Exec runs prog inside the namespace (`ip netns exec`) and returns its
// combined output.
func (n *Netns) Exec(prog string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", n.Name, prog}, args...)...)
}

// run runs a short command, bounded by commandTimeout.
func run(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// Fabric is the network between nodes: a namespace holding a bridge, with
// one veth per node. The bridge has the first address of the fabric's /24;
// it is every node's default route, so that the forwarder's default-route
// detection finds the node's fabric address, and it forwards nothing
// anywhere else.
type Fabric struct {
	*Netns
	Prefix  netip.Prefix // 10.111.<k>.0/24
	Gateway netip.Addr   // the bridge's address: 10.111.<k>.1

	mu    sync.Mutex // guards nodes
	nodes []*Node
}

// FabricBridge is the bridge's name in the fabric namespace.
const FabricBridge = "br0"

// Fabric makes a fabric namespace whose nodes get addresses in
// 10.111.<k>.0/24 (one fabric per k in a Lab). The /24 lives only inside
// the Lab's namespaces, so several Labs may use the same k at once.
func (l *Lab) Fabric(k int) *Fabric {
	l.T.Helper()
	if k < 0 || k > 255 {
		l.T.Fatalf("fabric %d: want 0..255", k)
	}
	ns := l.Netns(fmt.Sprintf("fabric%d", k))
	f := &Fabric{
		Netns:   ns,
		Prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 111, byte(k), 0}), 24),
		Gateway: netip.AddrFrom4([4]byte{10, 111, byte(k), 1}),
	}
	ns.MustIP("link", "add", "name", FabricBridge, "type", "bridge")
	ns.MustIP("addr", "add", netip.PrefixFrom(f.Gateway, 24).String(), "dev", FabricBridge)
	ns.MustIP("link", "set", FabricBridge, "up")
	return f
}

// Node is a node's namespace: lo, and NodeDev on the fabric with IP.
type Node struct {
	*Netns
	IP     netip.Addr
	Fabric *Fabric
}

// NodeDev is each node's interface on the fabric.
const NodeDev = "eth0"

// AddNode makes a node namespace on the fabric: the i-th node (from 1) gets
// 10.111.<k>.<10+i>/24 on eth0 and a default route via the bridge.
func (f *Fabric) AddNode(label string) *Node {
	l := f.lab
	l.T.Helper()
	f.mu.Lock()
	i := len(f.nodes) + 1
	f.mu.Unlock()
	if i > 200 {
		l.T.Fatalf("fabric: too many nodes")
	}
	ns := l.Netns(label)
	b := f.Prefix.Addr().As4()
	b[3] = byte(10 + i)
	n := &Node{Netns: ns, IP: netip.AddrFrom4(b), Fabric: f}
	port := fmt.Sprintf("p%d", i)
	f.MustIP("link", "add", "name", port, "type", "veth", "peer", "name", NodeDev, "netns", ns.Name)
	f.MustIP("link", "set", port, "master", FabricBridge, "up")
	ns.MustIP("addr", "add", netip.PrefixFrom(n.IP, 24).String(), "dev", NodeDev)
	ns.MustIP("link", "set", NodeDev, "up")
	ns.MustIP("route", "add", "default", "via", f.Gateway.String(), "dev", NodeDev)
	f.mu.Lock()
	f.nodes = append(f.nodes, n)
	f.mu.Unlock()
	return n
}

// VethPair joins two namespaces with a plain veth pair named dev on both
// sides, with a.Addr and b.Addr (prefixes) on them: a baseline to compare a
// vWire with.
func (l *Lab) VethPair(a, b *Netns, dev string, aAddr, bAddr netip.Prefix) {
	l.T.Helper()
	a.MustIP("link", "add", "name", dev, "type", "veth", "peer", "name", dev, "netns", b.Name)
	a.MustIP("addr", "add", aAddr.String(), "dev", dev)
	b.MustIP("addr", "add", bAddr.String(), "dev", dev)
	a.MustIP("link", "set", dev, "up")
	b.MustIP("link", "set", dev, "up")
}

// RemoveStaleNamespaces deletes namespaces named by a Lab of a process that
// no longer runs (a test binary that crashed or was killed): their names
// only, so their links go away once nothing runs in them. It returns what
// it removed.
func RemoveStaleNamespaces() ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var removed []string
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, NamePrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test binary still runs
		}
		if out, err := run("ip", "netns", "del", name); err != nil {
			return removed, fmt.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
		removed = append(removed, name)
	}
	return removed, nil
}
