package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgUser runs WireGuard in this process (wireguard-go), for kernels
// without it: each device is a TUN device in the forwarder's namespace,
// named and aliased like the kernel device it stands for, whose packets
// wireguard-go encrypts and sends from UDP sockets in that namespace.
//
// The devices' state (keys, sessions) lives in this process: they go with
// it, and the kernel removes their TUN devices when it exits. A restarted
// forwarder makes them again from the next refreshes, with new keys.
//
// Everything that depends on the calling thread's namespace (the TUN
// device's creation and its MTU ioctl, the UDP sockets) runs through
// inNetNS, so wireguard-go's own goroutines, which may (re)open the sockets
// on any thread, still open them in the forwarder's namespace.
type wgUser struct {
	nl      *netlink.Handle
	inNetNS func(func() error) error
	log     *slog.Logger

	mu   sync.Mutex                // guards devs
	devs map[string]*device.Device // by link name
}

var _ wgDevices = (*wgUser)(nil)

func newWgUser(nl *netlink.Handle, inNetNS func(func() error) error, log *slog.Logger) *wgUser {
	return &wgUser{nl: nl, inNetNS: inNetNS, log: log, devs: map[string]*device.Device{}}
}

func (u *wgUser) Kind() string { return WireGuardUserspace }

func (u *wgUser) Create(name, alias string, mtu int, cfg wgtypes.Config) (netlink.Link, error) {
	link, dev, err := u.create(name, alias, mtu, cfg)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s (userspace, port %d): %w", name, *cfg.ListenPort, err)
	}
	u.mu.Lock()
	old := u.devs[name]
	u.devs[name] = dev
	u.mu.Unlock()
	if old != nil {
		// Its TUN device was deleted (we could make one by its name).
		old.Close()
	}
	return link, nil
}

func (u *wgUser) create(name, alias string, mtu int, cfg wgtypes.Config) (netlink.Link, *device.Device, error) {
	// Opening a TUN device by the name of an existing one attaches to
	// it: never to one that is not ours.
	if l, err := u.nl.LinkByName(name); err == nil {
		return nil, nil, fmt.Errorf("a link of that name exists (%s, alias %q)", l.Type(), l.Attrs().Alias)
	}
	var t tun.Device
	err := u.inNetNS(func() (err error) {
		t, err = createTUN(name, mtu)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create TUN device: %w", err)
	}
	logf := func(level slog.Level) func(string, ...any) {
		return func(format string, args ...any) {
			u.log.Log(context.Background(), level, "wireguard-go: "+fmt.Sprintf(format, args...), "device", name)
		}
	}
	// Closing dev closes t, and with it the TUN device.
	dev := device.NewDevice(newNSTUN(t, u.inNetNS),
		&nsBind{Bind: conn.NewDefaultBind(), inNetNS: u.inNetNS},
		&device.Logger{Verbosef: logf(slog.LevelDebug - 4), Errorf: logf(slog.LevelWarn)})
	link, err := u.nl.LinkByName(name)
	if err == nil {
		err = u.nl.LinkSetAlias(link, alias)
	}
	if err == nil {
		// No IPv6 link-local address: the device would solicit routers
		// and report multicast through the tunnel as it comes up, and so
		// start a handshake from this end while the other end starts its
		// own (the two crossing lost the first packets now and then).
		// IPv6 is still routed through it.
		if err = u.nl.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			err = fmt.Errorf("addrgenmode none: %w", err)
		}
	}
	if err == nil {
		if err = dev.IpcSet(uapiSet(cfg)); err != nil {
			err = fmt.Errorf("configure: %w", err)
		}
	}
	if err == nil {
		// Binds the UDP port, or finds it in use.
		if err = dev.Up(); err != nil {
			err = fmt.Errorf("up (UDP port %d): %w", *cfg.ListenPort, err)
		}
	}
	if err == nil {
		err = u.nl.LinkSetUp(link)
	}
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	return link, dev, nil
}

// createTUN makes the TUN device name in the calling thread's namespace,
// with the offloads wireguard-go uses (IFF_VNET_HDR). On error nothing is
// left.
func createTUN(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		// Before the file goes to Go's poller.
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	t, err := tun.CreateTUNFromFile(f, mtu)
	if err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func (u *wgUser) Device(name string) (*wgtypes.Device, error) {
	u.mu.Lock()
	dev := u.devs[name]
	u.mu.Unlock()
	if dev == nil {
		return nil, fmt.Errorf("wireguard %s: no userspace device of that name: %w", name, os.ErrNotExist)
	}
	s, err := dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: read: %w", name, err)
	}
	return parseUAPIGet(name, s)
}

// Release closes the device name: its TUN device goes, now. (The kernel
// removes a TUN device when its last file descriptor closes, which the Go
// runtime may do a moment after Close returns: a device made anew by the
// same name must not find the old one.)
func (u *wgUser) Release(name string) {
	u.mu.Lock()
	dev := u.devs[name]
	delete(u.devs, name)
	u.mu.Unlock()
	if dev == nil {
		return
	}
	dev.Close()
	if l, err := u.nl.LinkByName(name); err == nil {
		if _, ok := l.(*netlink.Tuntap); ok {
			_ = u.nl.LinkDel(l)
		}
	}
}

// Len is the number of devices this process runs.
func (u *wgUser) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.devs)
}

// Close closes every device.
func (u *wgUser) Close() error {
	u.mu.Lock()
	devs := u.devs
	u.devs = map[string]*device.Device{}
	u.mu.Unlock()
	for _, dev := range devs {
		dev.Close()
	}
	return nil
}

// nsTUN is a TUN device as the userspace devices see it:
//   - its MTU is read in the forwarder's namespace (the ioctl goes by
//     name, in the calling thread's namespace);
//   - of its events only MTU changes pass: wireguard-go would bring the
//     device up and down with the link, rebinding its UDP port each time
//     (to another one if the port were taken meanwhile: it forgets it on
//     failure); Create brings it up once, and Release closes it.
type nsTUN struct {
	tun.Device
	inNetNS func(func() error) error
	events  chan tun.Event
}

func newNSTUN(t tun.Device, inNetNS func(func() error) error) *nsTUN {
	n := &nsTUN{Device: t, inNetNS: inNetNS, events: make(chan tun.Event, 1)}
	// Ends when the TUN device closes its channel (on Close).
	go func() {
		defer close(n.events)
		for e := range t.Events() {
			if e&tun.EventMTUUpdate != 0 {
				n.events <- tun.EventMTUUpdate
			}
		}
	}()
	return n
}

func (t *nsTUN) Events() <-chan tun.Event { return t.events }

func (t *nsTUN) MTU() (mtu int, err error) {
	if e := t.inNetNS(func() error { mtu, err = t.Device.MTU(); return nil }); e != nil {
		return 0, e
	}
	return mtu, err
}

// nsBind opens wireguard-go's UDP sockets in the forwarder's namespace,
// whichever thread asks. (Being no *conn.StdNetBind, it also keeps
// wireguard-go from listening to route changes for its sticky source
// addresses, a netlink socket that would open in the caller's namespace.)
//
// It also sends one datagram per send call: given several, the standard
// bind coalesces them into one UDP GSO super-packet (UDP_SEGMENT), which a
// veth passes on whole, and a VPP peer reading its underlay with af_packet
// takes it for one datagram (VPP's af_packet knows TCP GSO only) and drops
// it: TCP bulk toward a VPP node stalled while ping passed.
type nsBind struct {
	conn.Bind
	inNetNS func(func() error) error
}

func (b *nsBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for i := range bufs {
		if err := b.Bind.Send(bufs[i:i+1], ep); err != nil {
			return err
		}
	}
	return nil
}

func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	if e := b.inNetNS(func() error { fns, actual, err = b.Bind.Open(port); return nil }); e != nil {
		return nil, 0, errors.Join(e, err)
	}
	return fns, actual, err
}
