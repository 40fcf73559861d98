package binapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/vpe"
	"go.fd.io/govpp/binapi/wireguard"
	"go.fd.io/govpp/core"
)

// vppOf is govpp's mock adapter answering show_version with version and
// not knowing the messages in unknown (as a VPP of another release, or
// without a plugin, would not).
type vppOf struct {
	*mock.VppAdapter
	unknown []api.Message
}

func (v *vppOf) GetMsgID(name, crc string) (uint16, error) {
	for _, m := range v.unknown {
		if m.GetMessageName() == name && m.GetCrcString() == crc {
			return 0, &adapter.UnknownMsgError{MsgName: name, MsgCrc: crc}
		}
	}
	return v.VppAdapter.GetMsgID(name, crc)
}

func connect(t *testing.T, version string, unknown ...api.Message) *core.Connection {
	t.Helper()
	v := &vppOf{VppAdapter: mock.NewVppAdapter(), unknown: unknown}
	v.MockReplyHandler(func(req mock.MessageDTO) ([]byte, uint16, bool) {
		if req.MsgName != "show_version" {
			return nil, 0, false
		}
		reply := &vpe.ShowVersionReply{Version: version}
		data, err := v.ReplyBytes(req, reply)
		if err != nil {
			t.Error(err)
			return nil, 0, false
		}
		id, _ := v.GetMsgID(reply.GetMessageName(), reply.GetCrcString())
		return data, id, true
	})
	conn, err := core.Connect(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Disconnect)
	return conn
}

func TestCheckCompatible(t *testing.T) {
	version, err := Check(context.Background(), connect(t, "v25.10-release"))
	if err != nil {
		t.Fatal(err)
	}
	if version != "v25.10-release" {
		t.Fatalf("version %q", version)
	}
}

func TestCheckIncompatible(t *testing.T) {
	_, err := Check(context.Background(), connect(t, "v24.02-release", &memif.MemifCreateV2{}, &wireguard.WireguardPeerAdd{}))
	var ie *IncompatibleError
	if !errors.As(err, &ie) || !errors.Is(err, ErrIncompatible) {
		t.Fatalf("err = %v", err)
	}
	want := []string{MessageID(&memif.MemifCreateV2{}), MessageID(&wireguard.WireguardPeerAdd{})}
	slices.Sort(want)
	if ie.Found != "v24.02-release" || !slices.Equal(ie.Messages, want) {
		t.Fatalf("found %q, messages %v", ie.Found, ie.Messages)
	}
	msg := err.Error()
	for _, s := range append(want, "v24.02-release", VPPRelease) {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not name %s: %s", s, msg)
		}
	}
}

func TestCheckWithoutShowVersion(t *testing.T) {
	_, err := Check(context.Background(), connect(t, "", &vpe.ShowVersion{}))
	var ie *IncompatibleError
	if !errors.As(err, &ie) || ie.Found != "" || !strings.Contains(err.Error(), "unknown version") {
		t.Fatalf("err = %v", err)
	}
}

func TestMessagesAreRequestReplyPairs(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Messages() {
		if seen[m.GetMessageName()] {
			t.Errorf("%s listed twice", m.GetMessageName())
		}
		seen[m.GetMessageName()] = true
	}
	for name := range seen {
		switch {
		case strings.HasSuffix(name, "_reply"), strings.HasSuffix(name, "_details"):
		case strings.HasSuffix(name, "_dump"):
			base := strings.TrimSuffix(name, "_dump")
			if !seen[base+"_details"] && !seen[strings.TrimSuffix(base, "_v2")+"_v2_details"] && !seen[strings.TrimPrefix(base, "sw_interface_")+"_details"] {
				t.Errorf("%s has no details message listed", name)
			}
		default:
			if !seen[name+"_reply"] {
				t.Errorf("%s has no reply listed", name)
			}
		}
	}
}
