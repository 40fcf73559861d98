package wireguard

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

// Two fixed public keys (of no private key anyone keeps).
const (
	keyA = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

func with(kv ...string) map[string]string {
	params := map[string]string{
		"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2",
		"src_public_key": keyA, "dst_public_key": keyB,
	}
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
	ip := netip.MustParseAddr
	base := Params{SrcIP: ip("10.0.0.1"), DstIP: ip("10.0.0.2"), SrcPort: 51820, DstPort: 51820, SrcPublicKey: keyA, DstPublicKey: keyB}
	withPorts := base
	withPorts.SrcPort, withPorts.DstPort, withPorts.MTU = 1, 65535, 1420
	v6 := base
	v6.SrcIP, v6.DstIP = ip("2001:db8::1"), ip("2001:db8::2")
	tests := []struct {
		name      string
		m         *networkservice.Mechanism
		want      Params
		wantErr   error
		offerOK   bool // FromOffer accepts it although FromMechanism does not
		wantInErr string
	}{
		{name: "complete, default ports", m: mk(cls.REMOTE, Type, with()), want: base},
		{name: "port 0 is the default", m: mk(cls.REMOTE, Type, with("src_port", "0", "dst_port", "0")), want: base},
		{name: "ports and MTU", m: mk(cls.REMOTE, Type, with("src_port", "1", "dst_port", "65535", "MTU", "1420")), want: withPorts},
		{name: "IPv6", m: mk(cls.REMOTE, Type, with("src_ip", "2001:db8::1", "dst_ip", "2001:db8::2")), want: v6},
		{name: "nil", m: nil, wantErr: ErrWrongType},
		{name: "wrong type", m: mk(cls.REMOTE, "IPSEC", with()), wantErr: ErrWrongType},
		{name: "LOCAL class", m: mk(cls.LOCAL, Type, with()), wantErr: ErrWrongClass},
		{name: "offer", m: mk(cls.REMOTE, Type, with("dst_ip", "", "dst_public_key", "")), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"dst_ip"`},
		{name: "offer without destination key", m: mk(cls.REMOTE, Type, with("dst_public_key", "")), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"dst_public_key"`},
		{name: "no source key", m: mk(cls.REMOTE, Type, with("src_public_key", "")), wantErr: ErrMissingParameter, wantInErr: `"src_public_key"`},
		{name: "no source address", m: mk(cls.REMOTE, Type, with("src_ip", "")), wantErr: ErrMissingParameter, wantInErr: `"src_ip"`},
		{name: "key too short", m: mk(cls.REMOTE, Type, with("src_public_key", "AAAA")), wantErr: ErrInvalidParameter, wantInErr: "src_public_key="},
		{name: "key not base64", m: mk(cls.REMOTE, Type, with("dst_public_key", strings.Repeat("!", 44))), wantErr: ErrInvalidParameter, wantInErr: "dst_public_key="},
		{name: "key without padding", m: mk(cls.REMOTE, Type, with("src_public_key", strings.TrimSuffix(keyA, "="))), wantErr: ErrInvalidParameter},
		{name: "key URL encoding", m: mk(cls.REMOTE, Type, with("src_public_key", "-_"+keyA[2:])), wantErr: ErrInvalidParameter},
		{name: "key non-canonical", m: mk(cls.REMOTE, Type, with("src_public_key", keyA[:42]+"x=")), wantErr: ErrInvalidParameter},
		// Regression: 44 characters without padding decode to 33 bytes, which
		// once overran the 32-byte buffer and panicked.
		{name: "key 44 characters unpadded", m: mk(cls.REMOTE, Type, with("src_public_key", keyA[:43]+"B")), wantErr: ErrInvalidParameter},
		{name: "key all zero", m: mk(cls.REMOTE, Type, with("src_public_key", strings.Repeat("A", 43)+"=")), wantErr: ErrInvalidParameter},
		{name: "key with newline", m: mk(cls.REMOTE, Type, with("src_public_key", keyA[:20]+"\n"+keyA[20:])), wantErr: ErrInvalidParameter},
		{name: "same key both ends", m: mk(cls.REMOTE, Type, with("dst_public_key", keyA)), wantErr: ErrInvalidParameter, wantInErr: "same key"},
		{name: "bad destination key in an offer", m: mk(cls.REMOTE, Type, with("dst_ip", "", "dst_public_key", "x")), wantErr: ErrInvalidParameter},
		{name: "mixed families", m: mk(cls.REMOTE, Type, with("dst_ip", "2001:db8::2")), wantErr: ErrInvalidParameter},
		{name: "port not a number", m: mk(cls.REMOTE, Type, with("src_port", "http")), wantErr: ErrInvalidParameter, wantInErr: "src_port="},
		{name: "port too big", m: mk(cls.REMOTE, Type, with("dst_port", "65536")), wantErr: ErrInvalidParameter, wantInErr: "dst_port="},
		{name: "MTU too small", m: mk(cls.REMOTE, Type, with("MTU", "1")), wantErr: ErrInvalidParameter, wantInErr: "MTU="},
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
	m := New(Params{SrcIP: netip.MustParseAddr("10.0.0.1"), SrcPublicKey: keyA})
	want := map[string]string{"src_ip": "10.0.0.1", "src_port": "51820", "dst_port": "51820", "src_public_key": keyA}
	if m.GetCls() != cls.REMOTE || m.GetType() != "WIREGUARD" || !maps.Equal(m.GetParameters(), want) {
		t.Fatalf("New() = %v, want parameters %v", m, want)
	}
}

func TestNegotiation(t *testing.T) {
	_, pubA, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, pubB, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		srcIP, dstIP     netip.Addr
		srcPort, dstPort uint16
	}{
		{name: "IPv4, default ports", srcIP: netip.MustParseAddr("192.0.2.1"), dstIP: netip.MustParseAddr("192.0.2.2")},
		{name: "IPv6, own ports", srcIP: netip.MustParseAddr("2001:db8::1"), dstIP: netip.MustParseAddr("2001:db8::2"), srcPort: 51000, dstPort: 52000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer := Offer(tt.srcIP, tt.srcPort, pubA)
			if err := offer.ValidateOffer(); err != nil {
				t.Fatalf("Offer() = %+v: %v", offer, err)
			}
			got, err := FromOffer(New(offer))
			if err != nil || got != offer {
				t.Fatalf("FromOffer(New(offer)) = %+v, %v; want %+v", got, err, offer)
			}
			accepted := Accept(got, tt.dstIP, tt.dstPort, pubB)
			if err := accepted.Validate(); err != nil {
				t.Fatalf("Accept() = %+v: %v", accepted, err)
			}
			final, err := Confirm(offer, New(accepted))
			if err != nil || final != accepted {
				t.Fatalf("Confirm() = %+v, %v; want %+v", final, err, accepted)
			}
			if k, err := final.DstKey(); err != nil || k != pubB {
				t.Fatalf("DstKey() = %x, %v", k, err)
			}
			if k, err := final.SrcKey(); err != nil || k != pubA {
				t.Fatalf("SrcKey() = %x, %v", k, err)
			}
			if final.SrcPort == 0 || final.DstPort == 0 {
				t.Fatalf("ports not defaulted: %+v", final)
			}
			// A reply that changed the offered key is refused.
			bad := accepted
			bad.SrcPublicKey = EncodeKey(pubB)
			bad.DstPublicKey = EncodeKey(pubA)
			if _, err := Confirm(offer, New(bad)); !errors.Is(err, ErrMismatch) {
				t.Fatalf("Confirm() of a changed key: %v", err)
			}
			bad = accepted
			bad.SrcPort++
			if _, err := Confirm(offer, New(bad)); !errors.Is(err, ErrMismatch) {
				t.Fatalf("Confirm() of a changed port: %v", err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if priv[0]&7 != 0 || priv[31]&128 != 0 || priv[31]&64 == 0 {
		t.Fatalf("private key not clamped: %x", priv)
	}
	if p, err := PublicKey(priv); err != nil || p != pub {
		t.Fatalf("PublicKey() = %x, %v; want %x", p, err, pub)
	}
	s := EncodeKey(pub)
	if len(s) != 44 {
		t.Fatalf("EncodeKey() = %q", s)
	}
	if k, err := DecodeKey(s); err != nil || k != pub {
		t.Fatalf("DecodeKey(%q) = %x, %v", s, k, err)
	}
	// RFC 7748 section 6.1: Alice's key pair.
	alicePriv, err := DecodeKey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := PublicKey(alicePriv); err != nil || EncodeKey(p) != "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=" {
		t.Fatalf("PublicKey(RFC 7748 Alice) = %s, %v", EncodeKey(p), err)
	}
	for _, bad := range []string{"", "AAAA", keyA + "=", strings.Repeat("A", 43) + "=", keyA[:43] + "B"} {
		if _, err := DecodeKey(bad); !errors.Is(err, ErrBadKey) {
			t.Fatalf("DecodeKey(%q) = %v, want ErrBadKey", bad, err)
		}
	}
}

func FuzzFromMechanism(f *testing.F) {
	f.Add(cls.REMOTE, Type, "10.0.0.1", "10.0.0.2", "51820", "0", keyA, keyB, "1420", "x", "y")
	f.Add(cls.REMOTE, Type, "2001:db8::1", "", "", "", keyA, "", "", "", "")
	f.Add(cls.REMOTE, Type, "1.2.3.4", "1.2.3.5", "65536", "1", keyA, keyA, "0", "src_port", "7")
	f.Fuzz(func(t *testing.T, cl, typ, src, dst, srcPort, dstPort, srcKey, dstKey, mtu, k, v string) {
		params := map[string]string{
			"src_ip": src, "dst_ip": dst, "src_port": srcPort, "dst_port": dstPort,
			"src_public_key": srcKey, "dst_public_key": dstKey, "MTU": mtu,
		}
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
