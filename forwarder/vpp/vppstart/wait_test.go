package vppstart

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake VPP (VWIRE_FAKE_VPP=1): it binds its
// API socket, and listens on it only a while later, as a VPP busy starting
// does. The socket file exists from the bind.
func TestMain(m *testing.M) {
	if os.Getenv("VWIRE_FAKE_VPP") == "1" {
		fakeVPP()
		return
	}
	os.Exit(m.Run())
}

func fakeVPP() {
	var conf string
	for i, a := range os.Args {
		if a == "-c" && i+1 < len(os.Args) {
			conf = os.Args[i+1]
		}
	}
	f, err := os.Open(conf)
	if err != nil {
		os.Exit(2)
	}
	var sock string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "socket-name" && strings.HasSuffix(fields[1], "/api.sock") {
			sock = fields[1]
		}
	}
	f.Close()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil || sock == "" {
		os.Exit(2)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		os.Exit(2)
	}
	time.Sleep(500 * time.Millisecond) // bound, not yet listening
	if err := syscall.Listen(fd, 16); err != nil {
		os.Exit(2)
	}
	if os.Getenv("VWIRE_FAKE_VPP_ABORT") == "1" {
		fakeAbort(filepath.Join(filepath.Dir(sock), "vpp.log"))
	}
	for {
		nfd, _, err := syscall.Accept(fd)
		if err != nil {
			os.Exit(2)
		}
		syscall.Close(nfd)
	}
}

// TestStartWaitsUntilVPPListens: Start returns when VPP accepts
// connections on its API socket, not when the file appears (bind() makes
// it a moment before listen()). Connecting in between was refused, and a
// VPP integration test failed with "connect: connection refused".
func TestStartWaitsUntilVPPListens(t *testing.T) {
	p, dir := startFake(t)
	defer p.Stop(DefaultStopTimeout)
	c, err := net.Dial("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatalf("Start returned, and VPP's API socket refuses a connection: %v", err)
	}
	c.Close()
}

// startFake starts the test binary as a fake VPP (VWIRE_FAKE_VPP=1; the
// caller sets VWIRE_FAKE_VPP_ABORT first to have it abort) in a directory
// of its own, removed when the test ends (after the caller's deferred
// Stop).
func startFake(t *testing.T) (*Process, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("VWIRE_FAKE_VPP", "1")
	dir, err := os.MkdirTemp("/tmp", "vwvs") // short: the socket's path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, Config{Bin: self, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}
