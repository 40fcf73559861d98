package memif

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
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
		{
			// NSM's abstract form as sdk-vpp's servers answer: '@', '/' inside.
			name: "NSM abstract",
			m:    mk(cls.LOCAL, Type, map[string]string{"socketfile": "@/tmp/memif/conn-1/memif.socket", "inodeURL": "inode://4/99"}),
			want: Params{SocketFile: "@/tmp/memif/conn-1/memif.socket", NetNSURL: "inode://4/99"},
		},
		{
			// NSM's FS-socket form: "inodeURL" is the socket file itself.
			name: "NSM socket file",
			m:    mk(cls.LOCAL, Type, map[string]string{"inodeURL": "file:///proc/7/fd/12"}),
			want: Params{SocketURL: "file:///proc/7/fd/12"},
		},
		{
			name: "NSM socket file passed by descriptor",
			m:    mk(cls.LOCAL, Type, map[string]string{"inodeURL": "inode://4/99"}),
			want: Params{SocketURL: "inode://4/99"},
		},
		{
			name: "108-byte abstract name after '@'",
			m:    mk(cls.LOCAL, Type, map[string]string{"socketfile": "@" + strings.Repeat("s", 107), "inodeURL": "inode://4/99"}),
			want: Params{SocketFile: "@" + strings.Repeat("s", 107), NetNSURL: "inode://4/99"},
		},
		{name: "offer with nothing", m: mk(cls.LOCAL, Type, nil), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"socketfile"`},
		{name: "file offer", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "file:"}), wantErr: ErrInvalidParameter, offerOK: true, wantInErr: "names no socket file"},
		{name: "NSM abstract without netns", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "@/tmp/x"}), wantErr: ErrMissingParameter, offerOK: true, wantInErr: `"inodeURL"`},
		{name: "only '@'", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "@", "inodeURL": "inode://4/99"}), wantErr: ErrInvalidParameter, wantInErr: "no name after it"},
		{name: "109 bytes with '@'", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "@" + strings.Repeat("s", 108), "inodeURL": "inode://4/99"}), wantErr: ErrInvalidParameter},
		{name: "space after '@'", m: mk(cls.LOCAL, Type, map[string]string{"socketfile": "@a b", "inodeURL": "inode://4/99"}), wantErr: ErrInvalidParameter},
		{name: "bad socket URL", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "file://relative"}), wantErr: ErrInvalidParameter, wantInErr: "inodeURL="},
		{name: "socket URL not a URL", m: mk(cls.LOCAL, Type, map[string]string{"inodeURL": "unix:///x"}), wantErr: ErrInvalidParameter, wantInErr: "inodeURL="},
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
			if (got.Form() == FormFile) != (tt.want.SocketURL != "") {
				t.Fatalf("Form() = %v", got.Form())
			}
			if back, err := FromMechanism(New(got)); err != nil || back != got {
				t.Fatalf("FromMechanism(New(%+v)) = %+v, %v", got, back, err)
			}
		})
	}
}

// TestOfferForms: without "socketfile", an offer's "inodeURL" is the
// client's namespace (sdk-vpp's memif client offers memif.NewAbstract), or
// FileOffer (memif.New("")) asking for a socket file.
func TestOfferForms(t *testing.T) {
	abstract := nsmmemif.NewAbstract("/proc/9/fd/4")
	p, err := FromOffer(abstract)
	if err != nil || p != (Params{NetNSURL: "file:///proc/9/fd/4"}) {
		t.Fatalf("FromOffer(NewAbstract) = %+v, %v", p, err)
	}
	p, err = FromOffer(nsmmemif.New(""))
	if err != nil || p != (Params{SocketURL: FileOffer}) {
		t.Fatalf("FromOffer(New(\"\")) = %+v, %v", p, err)
	}
	if got := New(p).GetParameters()["inodeURL"]; got != FileOffer {
		t.Fatalf("New(%+v) renders inodeURL %q", p, got)
	}
	// The complete mechanism NSM's FS-socket server answers with.
	p, err = FromMechanism(nsmmemif.New("/run/nse/memif.sock"))
	if err != nil || p.Form() != FormFile || !p.NamedByNSM() || p.IsAbstract() {
		t.Fatalf("FromMechanism(New(path)) = %+v, %v", p, err)
	}
	if u, err := p.Socket(); err != nil || u.Path != "/run/nse/memif.sock" {
		t.Fatalf("Socket() = %v, %v", u, err)
	}
	if _, err := FromOffer(mk(cls.LOCAL, Type, map[string]string{"inodeURL": "relative"})); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("an offer with a bad namespace URL: %v", err)
	}
}

func TestForms(t *testing.T) {
	tests := []struct {
		p        Params
		form     Form
		byNSM    bool
		abstract string
	}{
		{p: Params{SocketFile: "memif-1"}, form: FormSharedDir, abstract: "memif-1"},
		{p: Params{SocketFile: "memif-1", NetNSURL: "inode://1/2"}, form: FormAbstract, abstract: "memif-1"},
		{p: Params{SocketFile: "@/tmp/memif/x", NetNSURL: "inode://1/2"}, form: FormAbstract, byNSM: true, abstract: "/tmp/memif/x"},
		{p: Params{SocketURL: "inode://1/2"}, form: FormFile, byNSM: true},
	}
	for _, tt := range tests {
		if tt.p.Form() != tt.form || tt.p.NamedByNSM() != tt.byNSM || (tt.form != FormFile && tt.p.AbstractName() != tt.abstract) {
			t.Errorf("%+v: Form %v NamedByNSM %v AbstractName %q", tt.p, tt.p.Form(), tt.p.NamedByNSM(), tt.p.AbstractName())
		}
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
	f.Add(cls.LOCAL, Type, "@/tmp/memif/c/memif.socket", "inode://4/1", "", "")
	f.Add(cls.LOCAL, Type, "", "file:", "", "")
	f.Add(cls.LOCAL, Type, "", "inode://4/1", "", "")
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
