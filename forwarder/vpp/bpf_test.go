package vpp

import (
	"os"
	"testing"
	"unsafe"

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
	for _, vlan := range []uint16{1, maxVLAN} {
		for name, prog := range map[string][]bpfInsn{"push": pushProg(vlan, 1), "pop": popProg(vlan, 1)} {
			fd, err := loadTCProg("vwire-test-"+name, prog)
			if err != nil {
				t.Fatalf("%s VLAN %d: %v", name, vlan, err)
			}
			unix.Close(fd)
		}
	}
}
