package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// deviceGet configures a wireguard-go device (on a channel TUN, never up:
// no socket) with cfg rendered by uapiSet and returns its "get" answer.
func deviceGet(t testing.TB, set string) string {
	t.Helper()
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewStdNetBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	if err := dev.IpcSet(set); err != nil {
		t.Fatalf("IpcSet:\n%s\n%v", set, err)
	}
	s, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUAPIRoundTrip: what uapiSet renders, wireguard-go takes, and what it
// gives back parses into the device wgMatches finds as configured.
func TestUAPIRoundTrip(t *testing.T) {
	priv, _, _ := wireguard.GenerateKey()
	_, peer, _ := wireguard.GenerateKey()
	for _, ep := range []string{"192.0.2.7", "2001:db8::7"} {
		t.Run(ep, func(t *testing.T) {
			cfg := wgDeviceConfig(priv, 51821, peer, netip.MustParseAddr(ep), 51999)
			got, err := parseUAPIGet("vwo1", deviceGet(t, uapiSet(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			if !wgMatches(got, cfg) {
				t.Fatalf("device %+v does not match %+v", got, cfg)
			}
			if got.PublicKey != cfg.PrivateKey.PublicKey() || len(got.Peers[0].AllowedIPs) != 2 || got.Peers[0].ProtocolVersion != 1 {
				t.Fatalf("device %+v", got)
			}
		})
	}
}

func TestParseUAPIGetErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "no equals sign", in: "listen_port\n", want: "key=value"},
		{name: "bad port", in: "listen_port=70000\n", want: "listen_port"},
		{name: "bad key", in: "private_key=zz\n", want: "private_key"},
		{name: "peer key before any peer", in: "endpoint=192.0.2.1:1\n", want: "unknown device key"},
		{name: "bad endpoint", in: "public_key=" + strings.Repeat("00", 32) + "\nendpoint=nowhere\n", want: "endpoint"},
		{name: "errno", in: "errno=1\n", want: "errno 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseUAPIGet("x", tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseUAPIGet(f *testing.F) {
	priv, _, _ := wireguard.GenerateKey()
	_, peer, _ := wireguard.GenerateKey()
	f.Add(deviceGet(f, uapiSet(wgDeviceConfig(priv, 51821, peer, netip.MustParseAddr("192.0.2.7"), 51999))))
	f.Add("listen_port=1\nfwmark=0\npublic_key=" + strings.Repeat("ab", 32) + "\nallowed_ip=::/0\n")
	f.Fuzz(func(t *testing.T, s string) {
		dev, err := parseUAPIGet("x", s)
		if err == nil && dev == nil {
			t.Fatal("no device and no error")
		}
	})
}
