package vxlan

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
)

func mk(cl, typ string, params map[string]string) *networkservice.Mechanism {
	return &networkservice.Mechanism{Cls: cl, Type: typ, Parameters: params}
}

// with returns the parameters of a complete IPv4 VXLAN mechanism, changed by kv
// (key, value pairs; an empty value deletes the key).
func with(kv ...string) map[string]string {
	params := map[string]string{"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "vni": "42"}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(params, kv[i])
		} else {
			params[kv[i]] = kv[i+1]
		}
	}
	return params
}

func TestFromMechanism(t *testing.T) {
	v4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		name      string
		m         *networkservice.Mechanism
		want      Params
		wantErr   error
		offerOK   bool // FromOffer accepts it although FromMechanism does not
		wantInErr string
	}{
		{name: "complete, port 0 is the default", m: mk(cls.REMOTE, Type, with("dst_port", "0")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: 42}},
		{name: "no port is the default", m: mk(cls.REMOTE, Type, with()),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: 42}},
		{name: "explicit port and MTU", m: mk(cls.REMOTE, Type, with("dst_port", "8472", "MTU", "1450")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 8472, VNI: 42, MTU: 1450}},
		{name: "IPv6", m: mk(cls.REMOTE, Type, with("src_ip", "2001:db8::1", "dst_ip", "2001:DB8::2")),
			want: Params{SrcIP: v4("2001:db8::1"), DstIP: v4("2001:db8::2"), DstPort: 4789, VNI: 42}},
		{name: "IPv4-mapped IPv6 unmapped", m: mk(cls.REMOTE, Type, with("src_ip", "::ffff:10.0.0.1")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: 42}},
		{name: "largest VNI", m: mk(cls.REMOTE, Type, with("vni", "16777215")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: MaxVNI}},
		{name: "both ends take no offload", m: mk(cls.REMOTE, Type, with("src_no_offload", "true", "dst_no_offload", "true")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: 42, SrcNoOffload: true, DstNoOffload: true}},
		{name: "no offload false", m: mk(cls.REMOTE, Type, with("dst_no_offload", "false")),
			want: Params{SrcIP: v4("10.0.0.1"), DstIP: v4("10.0.0.2"), DstPort: 4789, VNI: 42}},
		{name: "no offload not a flag", m: mk(cls.REMOTE, Type, with("src_no_offload", "yes")), wantErr: ErrInvalidParameter, wantInErr: "src_no_offload="},
		{name: "nil", m: nil, wantErr: ErrWrongType},
		{name: "wrong type", m: mk(cls.REMOTE, "WIREGUARD", with()), wantErr: ErrWrongType},
		{name: "LOCAL class", m: mk(cls.LOCAL, Type, with()), wantErr: ErrWrongClass},
		{name: "VNI 0", m: mk(cls.REMOTE, Type, with("vni", "0")), wantErr: ErrMissingParameter, wantInErr: `"vni"`},
		{name: "no VNI", m: mk(cls.REMOTE, Type, with("vni", "")), wantErr: ErrMissingParameter, wantInErr: `"vni"`},
		{name: "VNI 2^24", m: mk(cls.REMOTE, Type, with("vni", "16777216")), wantErr: ErrInvalidParameter, wantInErr: "vni="},
		{name: "VNI 2^32", m: mk(cls.REMOTE, Type, with("vni", "4294967296")), wantErr: ErrInvalidParameter, wantInErr: "vni="},
		{name: "VNI negative", m: mk(cls.REMOTE, Type, with("vni", "-1")), wantErr: ErrInvalidParameter},
		{name: "VNI hex", m: mk(cls.REMOTE, Type, with("vni", "0x10")), wantErr: ErrInvalidParameter},
		{name: "no source", m: mk(cls.REMOTE, Type, with("src_ip", "")), wantErr: ErrMissingParameter, wantInErr: `"src_ip"`},
		{name: "no destination (an offer)", m: mk(cls.REMOTE, Type, with("dst_ip", "")), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"dst_ip"`},
		{name: "source not an IP", m: mk(cls.REMOTE, Type, with("src_ip", "node-a")), wantErr: ErrInvalidParameter, wantInErr: "src_ip="},
		{name: "source with prefix", m: mk(cls.REMOTE, Type, with("src_ip", "10.0.0.1/24")), wantErr: ErrInvalidParameter},
		{name: "destination with leading zero", m: mk(cls.REMOTE, Type, with("dst_ip", "10.0.0.02")), wantErr: ErrInvalidParameter, wantInErr: "dst_ip="},
		{name: "destination unspecified", m: mk(cls.REMOTE, Type, with("dst_ip", "0.0.0.0")), wantErr: ErrInvalidParameter},
		{name: "destination multicast", m: mk(cls.REMOTE, Type, with("dst_ip", "239.1.1.1")), wantErr: ErrInvalidParameter},
		{name: "IPv6 zone", m: mk(cls.REMOTE, Type, with("src_ip", "fe80::1%eth0", "dst_ip", "fe80::2")), wantErr: ErrInvalidParameter},
		{name: "mixed families", m: mk(cls.REMOTE, Type, with("dst_ip", "2001:db8::2")), wantErr: ErrInvalidParameter, wantInErr: "address family"},
		{name: "port too big", m: mk(cls.REMOTE, Type, with("dst_port", "65536")), wantErr: ErrInvalidParameter, wantInErr: "dst_port="},
		{name: "MTU too big", m: mk(cls.REMOTE, Type, with("MTU", "70000")), wantErr: ErrInvalidParameter, wantInErr: "MTU="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromMechanism(tt.m)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FromMechanism() = %+v, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("FromMechanism() error %q does not mention %q", err, tt.wantInErr)
				}
				if _, err := FromOffer(tt.m); (err == nil) != tt.offerOK {
					t.Fatalf("FromOffer() error %v, want ok=%v", err, tt.offerOK)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromMechanism(): %v", err)
			}
			if got != tt.want {
				t.Fatalf("FromMechanism() = %+v, want %+v", got, tt.want)
			}
			if back, err := FromMechanism(New(got)); err != nil || back != got {
				t.Fatalf("FromMechanism(New(%+v)) = %+v, %v", got, back, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want map[string]string
	}{
		{name: "port 0 written as default", p: Params{SrcIP: netip.MustParseAddr("10.0.0.1"), VNI: 7},
			want: map[string]string{"src_ip": "10.0.0.1", "dst_port": "4789", "vni": "7"}},
		{name: "all", p: Params{SrcIP: netip.MustParseAddr("2001:db8::1"), DstIP: netip.MustParseAddr("2001:db8::2"), DstPort: 1, VNI: 1, MTU: 1400},
			want: map[string]string{"src_ip": "2001:db8::1", "dst_ip": "2001:db8::2", "dst_port": "1", "vni": "1", "MTU": "1400"}},
		{name: "no offload flags", p: Params{SrcIP: netip.MustParseAddr("10.0.0.1"), VNI: 7, SrcNoOffload: true, DstNoOffload: true},
			want: map[string]string{"src_ip": "10.0.0.1", "dst_port": "4789", "vni": "7", "src_no_offload": "true", "dst_no_offload": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.p)
			if m.GetCls() != cls.REMOTE || m.GetType() != "VXLAN" || !maps.Equal(m.GetParameters(), tt.want) {
				t.Fatalf("New() = %v, want parameters %v", m, tt.want)
			}
		})
	}
}

func TestNegotiation(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name       string
		offer      Params
		dstIP      netip.Addr
		serverHeld []uint32
		wantErr    error
	}{
		{name: "free VNI kept", offer: Offer(a, 100), dstIP: b},
		{name: "MTU and port kept", offer: Params{SrcIP: a, DstPort: 8472, VNI: 5, MTU: 1400}, dstIP: b},
		{name: "IPv6", offer: Offer(netip.MustParseAddr("2001:db8::a"), 9), dstIP: netip.MustParseAddr("2001:db8::b")},
		{name: "client takes no offload", offer: Params{SrcIP: a, VNI: 6, SrcNoOffload: true}, dstIP: b},
		{name: "VNI taken on the server", offer: Offer(a, 100), dstIP: b, serverHeld: []uint32{100}, wantErr: ErrVNIInUse},
		{name: "bad offer", offer: Offer(a, 0), dstIP: b, wantErr: ErrMissingParameter},
		{name: "no server address", offer: Offer(a, 100), wantErr: ErrMissingParameter},
		{name: "family mismatch", offer: Offer(a, 100), dstIP: netip.MustParseAddr("2001:db8::b"), wantErr: ErrInvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The offer crosses the wire.
			offer, err := FromOffer(New(tt.offer))
			if err != nil {
				if tt.wantErr == nil || !errors.Is(err, tt.wantErr) {
					t.Fatalf("FromOffer(): %v", err)
				}
				if _, err := Accept(tt.offer, tt.dstIP, nil); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Accept() of a bad offer: %v, want %v", err, tt.wantErr)
				}
				return
			}
			server := NewVNIAllocator()
			for _, v := range tt.serverHeld {
				if err := server.Reserve(v); err != nil {
					t.Fatal(err)
				}
			}
			calls := 0
			isFree := func(v uint32) bool { calls++; return server.TryReserve(v) }
			accepted, err := Accept(offer, tt.dstIP, isFree)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Accept() = %+v, %v; want %v", accepted, err, tt.wantErr)
				}
				if !errors.Is(tt.wantErr, ErrVNIInUse) && server.InUse(tt.offer.VNI) {
					t.Fatalf("failed Accept() left VNI %d reserved", tt.offer.VNI)
				}
				return
			}
			if err != nil {
				t.Fatalf("Accept(): %v", err)
			}
			if calls != 1 || !server.InUse(offer.VNI) {
				t.Fatalf("isFree called %d times, VNI reserved %v", calls, server.InUse(offer.VNI))
			}
			if accepted.VNI != tt.offer.VNI || accepted.DstIP != tt.dstIP || accepted.MTU != tt.offer.MTU || accepted.DstPort != tt.offer.Port() || accepted.SrcNoOffload != tt.offer.SrcNoOffload {
				t.Fatalf("Accept() = %+v for offer %+v", accepted, tt.offer)
			}
			// The reply crosses the wire back.
			got, err := Confirm(tt.offer, New(accepted))
			if err != nil || got != accepted {
				t.Fatalf("Confirm() = %+v, %v; want %+v", got, err, accepted)
			}
			// A server that takes no offload says so in its reply; the
			// client sees it from its end.
			accepted.DstNoOffload = true
			got, err = Confirm(tt.offer, New(accepted))
			if err != nil || !got.PeerNoOffload(true) || got.PeerNoOffload(false) != tt.offer.SrcNoOffload {
				t.Fatalf("Confirm() of a no-offload reply = %+v, %v", got, err)
			}
		})
	}
}

func TestConfirmMismatch(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	offer := Offer(a, 100)
	good, err := Accept(offer, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		change  func(p *Params)
		wantErr error
		key     string
	}{
		{name: "VNI changed", change: func(p *Params) { p.VNI = 101 }, wantErr: ErrMismatch, key: "vni"},
		{name: "source changed", change: func(p *Params) { p.SrcIP = netip.MustParseAddr("192.0.2.9") }, wantErr: ErrMismatch, key: "src_ip"},
		{name: "port changed", change: func(p *Params) { p.DstPort = 1 }, wantErr: ErrMismatch, key: "dst_port"},
		{name: "incomplete", change: func(p *Params) { p.DstIP = netip.Addr{} }, wantErr: ErrMissingParameter, key: "dst_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := good
			tt.change(&reply)
			_, err := Confirm(offer, New(reply))
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("Confirm() error %v, want %v naming %s", err, tt.wantErr, tt.key)
			}
		})
	}
}

func FuzzFromMechanism(f *testing.F) {
	f.Add(cls.REMOTE, Type, "10.0.0.1", "10.0.0.2", "4789", "42", "1450", "x", "y")
	f.Add(cls.REMOTE, Type, "2001:db8::1", "", "", "16777215", "", "", "")
	f.Add(cls.REMOTE, Type, "::ffff:1.2.3.4", "1.2.3.5", "0", "1", "0", "vni", "7")
	f.Add(cls.LOCAL, "VXLAN", "fe80::1%eth0", "fe80::2", "65535", "16777216", "67", "src_ip", "")
	f.Fuzz(func(t *testing.T, cl, typ, src, dst, port, vni, mtu, k, v string) {
		params := map[string]string{"src_ip": src, "dst_ip": dst, "dst_port": port, "vni": vni, "MTU": mtu}
		params[k] = v
		m := mk(cl, typ, params)
		p, err := FromMechanism(m)
		if err == nil {
			back, err := FromMechanism(New(p))
			if err != nil || back != p {
				t.Fatalf("FromMechanism(%v) = %+v, re-parses as %+v, %v", params, p, back, err)
			}
			if _, err := FromOffer(m); err != nil {
				t.Fatalf("complete mechanism %v refused as an offer: %v", params, err)
			}
			if got, err := Confirm(p, New(p)); err != nil || got != p {
				t.Fatalf("Confirm(p, New(p)) = %+v, %v for %+v", got, err, p)
			}
		}
		p, err = FromOffer(m)
		if err != nil {
			return
		}
		if back, err := FromOffer(New(p)); err != nil || back != p {
			t.Fatalf("FromOffer(%v) = %+v, re-parses as %+v, %v", params, p, back, err)
		}
	})
}
