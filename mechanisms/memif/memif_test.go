package memif

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
			name: "abstract",
			m:    mk(cls.LOCAL, Type, map[string]string{"socketfile": "memif-1", "inodeURL": "inode://4/99"}),
			want: Params{SocketFile: "memif-1", NetNSURL: "inode://4/99"},
		},
		{
			name: "file socket",
			m:    mk(cls.LOCAL, Type, map[string]string{"socketfile": "c1.sock"}),
			want: Params{SocketFile: "c1.sock"},
		},
		{
			name: "107-byte name",
			m:    mk(cls.LOCAL, Type, map[string]string{"socketfile": strings.Repeat("s", 107)}),
			want: Params{SocketFile: strings.Repeat("s", 107)},
		},
		{name: "nil", m: nil, wantErr: ErrWrongType},
		{name: "wrong type", m: mk(cls.LOCAL, "KERNEL", nil), wantErr: ErrWrongType},
		{name: "wrong class", m: mk(cls.REMOTE, Type, nil), wantErr: ErrWrongClass},
		{name: "offer with netns only", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "file:///proc/9/ns/net"}), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"socketfile"`},
		{name: "108-byte name", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": strings.Repeat("s", 108)}), wantErr: ErrInvalidParameter, wantInErr: "socketfile="},
		{name: "path in name", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "/run/x.sock"}), wantErr: ErrInvalidParameter},
		{name: "dot dot", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": ".."}), wantErr: ErrInvalidParameter},
		{name: "NUL", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "a\x00b"}), wantErr: ErrInvalidParameter},
		{name: "bad netns", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "a", "inodeURL": "inode://4/0"}), wantErr: ErrInvalidParameter, wantInErr: "inodeURL="},
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
			if got.IsAbstract() != (tt.want.NetNSURL != "") {
				t.Fatalf("IsAbstract() = %v", got.IsAbstract())
			}
			if back, err := FromMechanism(New(got)); err != nil || back != got {
				t.Fatalf("FromMechanism(New(%+v)) = %+v, %v", got, back, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	m := New(Params{SocketFile: "s", NetNSURL: "inode://1/2"})
	want := map[string]string{"socketfile": "s", "inodeURL": "inode://1/2"}
	if m.GetCls() != cls.LOCAL || m.GetType() != "MEMIF" || !maps.Equal(m.GetParameters(), want) {
		t.Fatalf("New() = %v", m)
	}
}

func TestSocketPath(t *testing.T) {
	tests := []struct {
		name    string
		p       Params
		dir     string
		want    string
		wantErr bool
	}{
		{name: "joined", p: Params{SocketFile: "c1.sock"}, dir: "/run/vwire/memif", want: "/run/vwire/memif/c1.sock"},
		{name: "dir with trailing slash", p: Params{SocketFile: "c1"}, dir: "/run/", want: "/run/c1"},
		{name: "exactly 107 bytes", p: Params{SocketFile: strings.Repeat("s", 100)}, dir: "/run/x", want: "/run/x/" + strings.Repeat("s", 100)},
		{name: "108 bytes", p: Params{SocketFile: strings.Repeat("s", 101)}, dir: "/run/x", wantErr: true},
		{name: "relative dir", p: Params{SocketFile: "c1"}, dir: "run", wantErr: true},
		{name: "no socket file", p: Params{}, dir: "/run", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.SocketPath(tt.dir)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("SocketPath(%q) = %q, %v; want %q, error %v", tt.dir, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDefaultSocketFile(t *testing.T) {
	a, b := DefaultSocketFile("conn-1"), DefaultSocketFile("conn-2")
	if a == b || a != DefaultSocketFile("conn-1") {
		t.Fatalf("DefaultSocketFile: %q, %q", a, b)
	}
	if err := (Params{SocketFile: a}).Validate(); err != nil {
		t.Fatalf("DefaultSocketFile() = %q: %v", a, err)
	}
	if want := "memif-b367bf881dc31d7d"; a != want {
		t.Fatalf("DefaultSocketFile(%q) = %q, want %q", "conn-1", a, want)
	}
}

func FuzzFromMechanism(f *testing.F) {
	f.Add(cls.LOCAL, Type, "memif-1", "inode://4/1", "x", "y")
	f.Add(cls.LOCAL, Type, "", "file:///proc/1/ns/net", "", "")
	f.Add(cls.LOCAL, Type, "a/b", "", "socketfile", "c")
	f.Fuzz(func(t *testing.T, cl, typ, socket, netns, k, v string) {
		params := map[string]string{"socketfile": socket, "inodeURL": netns}
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
