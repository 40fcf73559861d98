package ipsec

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
	base := Params{SrcIP: ip("10.0.0.1"), DstIP: ip("10.0.0.2"), SrcPort: 4500, DstPort: 4500, SrcPublicKey: keyA, DstPublicKey: keyB}
	v6 := base
	v6.SrcIP, v6.DstIP, v6.SrcPort, v6.MTU = ip("2001:db8::1"), ip("2001:db8::2"), 14500, 1400
	tests := []struct {
		name      string
		m         *networkservice.Mechanism
		want      Params
		wantErr   error
		offerOK   bool // FromOffer accepts it although FromMechanism does not
		wantInErr string
	}{
		{name: "complete, default ports", m: mk(cls.REMOTE, Type, with("dst_port", "0")), want: base},
		{name: "IPv6, port and MTU", m: mk(cls.REMOTE, Type, with("src_ip", "2001:db8::1", "dst_ip", "2001:db8::2", "src_port", "14500", "MTU", "1400")), want: v6},
		{name: "wireguard type", m: mk(cls.REMOTE, "WIREGUARD", with()), wantErr: ErrWrongType},
		{name: "LOCAL class", m: mk(cls.LOCAL, Type, with()), wantErr: ErrWrongClass},
		{name: "offer", m: mk(cls.REMOTE, Type, with("dst_ip", "", "dst_public_key", "")), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"dst_ip"`},
		{name: "no source key", m: mk(cls.REMOTE, Type, with("src_public_key", "")), wantErr: ErrMissingParameter, wantInErr: `"src_public_key"`},
		{name: "bad key", m: mk(cls.REMOTE, Type, with("dst_public_key", "abc")), wantErr: ErrInvalidParameter, wantInErr: "ipsec: "},
		{name: "bad address", m: mk(cls.REMOTE, Type, with("dst_ip", "10.0.0.256")), wantErr: ErrInvalidParameter, wantInErr: "dst_ip="},
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
	m := New(Params{SrcIP: netip.MustParseAddr("10.0.0.1"), SrcPublicKey: keyA, MTU: 1400})
	want := map[string]string{"src_ip": "10.0.0.1", "src_port": "4500", "dst_port": "4500", "src_public_key": keyA, "MTU": "1400"}
	if m.GetCls() != cls.REMOTE || m.GetType() != "IPSEC" || !maps.Equal(m.GetParameters(), want) {
		t.Fatalf("New() = %v, want parameters %v", m, want)
	}
}

// TestNegotiationAndKeys runs the whole exchange: each forwarder ends up with
// the other's public key from the mechanism and derives the same SAs.
func TestNegotiationAndKeys(t *testing.T) {
	privA, pubA, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	privB, pubB, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	offer := Offer(netip.MustParseAddr("192.0.2.1"), 0, pubA)
	atServer, err := FromOffer(New(offer))
	if err != nil {
		t.Fatal(err)
	}
	accepted := Accept(atServer, netip.MustParseAddr("192.0.2.2"), 0, pubB)
	if err := accepted.Validate(); err != nil {
		t.Fatal(err)
	}
	atClient, err := Confirm(offer, New(accepted))
	if err != nil {
		t.Fatal(err)
	}
	serverPeer, err := accepted.SrcKey()
	if err != nil {
		t.Fatal(err)
	}
	clientPeer, err := atClient.DstKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := DeriveSAKeys(privA, clientPeer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DeriveSAKeys(privB, serverPeer)
	if err != nil {
		t.Fatal(err)
	}
	if a.Outbound != b.Inbound || a.Inbound != b.Outbound {
		t.Fatalf("SAs differ:\nA %+v\nB %+v", a, b)
	}
}

func TestDeriveSAKeys(t *testing.T) {
	type pair struct{ priv, pub [KeyLen]byte }
	gen := func() pair {
		priv, pub, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return pair{priv, pub}
	}
	a, b, c := gen(), gen(), gen()
	tests := []struct {
		name      string
		x, y      pair
		sx, sy    [][]byte // seeds on each side
		wantMatch bool
		againstAB bool // must differ from a<->b without seeds
	}{
		{name: "both sides agree", x: a, y: b, wantMatch: true},
		{name: "both sides agree with seeds", x: a, y: b, sx: [][]byte{[]byte("conn-1")}, sy: [][]byte{[]byte("conn-1")}, wantMatch: true, againstAB: true},
		{name: "different seeds disagree", x: a, y: b, sx: [][]byte{[]byte("conn-1")}, sy: [][]byte{[]byte("conn-2")}},
		{name: "seed boundaries matter", x: a, y: b, sx: [][]byte{[]byte("ab"), []byte("c")}, sy: [][]byte{[]byte("a"), []byte("bc")}},
		{name: "other peer differs", x: a, y: c, wantMatch: true, againstAB: true},
	}
	ab, err := DeriveSAKeys(a.priv, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kx, err := DeriveSAKeys(tt.x.priv, tt.y.pub, tt.sx...)
			if err != nil {
				t.Fatal(err)
			}
			ky, err := DeriveSAKeys(tt.y.priv, tt.x.pub, tt.sy...)
			if err != nil {
				t.Fatal(err)
			}
			match := kx.Outbound == ky.Inbound && kx.Inbound == ky.Outbound
			if match != tt.wantMatch {
				t.Fatalf("sides match = %v, want %v", match, tt.wantMatch)
			}
			if !tt.wantMatch && (kx.Outbound.EncryptionKey == ky.Inbound.EncryptionKey || kx.Outbound.SPI == ky.Inbound.SPI) {
				t.Fatal("mismatched sides share a key or SPI")
			}
			if tt.againstAB && (kx.Outbound.EncryptionKey == ab.Outbound.EncryptionKey || kx.Outbound.IntegrityKey == ab.Outbound.IntegrityKey || kx.Outbound.SPI == ab.Outbound.SPI) {
				t.Fatal("same keys as another tunnel")
			}
			for _, sa := range []SA{kx.Outbound, kx.Inbound} {
				if sa.SPI < MinSPI || sa.EncryptionKey == [EncryptionKeyLen]byte{} || sa.EncryptionKey == sa.IntegrityKey {
					t.Fatalf("bad SA %+v", sa)
				}
			}
			if kx.Outbound.EncryptionKey == kx.Inbound.EncryptionKey || kx.Outbound.SPI == kx.Inbound.SPI {
				t.Fatal("the two directions share a key or SPI")
			}
			again, err := DeriveSAKeys(tt.x.priv, tt.y.pub, tt.sx...)
			if err != nil || again != kx {
				t.Fatalf("not deterministic: %v", err)
			}
		})
	}
}

func TestDeriveSAKeysErrors(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  [KeyLen]byte
		wantErr error
	}{
		{name: "own key", remote: pub, wantErr: ErrSameKey},
		{name: "zero point", remote: [KeyLen]byte{}, wantErr: ErrLowOrder},
		{name: "low-order point u=1", remote: [KeyLen]byte{1}, wantErr: ErrLowOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DeriveSAKeys(priv, tt.remote); !errors.Is(err, tt.wantErr) {
				t.Fatalf("DeriveSAKeys() error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestDeriveSAKeysPinned pins the derivation: forwarders of different vwire
// versions must derive the same SAs, so these values must never change (a new
// derivation needs a new label and a way to negotiate it). They were checked
// against an independent implementation of the derivation that DeriveSAKeys
// documents (Python's cryptography package and hmac).
func TestDeriveSAKeysPinned(t *testing.T) {
	// The key pairs of RFC 7748 section 6.1.
	alicePriv, err := DecodeKey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if err != nil {
		t.Fatal(err)
	}
	bobPub, err := DecodeKey("3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=")
	if err != nil {
		t.Fatal(err)
	}
	k, err := DeriveSAKeys(alicePriv, bobPub, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		sa            SA
		enc, integ    string
		spi, saltWant uint32
	}{
		{name: "outbound", sa: k.Outbound,
			enc:   "CZX45auvBr2DE1rPNNCHuUQXZ2Akke6OwjO3HCkf1zA=",
			integ: "B06zgyjE6WWbrdF2JVaaDK8wOBHMZXqk3N3NCrSFTu4=",
			spi:   1865489117, saltWant: 2682722349},
		{name: "inbound", sa: k.Inbound,
			enc:   "UvJOCT0rH+a+ghRrYRL7YTqQtwH49Y2s9txkaY110KI=",
			integ: "XUVCGp4sBT0xWW7P33khIeLk+cE1E6PpqnKkDRM6G0w=",
			spi:   148844400, saltWant: 2155537864},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EncodeKey(tt.sa.EncryptionKey); got != tt.enc {
				t.Errorf("encryption key %s, want %s", got, tt.enc)
			}
			if got := EncodeKey(tt.sa.IntegrityKey); got != tt.integ {
				t.Errorf("integrity key %s, want %s", got, tt.integ)
			}
			if tt.sa.SPI != tt.spi || tt.sa.Salt != tt.saltWant {
				t.Errorf("SPI %d salt %d, want %d %d", tt.sa.SPI, tt.sa.Salt, tt.spi, tt.saltWant)
			}
		})
	}
}

func FuzzFromMechanism(f *testing.F) {
	f.Add(cls.REMOTE, Type, "10.0.0.1", "10.0.0.2", "4500", "0", keyA, keyB, "1400", "x", "y")
	f.Add(cls.REMOTE, Type, "2001:db8::1", "", "", "", keyA, "", "", "", "")
	f.Add(cls.REMOTE, Type, "1.2.3.4", "1.2.3.5", "-1", "1", keyA, keyA, "0", "dst_public_key", "")
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
