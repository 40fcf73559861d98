// Package ethtool turns a network device's offloads on or off with the
// legacy ethtool ioctl, in the calling thread's network namespace (run it
// on a locked OS thread moved into the device's namespace when that is not
// the process's). The dataplanes use it where a peer cannot take what the
// kernel would otherwise pass along a veth: partial checksums and segments
// offloaded to a device that never segments them.
package ethtool

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h) that x/sys/unix does not name.
const (
	cmdGetTxChecksum = 0x16 // ETHTOOL_GTXCSUM
	cmdSetTxChecksum = 0x17 // ETHTOOL_STXCSUM
)

// SetTxChecksum turns the transmit checksum offload of device name on or
// off; off, the kernel drops the segmentation offloads that need it too,
// so that it fills in checksums and segments before the device.
func SetTxChecksum(name string, on bool) error {
	return set(name, cmdSetTxChecksum, "tx checksum", on)
}

// TxChecksum reports whether device name has transmit checksum offload on.
func TxChecksum(name string) (bool, error) {
	v, err := ioctl(name, cmdGetTxChecksum, 0)
	if err != nil {
		return false, fmt.Errorf("ethtool %s: get tx checksum: %w", name, err)
	}
	return v != 0, nil
}

func set(name string, cmd uint32, what string, on bool) error {
	var data uint32
	if on {
		data = 1
	}
	if _, err := ioctl(name, cmd, data); err != nil {
		return fmt.Errorf("ethtool %s: set %s %v: %w", name, what, on, err)
	}
	return nil
}

// ioctl runs one ethtool_value command on device name and returns the
// value the kernel left in it.
func ioctl(name string, cmd, data uint32) (uint32, error) {
	if len(name) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("name longer than %d bytes", unix.IFNAMSIZ-1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	value := struct{ cmd, data uint32 }{cmd: cmd, data: data}
	// struct ifreq: the name, then a pointer to the command in the union.
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&value)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&value)
	if errno != 0 {
		return 0, errno
	}
	return value.data, nil
}
