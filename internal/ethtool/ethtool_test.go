package ethtool

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inFreshNetNS runs fn on a locked OS thread moved into a new network
// namespace of its own; the thread ends with it, and so does the namespace.
func inFreshNetNS(t *testing.T, fn func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and a veth")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestTxChecksum(t *testing.T) {
	inFreshNetNS(t, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ethtool-a"}, PeerName: "ethtool-b"}); err != nil {
			return err
		}
		for _, want := range []bool{false, true, false} {
			if err := SetTxChecksum("ethtool-a", want); err != nil {
				return err
			}
			got, err := TxChecksum("ethtool-a")
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("tx checksum %v after setting it %v", got, want)
			}
		}
		if on, err := TxChecksum("ethtool-b"); err != nil || !on {
			t.Errorf("the peer's tx checksum: %v, %v; want it left on", on, err)
		}
		return nil
	})
}

func TestBadDevice(t *testing.T) {
	inFreshNetNS(t, func() error {
		if err := SetTxChecksum("no-such-dev", false); !errors.Is(err, unix.ENODEV) {
			t.Errorf("missing device: %v, want ENODEV", err)
		}
		if err := SetTxChecksum("a-name-far-too-long", false); err == nil {
			t.Error("a name of 19 bytes was taken")
		}
		return nil
	})
}
