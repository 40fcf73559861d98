package tcbpf

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestProgLoadAttrLayout: the struct is the kernel's union bpf_attr for
// BPF_PROG_LOAD, field for field.
func TestProgLoadAttrLayout(t *testing.T) {
	var a progLoadAttr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(a), 64},
		{"insns", unsafe.Offsetof(a.insns), 8},
		{"license", unsafe.Offsetof(a.license), 16},
		{"log_level", unsafe.Offsetof(a.logLevel), 24},
		{"log_buf", unsafe.Offsetof(a.logBuf), 32},
		{"kern_version", unsafe.Offsetof(a.kernVersion), 40},
		{"prog_name", unsafe.Offsetof(a.progName), 48},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestTCProgramsLoad: the kernel's verifier takes both trunk programs, for
// the lowest and the highest VLAN.
func TestTCProgramsLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs")
	}
	for _, vlan := range []uint16{1, MaxVLAN} {
		for name, prog := range map[string][]Insn{"push": PushProg(vlan, 1), "pop": PopProg(vlan, 1)} {
			fd, err := Load("vwire-test-"+name, prog)
			if err != nil {
				t.Fatalf("%s VLAN %d: %v", name, vlan, err)
			}
			unix.Close(fd)
		}
	}
}

// TestJoinLeave: Join puts the push filter on the host veth and the pop
// filter of the VLAN on the trunk, Filters finds it by name, Leave takes it
// off (twice is not an error), and a VLAN out of range is refused.
func TestJoinLeave(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and veths")
	}
	name := fmt.Sprintf("vwtcbpf%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	link := func(a, b string) netlink.Link {
		t.Helper()
		if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
			t.Fatalf("veth %s: %v", a, err)
		}
		l, err := nl.LinkByName(a)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	host, trunk := link("h1", "wl1"), link("trunk", "trunk-vpp")
	if err := Join(nl, host, trunk, MaxVLAN+1, "h1"); err == nil {
		t.Fatalf("Join with VLAN %d: no error", MaxVLAN+1)
	}
	if err := Join(nl, host, trunk, 7, "h1"); err != nil {
		t.Fatal(err)
	}
	got, err := Filters(nl, trunk)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["h1"] != 7 {
		t.Fatalf("trunk filters %v, want h1: 7", got)
	}
	hf, err := nl.FilterList(host, netlink.HANDLE_MIN_INGRESS)
	if err != nil || len(hf) != 1 {
		t.Fatalf("host filters %v (%v), want the push program", hf, err)
	}
	for range 2 {
		if err := Leave(nl, trunk, 7); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := Filters(nl, trunk); err != nil || len(got) != 0 {
		t.Fatalf("trunk filters after Leave: %v (%v), want none", got, err)
	}
}
