package vpp

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestCreateVethTakesStaleWorkloadName: a KERNEL side whose workload
// interface name is still held by another vWire's workload end (a client
// that requests anew under a new connection id before its old connection
// is closed, or a failed attempt's leftover) replaces that link; the old
// vWire's Close then finds its veth gone and leaves the new one alone. A
// link of that name that is not a vWire's is left alone and the create
// fails, leaving nothing. Real namespaces and veths, no VPP.
func TestCreateVethTakesStaleWorkloadName(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and veths")
	}
	fwd, wl := newNS(t, "fwd"), newNS(t, "wl")
	h, err := newNetlinkHost(fwd.path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if err := h.createTrunk(trunkMTU); err != nil {
		t.Fatal(err)
	}
	wlNS, err := netns.GetFromPath(wl.path)
	if err != nil {
		t.Fatal(err)
	}
	defer wlNS.Close()
	inWL, err := netlink.NewHandleAt(wlNS)
	if err != nil {
		t.Fatal(err)
	}
	defer inWL.Close()
	workload := func(id, addr string) workloadLink {
		return workloadLink{netns: wl.path, name: "nsm0", alias: tagOf(roleWL, id).String(), mtu: 1500,
			addrs: []netip.Prefix{netip.MustParsePrefix(addr)}}
	}
	aliasOf := func(name string) string {
		t.Helper()
		l, err := inWL.LinkByName(name)
		if err != nil {
			t.Fatalf("%s in the workload namespace: %v", name, err)
		}
		return l.Attrs().Alias
	}
	hostLinks := func() map[string]string {
		t.Helper()
		ls, err := h.links()
		if err != nil {
			t.Fatal(err)
		}
		delete(ls, trunkPort)
		delete(ls, trunkVPP)
		return ls
	}

	oldHost, oldTag := linkName(roleIn, "old"), tagOf(roleIn, "old").String()
	if replaced, err := h.createVeth(oldHost, oldTag, 1, workload("old", "172.16.9.1/32")); err != nil || replaced != "" {
		t.Fatalf("first vWire: replaced %q, %v", replaced, err)
	}

	// The same name for a new connection id while the old vWire is still there.
	newHost, newTag := linkName(roleIn, "new"), tagOf(roleIn, "new").String()
	replaced, err := h.createVeth(newHost, newTag, 2, workload("new", "172.16.9.2/32"))
	if err != nil {
		t.Fatalf("new vWire on the name the old one holds: %v", err)
	}
	if want := tagOf(roleWL, "old").String(); replaced != want {
		t.Errorf("replaced %q, want %q", replaced, want)
	}
	if got, want := aliasOf("nsm0"), tagOf(roleWL, "new").String(); got != want {
		t.Errorf("nsm0's alias %q, want %q", got, want)
	}
	if got := hostLinks(); len(got) != 1 || got[newHost] != newTag {
		t.Errorf("host links %v, want only %s (the old veth went with its workload end)", got, newHost)
	}
	vlans, err := h.trunkVlans()
	if err != nil {
		t.Fatal(err)
	}
	if vlans[newHost] != 2 {
		t.Errorf("trunk VLANs %v: want %s in 2", vlans, newHost)
	}

	// What a refresh of each reads (vethsStand): the old side is gone and
	// its name is the new vWire's; the new side stands.
	if ok, heldBy, err := h.vethState(oldHost, oldTag, workload("old", "172.16.9.1/32")); err != nil || ok || heldBy != tagOf(roleWL, "new").String() {
		t.Errorf("old side: host end %v, nsm0 held by %q (%v); want gone, held by the new vWire", ok, heldBy, err)
	}
	if ok, heldBy, err := h.vethState(newHost, newTag, workload("new", "172.16.9.2/32")); err != nil || !ok || heldBy != tagOf(roleWL, "new").String() {
		t.Errorf("new side: host end %v, nsm0 held by %q (%v); want both its own", ok, heldBy, err)
	}

	// The old vWire's Close: its veth is gone already, the new one stays.
	if err := h.deleteLink(oldHost, oldTag); err != nil {
		t.Errorf("old vWire's Close: %v", err)
	}
	if err := h.deleteTrunkVlan(1); err != nil {
		t.Errorf("old vWire's Close: %v", err)
	}
	if got := aliasOf("nsm0"); got != tagOf(roleWL, "new").String() {
		t.Errorf("after the old vWire's Close nsm0's alias is %q", got)
	}

	// A retried Request of the new vWire after its host end was lost (a
	// previous run's, another dataplane's name): the same id takes its
	// own stale workload end back.
	if err := h.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: newHost}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.createVeth(newHost, newTag, 2, workload("new", "172.16.9.2/32")); err != nil {
		t.Fatalf("retried Request: %v", err)
	}
	if err := h.deleteLink(newHost, newTag); err != nil {
		t.Fatal(err)
	}
	if err := h.deleteTrunkVlan(2); err != nil {
		t.Fatal(err)
	}

	// A link of the workload's own under that name is not touched.
	if err := inWL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nsm0"}, PeerName: "nsm0p"}); err != nil {
		t.Fatal(err)
	}
	if l, err := inWL.LinkByName("nsm0"); err != nil {
		t.Fatal(err)
	} else if err := inWL.LinkSetAlias(l, "mine"); err != nil {
		t.Fatal(err)
	}
	_, err = h.createVeth(linkName(roleIn, "third"), tagOf(roleIn, "third").String(), 3, workload("third", "172.16.9.3/32"))
	if err == nil || !strings.Contains(err.Error(), "not a vWire's") {
		t.Errorf("create over the workload's own nsm0: %v, want an error saying it is not a vWire's", err)
	}
	if got := aliasOf("nsm0"); got != "mine" {
		t.Errorf("the workload's nsm0 has alias %q now", got)
	}
	if ok, heldBy, err := h.vethState(linkName(roleIn, "third"), tagOf(roleIn, "third").String(), workload("third", "172.16.9.3/32")); err != nil || ok || heldBy != "mine" {
		t.Errorf("third side: host end %v, nsm0 held by %q (%v); want none, held by the workload's own link", ok, heldBy, err)
	}
	if got := hostLinks(); len(got) != 0 {
		t.Errorf("host links left: %v", got)
	}
}
