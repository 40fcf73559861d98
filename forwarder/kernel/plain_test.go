package kernel

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// endState is what a workload sees of its interface dev in ns: flags,
// MTU, alias, group, kind, IPv4 addresses and routes (no indexes, no
// MACs: two pairs differ there).
func endState(t *testing.T, ns, dev string) string {
	t.Helper()
	var link []struct {
		Flags    []string `json:"flags"`
		MTU      int      `json:"mtu"`
		Alias    string   `json:"ifalias"`
		Group    string   `json:"group"`
		LinkType string   `json:"link_type"`
		Info     struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(run(t, "ip", "-n", ns, "-j", "-d", "link", "show", "dev", dev)), &link); err != nil || len(link) != 1 {
		t.Fatalf("ip link show dev %s in %s: %v (%d links)", dev, ns, err, len(link))
	}
	l := link[0]
	slices.Sort(l.Flags)
	var addrs []struct {
		Info []struct {
			Family string `json:"family"`
			Local  string `json:"local"`
			Len    int    `json:"prefixlen"`
			Scope  string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(run(t, "ip", "-n", ns, "-j", "-4", "addr", "show", "dev", dev)), &addrs); err != nil {
		t.Fatal(err)
	}
	var as []string
	for _, a := range addrs {
		for _, i := range a.Info {
			as = append(as, fmt.Sprintf("%s/%d %s", i.Local, i.Len, i.Scope))
		}
	}
	routes := strings.TrimSpace(run(t, "ip", "-n", ns, "-4", "route", "show", "dev", dev))
	return fmt.Sprintf("flags %v mtu %d alias %q group %s type %s kind %s addrs %v routes %q",
		l.Flags, l.MTU, l.Alias, l.Group, l.LinkType, l.Info.Kind, as, routes)
}

// The plain loop is the bench's baseline only if it does what a local
// vWire's Connect does: the same pair, ends, alias, addresses, routes and
// state, and after Disconnect the same retirement and deletion.
func TestPlainLoopMakesWhatConnectMakes(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	nsc, nscPath := netnsFor(t, "nsc")
	nse, nsePath := netnsFor(t, "nse")
	pnsc, pnscPath := netnsFor(t, "pnsc")
	pnse, pnsePath := netnsFor(t, "pnse")
	d := newDP(t, nodePath, "", 0)

	const name = "nsm-1"
	client, endpoint := "172.16.40.1", "172.16.40.0"
	cc := ipContext(client, endpoint)
	in := &networkservice.Connection{Mechanism: kernelMech(nscPath, name), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech(nsePath, name), Context: cc}
	if err := d.Connect(ctx, name, in, out); err != nil {
		t.Fatal(err)
	}
	l, err := NewPlainLoop(pnscPath, pnsePath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := PlainPair{Name: name, Client: netip.MustParsePrefix(client + "/32"), Endpoint: netip.MustParsePrefix(endpoint + "/32")}
	if err := l.Connect(p); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ role, vwire, plain string }{{"client", nsc, pnsc}, {"endpoint", nse, pnse}} {
		want, got := endState(t, x.vwire, name), endState(t, x.plain, name)
		if got != want {
			t.Errorf("the %s's end:\nplain loop %s\nConnect    %s", x.role, got, want)
		}
	}
	if err := ping(pnsc, endpoint); err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(p); err == nil {
		t.Error("a second Connect of the same name: no error")
	}

	// Retired alike (down, in the reaper's group) and left so until the
	// flush: no lull comes first.
	for _, r := range []*reaper{d.reap, l.reap} {
		r.mu.Lock()
		r.quiet, r.maxDelay = time.Hour, time.Hour
		r.mu.Unlock()
	}
	if err := d.Disconnect(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := l.Disconnect(name); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ role, vwire, plain string }{{"client", nsc, pnsc}, {"endpoint", nse, pnse}} {
		want, got := endState(t, x.vwire, name), endState(t, x.plain, name)
		if got != want {
			t.Errorf("the %s's end retired:\nplain loop %s\nDisconnect %s", x.role, got, want)
		}
	}
	if err := l.Disconnect(name); err == nil {
		t.Error("a second Disconnect: no error")
	}
	d.reap.flush()
	l.Flush()
	for _, ns := range []string{nsc, nse, pnsc, pnse} {
		if got := linkNames(t, ns); got != "lo" {
			t.Errorf("%s after the reaper's pass: %q, want lo only", ns, got)
		}
	}
}
