// Package tcbpf is the Linux half of vwire's KERNEL trunk
// (forwarder/vpp/trunk.go): it passes one veth's frames to and from one
// VLAN of a trunk link with two tc programs of a dozen instructions each,
// so that it needs neither 802.1Q devices nor a VLAN-filtering bridge
// (kernels built without them, such as this CI's):
//
//   - on the ingress of a vWire's host veth end (what its workload sends):
//     push the vWire's VLAN tag and redirect to the trunk, out to VPP;
//   - on the ingress of the trunk's Linux end (what VPP sends), one filter
//     per vWire, handle = VLAN: a frame of that VLAN has its tag popped and
//     is redirected out of the vWire's host veth end, to its workload;
//     any other frame goes on to the next filter (a frame of no vWire's
//     VLAN is dropped by the trunk end, which has no address).
//
// The kernel has taken an 802.1Q tag off into the skb's metadata before tc
// sees the frame (skb_vlan_untag), and bpf_skb_vlan_push puts it there: the
// trunk's veth carries it as metadata and af_packet hands it to VPP, which
// puts it back in the frame.
//
// forwarder/vpp joins its vWires' veths to its trunk with it, and `vwire
// bench dataplane` its hand-made baseline of the same objects.
package tcbpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MaxVLAN is the highest VLAN id.
const MaxVLAN = 4094

// eBPF encoding (linux/bpf.h, linux/bpf_common.h).
const (
	bpfProgLoad       = 5 // BPF_PROG_LOAD
	bpfProgTypeSchedC = 3 // BPF_PROG_TYPE_SCHED_CLS

	opLdxMemW  = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	opMov64X   = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	opMov64K   = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	opAnd64K   = 0x57 // BPF_ALU64 | BPF_AND | BPF_K
	opJeqK     = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	opJneK     = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	opCall     = 0x85 // BPF_JMP | BPF_CALL
	opExit     = 0x95 // BPF_JMP | BPF_EXIT
	fnVlanPush = 18   // bpf_skb_vlan_push
	fnVlanPop  = 19   // bpf_skb_vlan_pop
	fnRedirect = 23   // bpf_redirect

	skbVlanPresent = 20 // offsetof(struct __sk_buff, vlan_present)
	skbVlanTCI     = 24 // offsetof(struct __sk_buff, vlan_tci)

	tcActUnspec = -1 // TC_ACT_UNSPEC: next filter
	tcActShot   = 2  // TC_ACT_SHOT: drop
)

// Insn is one eBPF instruction.
type Insn struct {
	op       uint8
	dst, src uint8
	off      int16
	imm      int32
}

func (i Insn) encode(b []byte) {
	b[0] = i.op
	b[1] = i.dst&0xf | i.src<<4
	binary.LittleEndian.PutUint16(b[2:], uint16(i.off))
	binary.LittleEndian.PutUint32(b[4:], uint32(i.imm))
}

// PushProg tags a frame with vlan and redirects it out of the trunk
// (ifindex trunk).
func PushProg(vlan uint16, trunk int) []Insn {
	return []Insn{
		{op: opMov64X, dst: 6, src: 1},            // r6 = skb
		{op: opMov64K, dst: 2, imm: 0x0081},       // r2 = htons(ETH_P_8021Q)
		{op: opMov64K, dst: 3, imm: int32(vlan)},  // r3 = vlan
		{op: opCall, imm: fnVlanPush},             // bpf_skb_vlan_push(skb, proto, vlan)
		{op: opJneK, dst: 0, off: 4, imm: 0},      // failed: drop
		{op: opMov64K, dst: 1, imm: int32(trunk)}, // r1 = trunk
		{op: opMov64K, dst: 2, imm: 0},            // r2 = 0 (egress)
		{op: opCall, imm: fnRedirect},             // return bpf_redirect(trunk, 0)
		{op: opExit},                              //
		{op: opMov64K, dst: 0, imm: tcActShot},    // drop:
		{op: opExit},                              //
	}
}

// PopProg takes the frames of vlan: pops the tag and redirects them out of
// the host veth end (ifindex host); other frames go to the next filter.
func PopProg(vlan uint16, host int) []Insn {
	return []Insn{
		{op: opMov64X, dst: 6, src: 1},                       // r6 = skb
		{op: opLdxMemW, dst: 2, src: 6, off: skbVlanPresent}, // r2 = skb->vlan_present
		{op: opJeqK, dst: 2, off: 10, imm: 0},                // untagged: next
		{op: opLdxMemW, dst: 2, src: 6, off: skbVlanTCI},     // r2 = skb->vlan_tci
		{op: opAnd64K, dst: 2, imm: 0xfff},                   // r2 &= VLAN_VID_MASK
		{op: opJneK, dst: 2, off: 7, imm: int32(vlan)},       // another VLAN: next
		{op: opMov64X, dst: 1, src: 6},                       // r1 = skb
		{op: opCall, imm: fnVlanPop},                         // bpf_skb_vlan_pop(skb)
		{op: opJneK, dst: 0, off: 6, imm: 0},                 // failed: drop
		{op: opMov64K, dst: 1, imm: int32(host)},             // r1 = host
		{op: opMov64K, dst: 2, imm: 0},                       // r2 = 0 (egress)
		{op: opCall, imm: fnRedirect},                        // return bpf_redirect(host, 0)
		{op: opExit},                                         //
		{op: opMov64K, dst: 0, imm: tcActUnspec},             // next:
		{op: opExit},                                         //
		{op: opMov64K, dst: 0, imm: tcActShot},               // drop:
		{op: opExit},                                         //
	}
}

// progLoadAttr is union bpf_attr for BPF_PROG_LOAD, up to prog_name. Its
// pointers are Go pointers, so the garbage collector keeps what they point
// to, and moves them with it, until the syscall returns.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       unsafe.Pointer
	license     unsafe.Pointer
	logLevel    uint32
	logSize     uint32
	logBuf      unsafe.Pointer
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

// maxProgLoadAttempts bounds BPF_PROG_LOAD calls the verifier cut short
// because a signal came (EAGAIN); our programs take it a few microseconds.
const maxProgLoadAttempts = 20

// Load loads a tc (sched_cls) program and returns its descriptor.
func Load(name string, insns []Insn) (int, error) {
	if len(insns) == 0 {
		return -1, fmt.Errorf("load tc program %s: no instructions", name)
	}
	code := make([]byte, 8*len(insns))
	for i, in := range insns {
		in.encode(code[8*i:])
	}
	license := []byte("MIT\x00")
	logBuf := make([]byte, 4096)
	attr := progLoadAttr{
		progType: bpfProgTypeSchedC,
		insnCnt:  uint32(len(insns)),
		insns:    unsafe.Pointer(&code[0]),
		license:  unsafe.Pointer(&license[0]),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   unsafe.Pointer(&logBuf[0]),
	}
	// The kernel takes letters, digits, '_' and '.' in a program's name.
	for i := 0; i < len(name) && i < 15; i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.') {
			c = '_'
		}
		attr.progName[i] = c
	}
	// The verifier gives up with EAGAIN when a signal is pending, and Go's
	// runtime signals its threads (SIGURG, for preemption) at any time:
	// like EINTR, that asks for the call again.
	var fd uintptr
	var errno unix.Errno
	for range maxProgLoadAttempts {
		fd, _, errno = unix.Syscall(unix.SYS_BPF, bpfProgLoad, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != unix.EAGAIN {
			break
		}
	}
	runtime.KeepAlive(&attr)
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		return -1, fmt.Errorf("load tc program %s: %w: %s", name, errno, cString(logBuf))
	}
	return int(fd), nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// AddClsact gives l a clsact qdisc, for ingress filters (replacing one
// there).
func AddClsact(nl *netlink.Handle, l netlink.Link) error {
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := nl.QdiscReplace(q); err != nil {
		return fmt.Errorf("clsact on %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// Attach loads prog and attaches it to l's ingress (a clsact qdisc made as
// needed) as the filter of handle, named name, replacing one there.
func Attach(nl *netlink.Handle, l netlink.Link, handle uint32, name string, prog []Insn) error {
	if err := AddClsact(nl, l); err != nil {
		return err
	}
	fd, err := Load(name, prog)
	if err != nil {
		return err
	}
	defer unix.Close(fd) // the filter holds the program
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: handle, Priority: 1, Protocol: unix.ETH_P_ALL}, Fd: fd, Name: name, DirectAction: true}
	if err := nl.FilterReplace(f); err != nil {
		return fmt.Errorf("tc filter %d on %s: %w", handle, l.Attrs().Name, err)
	}
	return nil
}

// Join joins host (a veth end) to trunk in vlan: the push program on
// host's ingress, the pop program on trunk's as the filter of handle vlan,
// both named name (how a trunk's filters are told apart).
func Join(nl *netlink.Handle, host, trunk netlink.Link, vlan uint16, name string) error {
	if vlan < 1 || vlan > MaxVLAN {
		return fmt.Errorf("join %s to trunk %s: VLAN %d: want 1 to %d", host.Attrs().Name, trunk.Attrs().Name, vlan, MaxVLAN)
	}
	if err := Attach(nl, host, 1, name, PushProg(vlan, trunk.Attrs().Index)); err != nil {
		return err
	}
	return Attach(nl, trunk, uint32(vlan), name, PopProg(vlan, host.Attrs().Index))
}

// Leave removes trunk's filter of vlan; a missing one is not an error.
func Leave(nl *netlink.Handle, trunk netlink.Link, vlan uint16) error {
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: trunk.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: uint32(vlan), Priority: 1, Protocol: unix.ETH_P_ALL}}
	if err := nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("trunk %s: remove VLAN %d: %w", trunk.Attrs().Name, vlan, err)
	}
	return nil
}

// Filters returns the VLAN of each pop filter on trunk, by the filter's
// name.
func Filters(nl *netlink.Handle, trunk netlink.Link) (map[string]uint16, error) {
	fs, err := nl.FilterList(trunk, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: filters: %w", trunk.Attrs().Name, err)
	}
	out := map[string]uint16{}
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && b.Handle >= 1 && b.Handle <= MaxVLAN {
			out[b.Name] = uint16(b.Handle)
		}
	}
	return out, nil
}
