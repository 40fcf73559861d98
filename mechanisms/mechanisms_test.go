package mechanisms

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"

	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

const (
	keyA = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

func mk(cl, typ string, params map[string]string) *networkservice.Mechanism {
	return &networkservice.Mechanism{Cls: cl, Type: typ, Parameters: params}
}

func TestValidate(t *testing.T) {
	keyed := map[string]string{"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "src_public_key": keyA, "dst_public_key": keyB}
	keyedOffer := map[string]string{"src_ip": "10.0.0.1", "src_public_key": keyA}
	tests := []struct {
		name         string
		m            *networkservice.Mechanism
		wantErr      error // of Validate
		wantOfferErr error // of ValidateOffer
	}{
		{name: "kernel", m: mk(cls.LOCAL, "KERNEL", map[string]string{"name": "eth1", "inodeURL": "inode://4/5"})},
		{name: "kernel offer", m: mk(cls.LOCAL, "KERNEL", map[string]string{"inodeURL": "inode://4/5"}), wantErr: ErrMissingParameter},
		{name: "kernel REMOTE", m: mk(cls.REMOTE, "KERNEL", nil), wantErr: ErrWrongClass, wantOfferErr: ErrWrongClass},
		{name: "memif", m: mk(cls.LOCAL, "MEMIF", map[string]string{"socketfile": "s"})},
		{name: "memif offer", m: mk(cls.LOCAL, "MEMIF", nil), wantErr: ErrMissingParameter},
		{name: "memif REMOTE", m: mk(cls.REMOTE, "MEMIF", nil), wantErr: ErrWrongClass, wantOfferErr: ErrWrongClass},
		{name: "vxlan", m: mk(cls.REMOTE, "VXLAN", map[string]string{"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "vni": "9"})},
		{name: "vxlan offer", m: mk(cls.REMOTE, "VXLAN", map[string]string{"src_ip": "10.0.0.1", "vni": "9"}), wantErr: ErrMissingParameter},
		{name: "vxlan offer without VNI", m: mk(cls.REMOTE, "VXLAN", map[string]string{"src_ip": "10.0.0.1"}), wantErr: ErrMissingParameter, wantOfferErr: ErrMissingParameter},
		{name: "vxlan bad VNI", m: mk(cls.REMOTE, "VXLAN", map[string]string{"src_ip": "10.0.0.1", "vni": "99999999"}), wantErr: ErrInvalidParameter, wantOfferErr: ErrInvalidParameter},
		{name: "vxlan LOCAL", m: mk(cls.LOCAL, "VXLAN", nil), wantErr: ErrWrongClass, wantOfferErr: ErrWrongClass},
		{name: "wireguard", m: mk(cls.REMOTE, "WIREGUARD", keyed)},
		{name: "wireguard offer", m: mk(cls.REMOTE, "WIREGUARD", keyedOffer), wantErr: ErrMissingParameter},
		{name: "wireguard LOCAL", m: mk(cls.LOCAL, "WIREGUARD", keyed), wantErr: ErrWrongClass, wantOfferErr: ErrWrongClass},
		{name: "ipsec", m: mk(cls.REMOTE, "IPSEC", keyed)},
		{name: "ipsec offer", m: mk(cls.REMOTE, "IPSEC", keyedOffer), wantErr: ErrMissingParameter},
		{name: "ipsec LOCAL", m: mk(cls.LOCAL, "IPSEC", keyed), wantErr: ErrWrongClass, wantOfferErr: ErrWrongClass},
		{name: "nil", m: nil, wantErr: ErrWrongType, wantOfferErr: ErrWrongType},
		{name: "unknown", m: mk(cls.LOCAL, "VFIO", nil), wantErr: ErrUnknownMechanism, wantOfferErr: ErrUnknownMechanism},
		{name: "lower-case type", m: mk(cls.LOCAL, "kernel", nil), wantErr: ErrUnknownMechanism, wantOfferErr: ErrUnknownMechanism},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.m); !is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if err := ValidateOffer(tt.m); !is(err, tt.wantOfferErr) {
				t.Fatalf("ValidateOffer() = %v, want %v", err, tt.wantOfferErr)
			}
		})
	}
}

func is(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func TestUnknownMechanismMessage(t *testing.T) {
	err := Validate(mk(cls.LOCAL, "VFIO", nil))
	for _, s := range []string{`"VFIO"`, "KERNEL", "MEMIF", "VXLAN", "WIREGUARD", "IPSEC"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %s", err, s)
		}
	}
}

func TestParameterError(t *testing.T) {
	err := Validate(mk(cls.REMOTE, "VXLAN", map[string]string{"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "vni": "0x1"}))
	var pe *ParameterError
	if !errors.As(err, &pe) || pe.Mech != "vxlan" || pe.Key != "vni" || pe.Value != "0x1" || !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("Validate() = %v (%+v)", err, pe)
	}
	err = Validate(mk(cls.LOCAL, "MEMIF", nil))
	if !errors.As(err, &pe) || pe.Key != "socketfile" || !errors.Is(err, ErrMissingParameter) {
		t.Fatalf("Validate() = %v (%+v)", err, pe)
	}
}

func TestKnownAndIsRemote(t *testing.T) {
	tests := []struct {
		typ           string
		known, remote bool
	}{
		{typ: kernel.Type, known: true},
		{typ: memif.Type, known: true},
		{typ: vxlan.Type, known: true, remote: true},
		{typ: wireguard.Type, known: true, remote: true},
		{typ: ipsec.Type, known: true, remote: true},
		{typ: "SRV6"},
		{typ: "vxlan"},
		{typ: ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			if Known(tt.typ) != tt.known || IsRemote(tt.typ) != tt.remote {
				t.Fatalf("Known(%q) = %v, IsRemote = %v; want %v, %v", tt.typ, Known(tt.typ), IsRemote(tt.typ), tt.known, tt.remote)
			}
		})
	}
	types := Types()
	if !slices.Equal(types, []string{"KERNEL", "MEMIF", "VXLAN", "WIREGUARD", "IPSEC"}) {
		t.Fatalf("Types() = %v", types)
	}
	types[0] = "X"
	if Types()[0] != "KERNEL" {
		t.Fatal("Types() shares its slice")
	}
}
