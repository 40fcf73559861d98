package nsc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestICMPProbe sends real echoes: in this process's namespace, and in a
// fresh one whose loopback is down (no reply), then up.
func TestICMPProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw ICMP sockets and namespaces need root")
	}
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	if err := icmpProbe(ctx, "", lo, 4242, 1, 2*time.Second); err != nil {
		t.Fatalf("own namespace: %v", err)
	}

	name := fmt.Sprintf("vwire-nsc-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add (as root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	err := icmpProbe(ctx, path, lo, 4242, 2, 200*time.Millisecond)
	if err == nil {
		t.Fatal("a reply through a loopback that is down")
	}
	t.Logf("loopback down: %v", err)
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	if err := icmpProbe(ctx, path, lo, 4242, 3, 2*time.Second); err != nil {
		t.Fatalf("in %s with loopback up: %v", name, err)
	}
	if err := icmpProbe(ctx, path, netip.MustParseAddr("::1"), 4242, 4, 2*time.Second); err != nil && !errors.Is(err, errNoReply) {
		t.Logf("ipv6 loopback: %v (not checked: IPv6 may be off)", err)
	}
}
