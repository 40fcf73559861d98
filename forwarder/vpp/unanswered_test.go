package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	mipsec "github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// unansweredDeadline is how long a build here may take: the Connect's
// bounded context, short so that a withheld reply ends it soon.
const unansweredDeadline = 500 * time.Millisecond

// buildAccepted builds, within ctx, node b's side of a vWire that node a
// offers with mechanism typ (b accepts it), out being b's other side, as
// b's Connect would (b builds first).
func buildAccepted(ctx context.Context, t *testing.T, a, b *testNode, typ, pl string, out *networkservice.Mechanism) (accepted *networkservice.Mechanism, err error) {
	t.Helper()
	c := &networkservice.Connection{Payload: pl}
	offers, err := a.dp.Offer(context.Background(), "a", c, true)
	must(t, err)
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == typ })
	check(t, i >= 0, "%s not offered: %v", typ, offers)
	accepted, err = b.dp.Accept(context.Background(), "b", c, offers[i:i+1])
	must(t, err)
	p, err := b.dp.plan("b", conn(accepted, pl), conn(out, pl))
	must(t, err)
	_, _, _, err = b.dp.build(ctx, b.dp.vpp, p, true)
	return accepted, err
}

// TestUnansweredPipelinedCreatesLeaveNothing: in the pipelined build (a
// tunnel and a memif), a create that VPP carries out but answers only
// after the Connect's deadline (the soak at load 19 to 32 had them), and
// so every create after it on the stream (VPP answers in order), leaves
// nothing in VPP: the rollback looks for what each made, by what the
// dataplane chose (socket id and memif id, tunnel parameters, WireGuard
// key and port), and removes it. Before, each stayed untagged, where no
// sweep finds it.
func TestUnansweredPipelinedCreatesLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		typ, payload string
		creates      []string // the accepting node's, in order
	}{
		{typ: vxlan.Type, payload: payload.Ethernet, creates: []string{"vxlan_add_del_tunnel_v3", "memif_socket_filename_add_del_v2", "memif_create_v2"}},
		{typ: wireguard.Type, payload: payload.IP, creates: []string{"wireguard_interface_create", "memif_socket_filename_add_del_v2", "memif_create_v2"}},
	} {
		for k := range tc.creates {
			t.Run(fmt.Sprintf("%s from %s", tc.typ, tc.creates[k]), func(t *testing.T) {
				a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
				before := b.vpp.snapshot()
				for _, c := range tc.creates[k:] {
					b.vpp.withhold(c, 1)
				}
				ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
				defer cancel()
				_, err := buildAccepted(ctx, t, a, b, tc.typ, tc.payload, memifMech("e.sock"))
				check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
				check(t, b.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
				check(t, len(b.vpp.sentOf(tc.creates[len(tc.creates)-1])) == 1, "the last create was not sent")
			})
		}
	}
}

// TestUnansweredStepByStepCreatesLeaveNothing: the same in the
// step-by-step build (a KERNEL side with a tunnel or a memif): a create
// whose reply comes after the deadline leaves nothing, its SA found by
// its id, its socket by its filename, its memif by socket and id, its
// tunnel by its parameters (an IP-in-IP tunnel only when untagged).
func TestUnansweredStepByStepCreatesLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		typ, payload string
		create       string
		nth          int // the create's n-th request of that name
	}{
		{typ: vxlan.Type, payload: payload.Ethernet, create: "vxlan_add_del_tunnel_v3", nth: 1},
		{typ: wireguard.Type, payload: payload.IP, create: "wireguard_interface_create", nth: 1},
		{typ: mipsec.Type, payload: payload.IP, create: "ipsec_sad_entry_add_v2", nth: 1},
		{typ: mipsec.Type, payload: payload.IP, create: "ipsec_sad_entry_add_v2", nth: 2},
		{typ: mipsec.Type, payload: payload.IP, create: "ipip_add_tunnel", nth: 1},
		{typ: "memif", payload: payload.Ethernet, create: "memif_socket_filename_add_del_v2", nth: 1},
		{typ: "memif", payload: payload.Ethernet, create: "memif_create_v2", nth: 1},
	} {
		t.Run(fmt.Sprintf("%s %s %d", tc.typ, tc.create, tc.nth), func(t *testing.T) {
			a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
			before := b.vpp.snapshot()
			b.vpp.withholdAfter(tc.create, tc.nth-1, 1)
			ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
			defer cancel()
			var err error
			if tc.typ == "memif" {
				p, perr := b.dp.plan("b", conn(kernelMech(nsClient, "nsm-c"), tc.payload), conn(memifMech("e.sock"), tc.payload))
				must(t, perr)
				_, _, _, err = b.dp.build(ctx, b.dp.vpp, p, true)
			} else {
				_, err = buildAccepted(ctx, t, a, b, tc.typ, tc.payload, kernelMech(nsServer, "nsm-e"))
			}
			check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
			check(t, b.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
			check(t, b.dp.trunk.inUse() == 0, "%d VLANs still held", b.dp.trunk.inUse())
		})
	}
}

// TestUnansweredCreateLookupFails: when the rollback cannot look for what
// a create with no answer made (the connection fails), the object stays,
// and the vWire's next Connect (after a failed one, as here) or its
// Disconnect looks again and removes it: VPP is back as it was.
func TestUnansweredCreateLookupFails(t *testing.T) {
	for _, tc := range []struct {
		typ, payload string
		withhold     []string
		dump         string
		reconnect    bool
		local        bool // KERNEL to memif, step by step
	}{
		{typ: wireguard.Type, payload: payload.IP, withhold: []string{"wireguard_interface_create", "memif_socket_filename_add_del_v2", "memif_create_v2"}, dump: "wireguard_interface_dump", reconnect: true},
		{typ: wireguard.Type, payload: payload.IP, withhold: []string{"wireguard_interface_create", "memif_socket_filename_add_del_v2", "memif_create_v2"}, dump: "wireguard_interface_dump"},
		{typ: vxlan.Type, payload: payload.Ethernet, withhold: []string{"memif_create_v2"}, dump: "sw_interface_dump:memif", reconnect: true},
		{typ: vxlan.Type, payload: payload.Ethernet, withhold: []string{"memif_create_v2"}, dump: "sw_interface_dump:memif"},
		{typ: "memif", payload: payload.Ethernet, withhold: []string{"memif_create_v2"}, dump: "sw_interface_dump:memif", reconnect: true, local: true},
		{typ: "memif", payload: payload.Ethernet, withhold: []string{"memif_create_v2"}, dump: "sw_interface_dump:memif", local: true},
	} {
		then := map[bool]string{true: "Connect", false: "Disconnect"}[tc.reconnect]
		t.Run(fmt.Sprintf("%s %s %s then %s", tc.typ, tc.withhold[0], tc.dump, then), func(t *testing.T) {
			a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
			before := b.vpp.snapshot()
			for _, c := range tc.withhold {
				b.vpp.withhold(c, 1)
			}
			b.vpp.refuseSend(tc.dump, errors.New("connection broken"))
			ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
			defer cancel()
			in, out := conn(kernelMech(nsClient, "nsm-c"), tc.payload), conn(memifMech("e.sock"), tc.payload)
			var err error
			if tc.local {
				p, perr := b.dp.plan("b", in, out)
				must(t, perr)
				_, _, _, err = b.dp.build(ctx, b.dp.vpp, p, true)
			} else {
				var accepted *networkservice.Mechanism
				accepted, err = buildAccepted(ctx, t, a, b, tc.typ, tc.payload, memifMech("e.sock"))
				in = conn(accepted, tc.payload)
			}
			check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
			check(t, err != nil && strings.Contains(err.Error(), "connection broken"), "build: %v, want the failed lookup", err)
			check(t, b.vpp.snapshot() != before, "nothing left in VPP: the test does not test")
			b.dp.mu.Lock()
			left := len(b.dp.leftovers["b"])
			b.dp.unclean[tagKey("b")] = true // as the failed Connect leaves it
			b.dp.mu.Unlock()
			check(t, left > 0, "no leftover kept")

			b.vpp.refuseSend(tc.dump, nil)
			if tc.reconnect {
				must(t, b.dp.Connect(context.Background(), "b", in, out))
				b.dp.mu.Lock()
				left = len(b.dp.leftovers["b"])
				b.dp.mu.Unlock()
				check(t, left == 0, "%d leftovers still kept after the Connect", left)
			}
			must(t, b.dp.Disconnect(context.Background(), "b"))
			check(t, b.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
		})
	}
}
