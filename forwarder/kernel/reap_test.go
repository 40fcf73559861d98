package kernel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// TestConcurrentDisconnects: many vWires closed at once share deletion
// passes; every link goes, in the node's namespace and in the workloads'.
func TestConcurrentDisconnects(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	const n = 12
	for i := range n {
		cc := ipContext(fmt.Sprintf("169.254.20.%d", 2*i+1), fmt.Sprintf("169.254.20.%d", 2*i+2))
		in := &networkservice.Connection{Mechanism: kernelMech(clientPath, fmt.Sprintf("nsm-c%d", i)), Context: cc}
		out := &networkservice.Connection{Mechanism: kernelMech(epPath, fmt.Sprintf("nsm-e%d", i)), Context: cc}
		if err := d.Connect(ctx, fmt.Sprintf("conn-%d", i), in, out); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Disconnect(ctx, fmt.Sprintf("conn-%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
}

// TestStartDeletesLinksOnTheirWayOut: links a stopped forwarder had put in
// the deletion group go as soon as the next one starts, without waiting
// for the grace period; the other vWire stays for its refresh.
func TestStartDeletesLinksOnTheirWayOut(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	d := newDP(t, nodePath, "", 0)
	// Client sides with links in the node's namespace, as when the
	// endpoint is remote (a local pair has none there).
	for i, id := range []string{"dying", "live"} {
		spec, err := vethSpecFor(roleIn, id, kernelMech(clientPath, "nsm-"+id), ipContext(fmt.Sprintf("169.254.21.%d", 2*i+1), fmt.Sprintf("169.254.21.%d", 2*i+2)), DefaultMTU)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.createVeth(spec); err != nil {
			t.Fatal(err)
		}
	}
	// Stopped between putting "dying"'s links in the group and deleting it.
	run(t, "ip", "-n", node, "link", "set", linkName(roleIn, "dying"), "group", fmt.Sprint(reapGroup))
	d.Close()

	d2 := newDP(t, nodePath, "", time.Hour)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d2.Start(sctx); err != nil {
		t.Fatal(err)
	}
	got := links(t, client)
	if strings.Contains(got, "nsm-dying") {
		t.Fatalf("the link on its way out is still there:\n%s", got)
	}
	if !strings.Contains(got, "nsm-live") {
		t.Fatalf("the live vWire's link went:\n%s", got)
	}
	if err := d2.Disconnect(ctx, "live"); err != nil {
		t.Fatal(err)
	}
}
