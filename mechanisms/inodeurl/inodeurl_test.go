package inodeurl

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    URL
		wantErr bool
	}{
		{name: "proc netns", in: "file:///proc/1234/ns/net", want: URL{Path: "/proc/1234/ns/net"}},
		{name: "run netns", in: "file:///run/netns/blue", want: URL{Path: "/run/netns/blue"}},
		{name: "percent-encoded space", in: "file:///run/netns/a%20b", want: URL{Path: "/run/netns/a b"}},
		{name: "upper-case scheme", in: "FILE:///x", want: URL{Path: "/x"}},
		{name: "inode", in: "inode://4/4026531992", want: URL{Dev: 4, Ino: 4026531992}},
		{name: "inode dev 0", in: "inode://0/12", want: URL{Ino: 12}},
		{name: "empty", in: "", wantErr: true},
		{name: "no scheme", in: "/proc/1/ns/net", wantErr: true},
		{name: "other scheme", in: "unix:///run/x.sock", wantErr: true},
		{name: "relative path", in: "file://proc/1/ns/net", wantErr: true},
		{name: "host", in: "file://localhost/proc/1/ns/net", wantErr: true},
		{name: "unclean path", in: "file:///proc/1/../1/ns/net", wantErr: true},
		{name: "trailing slash", in: "file:///proc/1/ns/", wantErr: true},
		{name: "double slash", in: "file:////proc", wantErr: true},
		{name: "query", in: "file:///proc/1/ns/net?x=1", wantErr: true},
		{name: "empty query", in: "file:///proc/1/ns/net?", wantErr: true},
		{name: "fragment", in: "file:///proc/1/ns/net#x", wantErr: true},
		{name: "NUL", in: "file:///a%00b", wantErr: true},
		{name: "bad UTF-8", in: "file:///a%ff", wantErr: true},
		{name: "bad escape", in: "file:///a%zz", wantErr: true},
		{name: "inode without ino", in: "inode://4", wantErr: true},
		{name: "inode ino 0", in: "inode://4/0", wantErr: true},
		{name: "inode non-numeric", in: "inode://a/1", wantErr: true},
		{name: "inode with port", in: "inode://4:5/1", wantErr: true},
		{name: "inode signed", in: "inode://4/+1", wantErr: true},
		{name: "inode extra path", in: "inode://4/1/2", wantErr: true},
		{name: "inode overflow", in: "inode://4/18446744073709551616", wantErr: true},
		{name: "inode user", in: "inode://u@4/1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want an error", tt.in, got)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", tt.in, err)
				}
				if Reason(err) == "" {
					t.Fatalf("Parse(%q) error %v has no reason", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			back, err := Parse(got.String())
			if err != nil || back != got {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   URL
		want string
	}{
		{name: "file", in: File("/proc/1/ns/net"), want: "file:///proc/1/ns/net"},
		{name: "file with space", in: File("/a b"), want: "file:///a%20b"},
		{name: "file with question mark", in: File("/a?b"), want: "file:///a%3Fb"},
		{name: "inode", in: Inode(4, 99), want: "inode://4/99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			if tt.in.IsInode() != (tt.in.Path == "") {
				t.Fatalf("IsInode() = %v for %+v", tt.in.IsInode(), tt.in)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"file:///proc/1/ns/net", "inode://4/4026531992", "file:///a%20b", "inode://0/1", "file:///", "FILE:///x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		back, err := Parse(u.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, renders %q which fails: %v", s, u, u.String(), err)
		}
		if back != u {
			t.Fatalf("Parse(%q) = %+v, re-parses as %+v", s, u, back)
		}
	})
}
