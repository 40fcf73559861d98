package kernel

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
)

func mk(cl, typ string, params map[string]string) *networkservice.Mechanism {
	return &networkservice.Mechanism{Cls: cl, Type: typ, Parameters: params}
}

func TestFromMechanism(t *testing.T) {
	tests := []struct {
		name      string
		m         *networkservice.Mechanism
		want      Params
		wantErr   error
		offerOK   bool // FromOffer accepts it although FromMechanism does not
		wantInErr string
	}{
		{
			name: "complete",
			m:    mk(cls.LOCAL, Type, map[string]string{"name": "nsm-1", "inodeURL": "file:///proc/1/ns/net", "MTU": "1450"}),
			want: Params{Name: "nsm-1", NetNSURL: "file:///proc/1/ns/net", MTU: 1450},
		},
		{
			name: "inode URL, 15-byte name, unknown parameter ignored",
			m:    mk(cls.LOCAL, Type, map[string]string{"name": "abcdefghijklmno", "inodeURL": "inode://4/1234", "pciAddress": "0000:01:00.0"}),
			want: Params{Name: "abcdefghijklmno", NetNSURL: "inode://4/1234"},
		},
		{name: "nil", m: nil, wantErr: ErrWrongType},
		{name: "wrong type", m: mk(cls.LOCAL, "MEMIF", nil), wantErr: ErrWrongType, wantInErr: `"MEMIF"`},
		{name: "wrong class", m: mk(cls.REMOTE, Type, nil), wantErr: ErrWrongClass, wantInErr: "REMOTE"},
		{name: "empty offer", m: mk(cls.LOCAL, Type, nil), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"name"`},
		{name: "no netns", m: mk(cls.LOCAL, Type, map[string]string{"name": "eth1"}), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"inodeURL"`},
		{name: "name too long", m: mk(cls.LOCAL, Type, map[string]string{"name": "abcdefghijklmnop", "inodeURL": "inode://4/1"}), wantErr: ErrInvalidParameter, wantInErr: "name="},
		{name: "name with slash", m: mk(cls.LOCAL, Type, map[string]string{"name": "a/b"}), wantErr: ErrInvalidParameter},
		{name: "name with space", m: mk(cls.LOCAL, Type, map[string]string{"name": "a b"}), wantErr: ErrInvalidParameter},
		{name: "name with tab", m: mk(cls.LOCAL, Type, map[string]string{"name": "a\tb"}), wantErr: ErrInvalidParameter},
		{name: "name with colon", m: mk(cls.LOCAL, Type, map[string]string{"name": "eth0:1"}), wantErr: ErrInvalidParameter},
		{name: "name dot", m: mk(cls.LOCAL, Type, map[string]string{"name": "."}), wantErr: ErrInvalidParameter},
		{name: "name dot dot", m: mk(cls.LOCAL, Type, map[string]string{"name": ".."}), wantErr: ErrInvalidParameter},
		{name: "name bad UTF-8", m: mk(cls.LOCAL, Type, map[string]string{"name": "a\xffb"}), wantErr: ErrInvalidParameter},
		{name: "relative netns", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "file://proc/1/ns/net"}), wantErr: ErrInvalidParameter, wantInErr: "inodeURL="},
		{name: "inode netns not numeric", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "inode://x/1"}), wantErr: ErrInvalidParameter},
		{name: "netns plain path", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "/proc/1/ns/net"}), wantErr: ErrInvalidParameter},
		{name: "MTU not a number", m: mk(cls.LOCAL, Type, map[string]string{"MTU": "big"}), wantErr: ErrInvalidParameter, wantInErr: "MTU="},
		{name: "MTU too small", m: mk(cls.LOCAL, Type, map[string]string{"MTU": "67"}), wantErr: ErrInvalidParameter},
		{name: "MTU too big", m: mk(cls.LOCAL, Type, map[string]string{"MTU": "65536"}), wantErr: ErrInvalidParameter},
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
		{name: "empty", p: Params{}, want: map[string]string{}},
		{name: "all", p: Params{Name: "eth1", NetNSURL: "inode://1/2", MTU: 9000},
			want: map[string]string{"name": "eth1", "inodeURL": "inode://1/2", "MTU": "9000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.p)
			if m.GetCls() != cls.LOCAL || m.GetType() != "KERNEL" {
				t.Fatalf("New() class/type = %s/%s", m.GetCls(), m.GetType())
			}
			if !maps.Equal(m.GetParameters(), tt.want) {
				t.Fatalf("New() parameters = %v, want %v", m.GetParameters(), tt.want)
			}
		})
	}
}

func TestNetNS(t *testing.T) {
	u, err := Params{NetNSURL: "inode://7/8"}.NetNS()
	if err != nil || !u.IsInode() || u.Dev != 7 || u.Ino != 8 {
		t.Fatalf("NetNS() = %+v, %v", u, err)
	}
	if _, err := (Params{NetNSURL: "inode://7"}).NetNS(); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("NetNS() of a bad URL: %v", err)
	}
}

func TestDefaultName(t *testing.T) {
	tests := []struct {
		name   string
		connID string
	}{
		{name: "uuid", connID: "4f1b9d5e-7c1a-4c53-9a4e-0cbb1f5a0e11"},
		{name: "empty", connID: ""},
		{name: "long", connID: strings.Repeat("x", 1000)},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultName(tt.connID)
			if got != DefaultName(tt.connID) {
				t.Fatalf("DefaultName(%q) is not stable", tt.connID)
			}
			if len(got) != 11 || !strings.HasPrefix(got, "nsm") {
				t.Fatalf("DefaultName(%q) = %q, want nsm + 8 hex digits", tt.connID, got)
			}
			if err := CheckName(got, true); err != nil {
				t.Fatalf("DefaultName(%q) = %q is not a valid name: %v", tt.connID, got, err)
			}
			if other, dup := seen[got]; dup {
				t.Fatalf("DefaultName(%q) = DefaultName(%q) = %q", tt.connID, other, got)
			}
			seen[got] = tt.connID
		})
	}
	// Pinned, so that a forwarder finds the interfaces an older version made.
	if got, want := DefaultName("conn-1"), "nsmb367bf88"; got != want {
		t.Fatalf("DefaultName(%q) = %q, want %q", "conn-1", got, want)
	}
}

func FuzzFromMechanism(f *testing.F) {
	f.Add(cls.LOCAL, Type, "nsm-1", "file:///proc/1/ns/net", "1500", "tokenID", "x")
	f.Add(cls.LOCAL, Type, "", "inode://4/1", "", "", "")
	f.Add(cls.LOCAL, Type, "a b", "file://x", "0", "name", "eth0")
	f.Add(cls.REMOTE, "KERNEL", "eth0", "", "9000", "MTU", "1")
	f.Fuzz(func(t *testing.T, cl, typ, name, netns, mtu, k, v string) {
		params := map[string]string{"name": name, "inodeURL": netns, "MTU": mtu}
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
