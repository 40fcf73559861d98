package kernel

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard implementations the kernel dataplane can use.
const (
	// WireGuardAuto uses the kernel's WireGuard where it has it, and
	// WireGuard in this process (userspace) where it has not.
	WireGuardAuto = "auto"
	// WireGuardKernel uses the kernel's only: none where it has none.
	WireGuardKernel = "kernel"
	// WireGuardUserspace runs WireGuard in this process even where the
	// kernel has it.
	WireGuardUserspace = "userspace"
	// WireGuardOff never offers or accepts WIREGUARD.
	WireGuardOff = "off"
)

// WireGuardModes lists the values Config.WireGuard takes.
var WireGuardModes = []string{WireGuardAuto, WireGuardKernel, WireGuardUserspace, WireGuardOff}

// wgDevices makes, reads and removes the WireGuard devices of vWire sides,
// each a link in the forwarder's namespace. Two implementations: wgKernel
// (the kernel's WireGuard, where it has it) and wgUser (wireguard-go on a
// TUN device, in this process).
type wgDevices interface {
	// Kind names the implementation in logs and metrics.
	Kind() string
	// Create makes the device name with alias and mtu, configured with
	// cfg and up. On error nothing is left.
	Create(name, alias string, mtu int, cfg wgtypes.Config) (netlink.Link, error)
	// Device reads back the configuration of the device name.
	Device(name string) (*wgtypes.Device, error)
	// Release lets go of what this process holds for the device name,
	// before its link is deleted like any other link of ours; nothing
	// when it holds nothing.
	Release(name string)
	// Close releases the implementation. The kernel's devices stay (their
	// vWires carry on); those of this process go with it.
	Close() error
}

// wgKernel is the kernel's WireGuard, configured over generic netlink.
type wgKernel struct {
	nl  *netlink.Handle
	ctl *wgctrl.Client
}

var _ wgDevices = (*wgKernel)(nil)

func (k *wgKernel) Kind() string { return WireGuardKernel }

func (k *wgKernel) Create(name, alias string, mtu int, cfg wgtypes.Config) (netlink.Link, error) {
	dev := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := k.nl.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("wireguard %s (port %d): create: %w", name, *cfg.ListenPort, err)
	}
	link, err := k.nl.LinkByName(name)
	if err == nil {
		err = k.nl.LinkSetAlias(link, alias)
	}
	if err == nil {
		if err = k.ctl.ConfigureDevice(name, cfg); err != nil {
			err = fmt.Errorf("configure: %w", err)
		}
	}
	if err == nil {
		err = k.nl.LinkSetUp(link)
	}
	if err != nil {
		_ = k.nl.LinkDel(dev)
		return nil, fmt.Errorf("wireguard %s: %w", name, err)
	}
	return link, nil
}

func (k *wgKernel) Device(name string) (*wgtypes.Device, error) { return k.ctl.Device(name) }

// Release does nothing: the kernel holds the device, which goes with its
// link.
func (k *wgKernel) Release(string) {}

func (k *wgKernel) Close() error { return k.ctl.Close() }
