package vpp

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	binmemif "go.fd.io/govpp/binapi/memif"

	"github.com/vwire/vwire/mechanisms/memif"
)

// TestMemifNSMForms: the forms NSM's memif workloads use, through Accept,
// Offer and Connect on the fake VPP: which socket VPP registers, and
// whether it listens (towards a client, towards a vwire endpoint) or
// connects as slave (to a socket an NSM endpoint named).
func TestMemifNSMForms(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	ctx := context.Background()
	const clientNS, endpointNS = "/proc/100/fd/7", "/proc/100/fd/8"
	accept := func(t *testing.T, id string, offer *networkservice.Mechanism) *networkservice.Mechanism {
		t.Helper()
		m, err := n.dp.Accept(ctx, id, conn(nil, payload.Ethernet), []*networkservice.Mechanism{offer})
		if err != nil {
			t.Fatalf("Accept(%v): %v", offer, err)
		}
		return m
	}
	tests := []struct {
		name      string
		id        string
		offer     *networkservice.Mechanism // the client's
		wantIn    map[string]string         // what Accept answers
		endpoint  *networkservice.Mechanism // the endpoint's answer
		wantSocks []string                  // VPP's socket filenames, in then out
		wantRoles []binmemif.MemifRole
	}{
		{
			// cmd-nsc-vpp's offer (sdk-vpp memif.NewAbstract, after sendfd
			// and the manager) to an sdk-vpp endpoint (abstract, '@', its
			// own namespace).
			name:      "NSM abstract both ways",
			id:        "nsm-abstract",
			offer:     memif.New(memif.Params{NetNSURL: "file://" + clientNS}),
			wantIn:    map[string]string{"socketfile": "@" + memif.DefaultSocketFile("nsm-abstract"), "inodeURL": "file://" + clientNS},
			endpoint:  memif.New(memif.Params{SocketFile: "@/tmp/memif/nsm-abstract/memif.socket", NetNSURL: "file://" + endpointNS}),
			wantSocks: []string{"abstract:" + memif.DefaultSocketFile("nsm-abstract") + ",netns_name=" + clientNS, "abstract:/tmp/memif/nsm-abstract/memif.socket,netns_name=" + endpointNS},
			wantRoles: []binmemif.MemifRole{binmemif.MEMIF_ROLE_API_MASTER, binmemif.MEMIF_ROLE_API_SLAVE},
		},
		{
			// A client asking for a socket file; an endpoint answering
			// with its socket file, passed by descriptor (the forwarder
			// opens it as /proc/<pid>/fd/<n>).
			name:      "NSM socket files both ways",
			id:        "nsm-files",
			offer:     memif.New(memif.Params{SocketURL: memif.FileOffer}),
			wantIn:    map[string]string{"inodeURL": "file://" + filepath.Join(n.memifDir, memif.DefaultSocketFile("nsm-files"))},
			endpoint:  memif.New(memif.Params{SocketURL: "file:///proc/100/fd/9"}),
			wantSocks: []string{filepath.Join(n.memifDir, memif.DefaultSocketFile("nsm-files")), "/proc/100/fd/9"},
			wantRoles: []binmemif.MemifRole{binmemif.MEMIF_ROLE_API_MASTER, binmemif.MEMIF_ROLE_API_SLAVE},
		},
		{
			// vwire's own: the client names its socket, the endpoint keeps
			// the name offered; VPP listens on both.
			name:      "vwire named sockets",
			id:        "vwire",
			offer:     memif.New(memif.Params{SocketFile: "mine", NetNSURL: "file://" + clientNS}),
			wantIn:    map[string]string{"socketfile": "mine", "inodeURL": "file://" + clientNS},
			endpoint:  memif.New(memif.Params{SocketFile: memif.DefaultSocketFile("vwire/out")}),
			wantSocks: []string{"abstract:mine,netns_name=" + clientNS, filepath.Join(n.memifDir, memif.DefaultSocketFile("vwire/out"))},
			wantRoles: []binmemif.MemifRole{binmemif.MEMIF_ROLE_API_MASTER, binmemif.MEMIF_ROLE_API_MASTER},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			in := accept(t, id, tt.offer)
			if got := in.GetParameters(); !equalParams(got, tt.wantIn) {
				t.Fatalf("Accept answered %v, want %v", got, tt.wantIn)
			}
			n.vpp.requests(true)
			if err := n.dp.Connect(ctx, id, conn(in, payload.Ethernet), conn(tt.endpoint, payload.Ethernet)); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			var socks []string
			for _, m := range n.vpp.sentOf("memif_socket_filename_add_del_v2") {
				socks = append(socks, m.(*binmemif.MemifSocketFilenameAddDelV2).SocketFilename)
			}
			var roles []binmemif.MemifRole
			for _, m := range n.vpp.sentOf("memif_create_v2") {
				roles = append(roles, m.(*binmemif.MemifCreateV2).Role)
			}
			if strings.Join(socks, " ") != strings.Join(tt.wantSocks, " ") || len(roles) != 2 || roles[0] != tt.wantRoles[0] || roles[1] != tt.wantRoles[1] {
				t.Fatalf("VPP got sockets %q roles %v, want %q %v", socks, roles, tt.wantSocks, tt.wantRoles)
			}
			if err := n.dp.Disconnect(ctx, id); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
		})
	}
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMemifNSMFormsRefused: what the forwarder cannot build says why.
func TestMemifNSMFormsRefused(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		offer *networkservice.Mechanism
		want  string
	}{
		{name: "nothing after '@'", offer: memif.New(memif.Params{SocketFile: "@", NetNSURL: "file:///proc/1/fd/3"}), want: "no name after it"},
		{name: "bad abstract name", offer: memif.New(memif.Params{SocketFile: "@a b", NetNSURL: "file:///proc/1/fd/3"}), want: "socketfile="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.dp.Accept(ctx, "refused", conn(nil, payload.Ethernet), []*networkservice.Mechanism{tt.offer})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Accept(%v) = %v, want an error naming %q", tt.offer, err, tt.want)
			}
		})
	}
	// A socket file still named by inode (its descriptor never came), and
	// a client-side socket file outside the forwarder's directory.
	for _, tt := range []struct {
		name    string
		in, out *networkservice.Mechanism
		want    string
	}{
		{name: "inode socket", in: memifMech("a.sock"), out: memif.New(memif.Params{SocketURL: "inode://4/99"}), want: "without its descriptor"},
		{name: "foreign client socket", in: memif.New(memif.Params{SocketURL: "file:///run/elsewhere.sock"}), out: memifMech("b.sock"), want: "not in the forwarder's socket directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := n.dp.Connect(ctx, "refused-"+tt.name, conn(tt.in, payload.Ethernet), conn(tt.out, payload.Ethernet))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Connect = %v, want an error naming %q", err, tt.want)
			}
			if got := n.vpp.sentOf("memif_create_v2"); len(got) != 0 {
				t.Fatalf("a refused plan made memifs: %v", got)
			}
		})
	}
}
