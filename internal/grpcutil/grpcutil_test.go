package grpcutil

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    Addr
		wantErr string
	}{
		{in: "localhost:5002", want: Addr{"tcp", "localhost:5002"}},
		{in: ":5002", want: Addr{"tcp", ":5002"}},
		{in: "tcp://10.0.0.1:5002", want: Addr{"tcp", "10.0.0.1:5002"}},
		{in: "[::1]:5002", want: Addr{"tcp", "[::1]:5002"}},
		{in: "unix:///var/lib/networkservicemesh/nsm.io.sock", want: Addr{"unix", "/var/lib/networkservicemesh/nsm.io.sock"}},
		{in: "/run/x.sock", want: Addr{"unix", "/run/x.sock"}},
		{in: "", wantErr: "empty"},
		{in: "unix://relative.sock", wantErr: "absolute"},
		{in: "http://x:1", wantErr: "want host:port"},
		{in: "localhost", wantErr: "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sub", "s.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	// A live listener on the path is not stolen.
	if _, err := Listen("unix://" + sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second listen: %v", err)
	}
	// Closing a unix listener removes the file, but a crashed process leaves
	// it: simulate that with a listener whose file is kept.
	l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l2.Close()
}
