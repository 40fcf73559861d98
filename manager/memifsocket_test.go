package manager

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"

	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// TestSocketFileReply: a memif socket file the forwarder made for a client
// (NSM's FS-socket form) is answered as inode://<dev>/<ino> with a
// descriptor that reaches the same socket; other mechanisms are left alone.
func TestSocketFileReply(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "memif.sock")
	l, err := net.Listen("unixpacket", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()

	f, u, err := socketFile(nsmmemif.New(sock))
	if err != nil || f == nil {
		t.Fatalf("socketFile(%s) = %v, %q, %v", sock, f, u, err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if want := inodeurl.Inode(st.Dev, st.Ino).String(); u != want {
		t.Fatalf("URL %q, want %q", u, want)
	}
	// What the receiver does with the descriptor: connect through
	// /proc/<pid>/fd/<n>.
	c, err := net.Dial("unixpacket", "/proc/self/fd/"+strconv.Itoa(int(f.Fd())))
	if err != nil {
		t.Fatalf("connect through the descriptor: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*networkservice.Mechanism{
		nsmmemif.New(plain), // not a socket
		{Cls: "LOCAL", Type: nsmmemif.MECHANISM, Parameters: map[string]string{nsmmemif.SocketFilename: "@x", common.InodeURL: "file://" + sock}},
		kernel.New("/proc/self/ns/net"),
		nsmmemif.New(""),
	} {
		if f, u, err := socketFile(m); f != nil || u != "" || err != nil {
			t.Errorf("socketFile(%v) = %v, %q, %v; want nothing", m, f, u, err)
		}
	}
	if _, _, err := socketFile(nsmmemif.New(filepath.Join(dir, "gone"))); err == nil {
		t.Error("a socket file that is not there: no error")
	}
}
