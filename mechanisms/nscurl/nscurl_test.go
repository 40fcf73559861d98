package nscurl

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      Request
		canonical string // String() of the result; "" means in itself
		wantErr   error
		wantInErr string
	}{
		{name: "kernel with interface", in: "kernel://icmp-responder/nsm-1",
			want: Request{NetworkService: "icmp-responder", Mechanism: kernel.Type, InterfaceName: "nsm-1"}},
		{name: "domain and labels", in: "kernel://icmp-responder@cluster2.example.org/eth1?app=web&zone=a",
			want: Request{NetworkService: "icmp-responder@cluster2.example.org", Mechanism: kernel.Type, InterfaceName: "eth1", Labels: map[string]string{"app": "web", "zone": "a"}}},
		{name: "no interface", in: "kernel://svc",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type}},
		{name: "trailing slash", in: "kernel://svc/", canonical: "kernel://svc",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type}},
		{name: "labels without interface", in: "kernel://svc?app=x",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, Labels: map[string]string{"app": "x"}}},
		{name: "repeated label, last wins", in: "kernel://svc?app=x&app=y", canonical: "kernel://svc?app=y",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, Labels: map[string]string{"app": "y"}}},
		{name: "labels sorted, empty pairs and values", in: "kernel://svc?z=1&&a&", canonical: "kernel://svc?a=&z=1",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, Labels: map[string]string{"a": "", "z": "1"}}},
		{name: "empty query", in: "kernel://svc/eth0?", canonical: "kernel://svc/eth0",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, InterfaceName: "eth0"}},
		{name: "prefixed label key", in: "kernel://svc?app.kubernetes.io/name=web", canonical: "kernel://svc?app.kubernetes.io%2Fname=web",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, Labels: map[string]string{"app.kubernetes.io/name": "web"}}},
		{name: "percent-encoded", in: "kernel://sv%63/eth%30?a%70p=w%65b", canonical: "kernel://svc/eth0?app=web",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, InterfaceName: "eth0", Labels: map[string]string{"app": "web"}}},
		{name: "upper-case scheme", in: "KERNEL://svc/eth0", canonical: "kernel://svc/eth0",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, InterfaceName: "eth0"}},
		{name: "15-byte interface", in: "kernel://svc/abcdefghijklmno",
			want: Request{NetworkService: "svc", Mechanism: kernel.Type, InterfaceName: "abcdefghijklmno"}},
		{name: "memif", in: "memif://vpp-endpoint/memif-socket-of-a-rather-long-name.sock?x=1",
			want: Request{NetworkService: "vpp-endpoint", Mechanism: memif.Type, InterfaceName: "memif-socket-of-a-rather-long-name.sock", Labels: map[string]string{"x": "1"}}},
		{name: "no scheme", in: "icmp-responder", wantErr: ErrInvalid},
		{name: "unknown scheme", in: "vfio://svc/x", wantErr: ErrUnknownScheme, wantInErr: `"vfio"`},
		{name: "empty scheme", in: "://svc", wantErr: ErrUnknownScheme},
		{name: "empty service", in: "kernel:///eth0", wantErr: ErrInvalid, wantInErr: "service name"},
		{name: "nothing after scheme", in: "kernel://", wantErr: ErrInvalid},
		{name: "empty service before domain", in: "kernel://@example.org/eth0", wantErr: ErrInvalid},
		{name: "empty domain", in: "kernel://svc@/eth0", wantErr: ErrInvalid},
		{name: "two at signs", in: "kernel://a@b@c/eth0", wantErr: ErrInvalid},
		{name: "encoded at sign", in: "kernel://a%40b@c/eth0", wantErr: ErrInvalid},
		{name: "bad service character", in: "kernel://my service/eth0", wantErr: ErrInvalid},
		{name: "interface name 16 bytes", in: "kernel://svc/abcdefghijklmnop", wantErr: ErrInvalid, wantInErr: "interface name"},
		{name: "interface with slash", in: "kernel://svc/a/b", wantErr: ErrInvalid},
		{name: "interface with encoded slash", in: "kernel://svc/a%2Fb", wantErr: ErrInvalid},
		{name: "interface dot dot", in: "kernel://svc/..", wantErr: ErrInvalid},
		{name: "memif socket 108 bytes", in: "memif://svc/" + strings.Repeat("s", 108), wantErr: ErrInvalid, wantInErr: "socket file"},
		{name: "bad percent-encoding in service", in: "kernel://sv%zz/eth0", wantErr: ErrInvalid, wantInErr: "percent-encoding"},
		{name: "bad percent-encoding in interface", in: "kernel://svc/eth%", wantErr: ErrInvalid, wantInErr: "percent-encoding"},
		{name: "bad percent-encoding in label", in: "kernel://svc?a=%g0", wantErr: ErrInvalid, wantInErr: "percent-encoding"},
		{name: "empty label key", in: "kernel://svc?=x", wantErr: ErrInvalid},
		{name: "bad label value", in: "kernel://svc?a=b%20c", wantErr: ErrInvalid},
		{name: "fragment", in: "kernel://svc/eth0#x", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error wrapping %v", tt.in, got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("Parse(%q) error %q does not mention %q", tt.in, err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !equal(got, tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			canonical := tt.canonical
			if canonical == "" {
				canonical = tt.in
			}
			if s := got.String(); s != canonical {
				t.Fatalf("String() = %q, want %q", s, canonical)
			}
			if back, err := Parse(got.String()); err != nil || !equal(back, got) {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		r       Request
		wantErr error
	}{
		{name: "ok", r: Request{NetworkService: "svc", Mechanism: kernel.Type}},
		{name: "unknown mechanism", r: Request{NetworkService: "svc", Mechanism: "VXLAN"}, wantErr: ErrUnknownScheme},
		{name: "no service", r: Request{Mechanism: memif.Type}, wantErr: ErrInvalid},
		{name: "bad label key", r: Request{NetworkService: "svc", Mechanism: kernel.Type, Labels: map[string]string{"-a": "b"}}, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.r.Validate(); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMechanismPreference(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want map[string]string
		typ  string
	}{
		{name: "kernel", url: "kernel://svc/eth1", typ: kernel.Type, want: map[string]string{"name": "eth1", "inodeURL": "file:///proc/1/ns/net"}},
		{name: "kernel without name", url: "kernel://svc", typ: kernel.Type, want: map[string]string{"inodeURL": "file:///proc/1/ns/net"}},
		{name: "memif", url: "memif://svc/s1", typ: memif.Type, want: map[string]string{"socketfile": "s1", "inodeURL": "file:///proc/1/ns/net"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			m := r.MechanismPreference("file:///proc/1/ns/net")
			if m.GetType() != tt.typ || !maps.Equal(m.GetParameters(), tt.want) {
				t.Fatalf("MechanismPreference() = %v", m)
			}
		})
	}
}

func equal(a, b Request) bool {
	return a.NetworkService == b.NetworkService && a.Mechanism == b.Mechanism &&
		a.InterfaceName == b.InterfaceName && maps.Equal(a.Labels, b.Labels)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"kernel://icmp-responder/nsm-1",
		"kernel://icmp-responder@cluster2.example.org/eth1?app=web&zone=a",
		"memif://svc/sock?x=1&x=2",
		"kernel://sv%63/eth%30?a%70p=w%65b",
		"KERNEL://svc/?app.kubernetes.io/name=web&",
		"kernel://a@b@c/x",
		"vfio://x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownScheme) {
				t.Fatalf("Parse(%q) error %v wraps no sentinel", s, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Parse(%q) = %+v, which does not validate: %v", s, r, err)
		}
		back, err := Parse(r.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v renders %q, which fails: %v", s, r, r.String(), err)
		}
		if !equal(back, r) {
			t.Fatalf("Parse(%q) = %+v, re-parses as %+v", s, r, back)
		}
		if back.String() != r.String() {
			t.Fatalf("String() not canonical: %q then %q", r.String(), back.String())
		}
	})
}
