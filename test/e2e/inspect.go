package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// VwireAliasPrefix starts the alias of every link a vwire dataplane makes.
const VwireAliasPrefix = "vwire/"

// Link is a network interface as `ip -j -d link show` describes it.
type Link struct {
	Name      string   `json:"ifname"`
	Alias     string   `json:"ifalias"`
	Master    string   `json:"master"`
	OperState string   `json:"operstate"`
	Flags     []string `json:"flags"`
	MTU       int      `json:"mtu"`
	LinkInfo  struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

// Kind is the link's type (veth, vxlan, bridge...), empty for plain devices
// such as lo.
func (l Link) Kind() string { return l.LinkInfo.Kind }

// Up reports whether the link is administratively up.
func (l Link) Up() bool { return slices.Contains(l.Flags, "UP") }

// Vwire reports whether a vwire dataplane made the link.
func (l Link) Vwire() bool { return strings.HasPrefix(l.Alias, VwireAliasPrefix) }

// Watched reports whether the leak check looks at the link: vwire's own, and
// every veth and vxlan device (a dataplane that forgot its alias still
// shows).
func (l Link) Watched() bool { return l.Vwire() || l.Kind() == "veth" || l.Kind() == "vxlan" }

func (l Link) String() string {
	s := l.Name
	if k := l.Kind(); k != "" {
		s += " (" + k + ")"
	}
	if l.Alias != "" {
		s += " alias " + l.Alias
	}
	return s
}

// Links lists the namespace's links.
func (n *Netns) Links() ([]Link, error) {
	out, err := n.IP("-j", "-d", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("%s: ip link: %v: %s", n.Label, err, out)
	}
	var links []Link
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("%s: ip -j link: %w", n.Label, err)
	}
	return links, nil
}

// Link returns the namespace's link called name.
func (n *Netns) Link(name string) (Link, bool, error) {
	links, err := n.Links()
	if err != nil {
		return Link{}, false, err
	}
	for _, l := range links {
		if l.Name == name {
			return l, true, nil
		}
	}
	return Link{}, false, nil
}

// VwireLinks lists the links in the namespace that a vwire dataplane made.
func (n *Netns) VwireLinks() ([]Link, error) {
	links, err := n.Links()
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, l := range links {
		if l.Vwire() {
			out = append(out, l)
		}
	}
	return out, nil
}

// Addrs lists the addresses (with prefix length) on dev.
func (n *Netns) Addrs(dev string) ([]string, error) {
	out, err := n.IP("-j", "addr", "show", "dev", dev)
	if err != nil {
		return nil, fmt.Errorf("%s: ip addr show dev %s: %v: %s", n.Label, dev, err, out)
	}
	var ifs []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &ifs); err != nil {
		return nil, fmt.Errorf("%s: ip -j addr: %w", n.Label, err)
	}
	var addrs []string
	for _, i := range ifs {
		for _, a := range i.AddrInfo {
			addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
		}
	}
	return addrs, nil
}

// Ping sends three pings to addr from the namespace and succeeds when
// replies come back.
func (n *Netns) Ping(addr string) error {
	out, err := n.Exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", addr)
	if err != nil {
		return fmt.Errorf("%s: ping %s: %v: %s", n.Label, addr, err, Tail(out, 4))
	}
	return nil
}

// PingOnce sends one ping and waits up to a second for the reply.
func (n *Netns) PingOnce(addr string) error {
	out, err := n.Exec("ping", "-n", "-c", "1", "-W", "1", addr)
	if err != nil {
		return fmt.Errorf("%s: ping %s: %v: %s", n.Label, addr, err, Tail(out, 2))
	}
	return nil
}

// WaitPing waits up to timeout for addr to answer a single ping, then
// checks with Ping that it keeps answering.
func (n *Netns) WaitPing(timeout time.Duration, addr string) {
	t := n.lab.T
	t.Helper()
	Eventually(t, timeout, fmt.Sprintf("%s can ping %s", n.Label, addr), func() error { return n.PingOnce(addr) })
	if err := n.Ping(addr); err != nil {
		t.Fatal(err)
	}
}

// Snapshot is, per namespace label, the watched links (see Link.Watched)
// of a Lab's namespaces, as their String.
type Snapshot map[string][]string

// Snapshot records the watched links of every namespace of the Lab.
func (l *Lab) Snapshot() (Snapshot, error) {
	s := Snapshot{}
	for _, n := range l.Namespaces() {
		links, err := n.Links()
		if err != nil {
			return nil, err
		}
		var watched []string
		for _, link := range links {
			if link.Watched() {
				watched = append(watched, link.String())
			}
		}
		slices.Sort(watched)
		s[n.Label] = watched
	}
	return s, nil
}

// MustSnapshot is Snapshot that fails the test on error.
func (l *Lab) MustSnapshot() Snapshot {
	l.T.Helper()
	s, err := l.Snapshot()
	if err != nil {
		l.T.Fatal(err)
	}
	return s
}

// Diff lists the links that are in now but not in s ("+ ns: link") and
// those in s but not in now ("- ns: link").
func (s Snapshot) Diff(now Snapshot) []string {
	var diff []string
	labels := slices.Sorted(maps.Keys(now))
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if _, ok := now[k]; !ok {
			labels = append(labels, k)
		}
	}
	for _, ns := range labels {
		for _, l := range now[ns] {
			if !slices.Contains(s[ns], l) {
				diff = append(diff, "+ "+ns+": "+l)
			}
		}
		for _, l := range s[ns] {
			if !slices.Contains(now[ns], l) {
				diff = append(diff, "- "+ns+": "+l)
			}
		}
	}
	return diff
}

// WaitNoLeak waits up to timeout until the watched links of every namespace
// are those of before, and fails the test listing the difference if they
// do not get there.
func (l *Lab) WaitNoLeak(timeout time.Duration, before Snapshot) {
	l.T.Helper()
	Eventually(l.T, timeout, "the links of every namespace are as before the scenario", func() error {
		now, err := l.Snapshot()
		if err != nil {
			return err
		}
		if d := before.Diff(now); len(d) > 0 {
			return fmt.Errorf("links differ:\n\t%s", strings.Join(d, "\n\t"))
		}
		return nil
	})
}

// CountVwireLinks counts the vwire links of every namespace given.
func CountVwireLinks(nss ...*Netns) (int, error) {
	n := 0
	for _, ns := range nss {
		links, err := ns.VwireLinks()
		if err != nil {
			return 0, err
		}
		n += len(links)
	}
	return n, nil
}
