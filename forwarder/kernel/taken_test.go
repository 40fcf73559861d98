package kernel

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vwire/vwire/forwarder"
)

// TestRefreshAfterNameTaken: a newer connection took the workload
// interface names of a live local vWire (TestConnectTakesNameOfLiveVWire).
// The older connection's refresh fails, naming the interface, its
// namespace and the vWire that holds it, and does not take the names back
// (at its next refresh neither); the newer vWire is left alone by it and by
// the older one's Close. A new Request (an id this dataplane does not
// know) still takes the names.
func TestRefreshAfterNameTaken(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	ccOld, ccNew := ipContext("169.254.16.1", "169.254.16.2"), ipContext("169.254.16.5", "169.254.16.6")
	oldIn, oldOut := kernelConn(clientPath, "nsm-c", ccOld), kernelConn(epPath, "nsm-e", ccOld)
	newIn, newOut := kernelConn(clientPath, "nsm-c", ccNew), kernelConn(epPath, "nsm-e", ccNew)
	if err := d.Connect(ctx, "conn-old", oldIn, oldOut); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ctx, "conn-new", newIn, newOut); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		err := d.Connect(ctx, "conn-old", oldIn, oldOut)
		if !errors.Is(err, forwarder.ErrWorkloadNameTaken) || !strings.Contains(err.Error(), "nsm-c") ||
			!strings.Contains(err.Error(), clientPath) || !strings.Contains(err.Error(), "conn-new") {
			t.Fatalf("refresh of the old connection: %v, want %v naming nsm-c, %s and conn-new", err, forwarder.ErrWorkloadNameTaken, clientPath)
		}
		d.reap.flush() // the old pair, retired when the new one took its names
		for _, ns := range []string{client, ep} {
			if got := links(t, ns); strings.Contains(got, "conn-old") || !strings.Contains(got, "vwire/wl/conn-new") {
				t.Fatalf("%s after the old connection's refresh: want only the newer vWire's interface:\n%s", ns, got)
			}
		}
		if err := ping(client, "169.254.16.6"); err != nil {
			t.Fatalf("the newer vWire after the old one's refresh: %v", err)
		}
	}
	index := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c")
	if err := d.Connect(ctx, "conn-new", newIn, newOut); err != nil {
		t.Fatalf("refresh of the new connection: %v", err)
	}
	if err := d.Disconnect(ctx, "conn-old"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	if err := d.Connect(ctx, "conn-new", newIn, newOut); err != nil {
		t.Fatalf("refresh of the new connection after the old one's Close: %v", err)
	}
	if got := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c"); got != index {
		t.Fatalf("the newer vWire's interface was remade:\n%s\nwas\n%s", got, index)
	}
	if err := ping(client, "169.254.16.6"); err != nil {
		t.Fatalf("the older vWire's Close broke the newer one: %v", err)
	}

	// An id this dataplane does not know (a new Request, or a refresh
	// after a restart) takes the names.
	if err := d.Connect(ctx, "conn-third", oldIn, oldOut); err != nil {
		t.Fatalf("new Request on a live vWire's names: %v", err)
	}
	d.reap.flush() // the newer vWire's pair, moved out of the way
	if got := links(t, client); !strings.Contains(got, "vwire/wl/conn-third") || strings.Contains(got, "vwire/wl/conn-new") {
		t.Fatalf("want the third vWire's interface in place of the newer one's:\n%s", got)
	}
	for _, id := range []string{"conn-new", "conn-third"} {
		if err := d.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	d.reap.flush()
	for _, ns := range []string{client, ep} {
		if got := links(t, ns); strings.Contains(got, "vwire/") {
			t.Fatalf("%s: links left after the Closes:\n%s", ns, got)
		}
	}
}
