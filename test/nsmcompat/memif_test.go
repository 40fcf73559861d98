package nsmcompat

import (
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"

	"github.com/vwire/vwire/test/e2e"
)

// TestNSMMemifVPP (`make test-vpp`; VPP_BIN, VPP_PLUGIN_PATH): NSM's memif
// workloads through `vwire node --dataplane vpp`. The client is cmd-nsc's
// chain (sdk v1.18.0, default policies, sendfd) with a memif element in
// place of cmd-nsc-vpp's sdk-vpp memif client (same offer and answer
// handling; a gomemif peer instead of the client's own VPP); the endpoint
// is cmd-nse-icmp-responder's chain with a memif server element answering
// as sdk-vpp's does (abstract) or in NSM's FS-socket form (a socket file
// passed by descriptor), a gomemif master behind it. Ethernet frames go
// from the client across VPP to the endpoint and are echoed back.
func TestNSMMemifVPP(t *testing.T) {
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
	vpp := e2e.LookupVPP()
	if vpp.Skip != "" {
		t.Skip(vpp.Skip)
	}
	w := newWorld(t, e2e.MeshOptions{VPP: vpp})
	for _, tc := range []struct {
		name             string
		client, endpoint string // --memif of each
		wantSocketFile   string // the client's mechanism after the reply: socketfile prefix
		refresh          bool   // refresh every 15 s and check frames still cross
	}{
		// What sdk-vpp v1.18.0 does on both sides: VPP listens on an
		// abstract socket in the client's namespace ("@" name) and
		// connects to the endpoint's.
		{name: "abstract", client: "abstract", endpoint: "abstract", wantSocketFile: "@memif-", refresh: true},
		// The endpoint answers with its socket file; VPP connects through
		// the descriptor it passed.
		{name: "endpoint-file", client: "abstract", endpoint: "file", wantSocketFile: "@memif-", refresh: true},
		// The client asks for a socket file; VPP listens on one and the
		// manager passes it back by descriptor. No refresh: this test
		// client's chain (sendfd, memif, recvfd) loses the received file
		// on a refresh (its sendfd then fails to resend it).
		{name: "client-file", client: "file", endpoint: "abstract"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			service := "nsm-memif-" + tc.name
			nse, _ := startNSE(w, w.lab.Netns("nse-"+tc.name), "memif-"+tc.name, "--service", service, "--memif", tc.endpoint)
			nse.await(time.Minute, 0, "registration", isEvent("registered"))
			nscNS := w.lab.Netns("nsc-" + tc.name)
			args := []string{"--name", "nsc-" + tc.name, "--connect-to", w.node.ConnectTo(), "--url", "memif://" + service + "/m1", "--memif", tc.client}
			if tc.refresh {
				// Refreshes every 15 s. NSM's endpoints close a connection at its expiry
				// less the Request's deadline: tokens must outlive the deadline well.
				args = append(args, "--max-token-lifetime", "45s", "--request-timeout", "5s")
			}
			nsc := w.start(nscNS, "nsm-nsc-"+tc.name, "nsc", args...)
			ev, at := nsc.await(time.Minute, 0, "connection", isEvent("connected"))
			conn := parseConn(t, ev.Conns[0])
			m := nsmmemif.ToMechanism(conn.GetMechanism())
			if m == nil {
				t.Fatalf("connected with %v, want MEMIF", conn.GetMechanism())
			}
			if tc.wantSocketFile != "" && !strings.HasPrefix(m.GetSocketFilename(), tc.wantSocketFile) {
				t.Errorf("socketfile %q, want %s...", m.GetSocketFilename(), tc.wantSocketFile)
			}
			if tc.client == "file" && (m.GetSocketFilename() != "" || !strings.HasPrefix(m.GetSocketFileURL(), "file:///proc/")) {
				t.Errorf("socketfile %q, inodeURL %q: want no socketfile and the socket file received (file:///proc/...)", m.GetSocketFilename(), m.GetSocketFileURL())
			}
			_, at = nsc.await(time.Minute, at, "frames echoed across the vWire", isEvent("memif"))
			if tc.refresh {
				// A refresh keeps the vWire: frames go on.
				_, at = nsc.await(time.Minute, at, "a refresh", func(e event) bool {
					return e.Event == "monitor" && e.Type == networkservice.ConnectionEventType_UPDATE.String() && len(e.Conns) == 1 && !strings.Contains(e.Conns[0], `"state":`)
				})
				nsc.await(time.Minute, at, "frames echoed after the refresh", isEvent("memif"))
			}
			if err := nsc.Stop(); err != nil {
				t.Logf("nsc exit: %v", err)
			}
			if evs := nsc.events(); len(evs) == 0 || evs[len(evs)-1].Event != "closed" {
				t.Fatalf("the client did not close cleanly: %s", e2e.Tail(nsc.Output(), 5))
			}
			nse.Kill()
		})
	}
}
