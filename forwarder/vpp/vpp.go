// Package vpp is the forwarder's VPP dataplane. It attaches to a running
// VPP by its API socket or starts one of its own (package vppstart), checks
// that VPP's binary API is the one vwire is built for (package binapi), and
// builds each vWire from VPP objects: one file per object kind (memif.go,
// afpacket.go, tap.go, vxlan.go, wireguard.go, ipsec.go, l2xc.go, l3xc.go,
// interface.go, ip.go), each object tagged "vwire/<role>/<connID>" so that a
// restarted forwarder finds its own objects again (tags.go, reconcile.go).
// KERNEL interfaces are taps whose host end VPP creates in the workload's
// namespace, or, where /dev/vhost-net is missing, veth pairs attached to VPP
// by af_packet; MEMIF interfaces are VPP-master memifs, slave to an NSM endpoint's
// socket (memiffile.go); VXLAN, WIREGUARD and
// IPSEC tunnels run over the node's uplink, an af_packet interface on a host
// interface with the host's address. Ethernet payloads are cross-connected
// with l2xc, IP payloads with l3xc. See README.md.
package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/adapter/statsclient"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/binapi"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"github.com/vwire/vwire/mechanisms/vxlan"
)

// Defaults.
const (
	// DefaultStateDir is where a VPP of the forwarder's own keeps its
	// configuration and sockets, and where memif socket files go.
	DefaultStateDir = "/var/lib/vwire/vpp"
	// DefaultStatsSocket is the stats socket of an attached VPP.
	DefaultStatsSocket = "/run/vpp/stats.sock"
	// DefaultGrace is how long vWires found at start wait to be claimed by
	// a refresh before they are removed.
	DefaultGrace = time.Minute
	// DefaultMemifReserve is --vpp-memif-reserve's default: the room of
	// 1,000 local memif vWires (two memifs each) and a margin, which a
	// few seconds at start reserve.
	DefaultMemifReserve = 2048
	// restoreWorkers is how many vWires are rebuilt at once after VPP
	// restarts: VPP serves one message at a time, but with several in
	// flight it never waits for the next.
	restoreWorkers = 20
	// reserveTimeout bounds the memif pool reserve.
	reserveTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds connecting to VPP at start.
	DefaultConnectTimeout = 30 * time.Second
)

// KernelMode says how KERNEL interfaces are made.
type KernelMode string

// Kernel modes.
const (
	// KernelAuto uses taps where /dev/vhost-net exists, else veths.
	KernelAuto KernelMode = ""
	// KernelTap always uses tapv2 (needs /dev/vhost-net).
	KernelTap KernelMode = "tap"
	// KernelVeth always uses a veth pair and af_packet.
	KernelVeth KernelMode = "veth"
)

// Config configures the VPP dataplane.
type Config struct {
	// APISocket attaches to the VPP listening there (--vpp-api-socket);
	// when empty the dataplane starts its own VPP from Bin.
	APISocket string
	// StatsSocket is an attached VPP's stats socket (DefaultStatsSocket
	// when empty); a started VPP's is in StateDir.
	StatsSocket string
	// Bin is the VPP binary to start (--vpp-bin; "vpp" on PATH when
	// empty) and PluginPath its plugin directory (VPP's default when
	// empty).
	Bin        string
	PluginPath string
	// StateDir holds a started VPP's configuration and sockets, and the
	// memif socket files (DefaultStateDir when empty).
	StateDir string
	// PollSleepUsec makes a started VPP sleep between polls (see
	// vppstart.Config).
	PollSleepUsec int
	// Workers gives a started VPP that many worker threads (cpu {
	// workers N }), which then poll the interfaces; none when zero (the
	// main thread polls them).
	Workers int
	// MainHeapSize is a started VPP's main heap (--vpp-main-heap;
	// vppstart.DefaultMainHeapSize when empty).
	MainHeapSize string
	// MemifReserve is how many memifs VPP's memif pool is grown to hold
	// at connect and after VPP restarts (--vpp-memif-reserve; see
	// Client.ReserveMemifs); none when zero.
	MemifReserve int
	// MaxInFlight bounds the vWire operations (Connect, Disconnect, a
	// restore's rebuild) talking to VPP at once; the others wait in the
	// forwarder, removals first (--vpp-max-in-flight; see admission.go).
	// DefaultMaxInFlight when zero (no bound, for now), no bound when
	// negative.
	MaxInFlight int
	// NetNSPath is the network namespace of VPP, the uplink and the
	// forwarder's veth ends; the current one when empty (tests run
	// several nodes in one process).
	NetNSPath string
	// Uplink is the host interface that tunnels use (--uplink); VPP takes
	// it over with af_packet and the host's address. Without it the node
	// offers and accepts no REMOTE mechanism.
	Uplink string
	// TunnelIP is this node's tunnel address; the uplink's first IPv4
	// address when unset.
	TunnelIP netip.Addr
	// MemifDir is where memif socket files go (StateDir/memif when empty).
	MemifDir string
	// Kernel says how KERNEL interfaces are made.
	Kernel KernelMode
	// Grace is how long vWires found at start may wait for their refresh
	// (DefaultGrace when zero).
	Grace time.Duration
	// Logger receives the dataplane's logs, one debug line per VPP call.
	Logger *slog.Logger
	// Metrics records every VPP call and connection event; the caller
	// registers them. New makes unregistered ones when nil.
	Metrics *Metrics

	// Adapter and StatsAdapter, when set, replace the API and stats
	// sockets (tests give govpp's mock adapters).
	Adapter      adapter.VppAPI
	StatsAdapter adapter.StatsAPI

	host hostNet // tests replace Linux
	// passiveFallback replaces DefaultPassiveFallback (tests).
	passiveFallback time.Duration
}

// New connects to VPP (starting it first when cfg.APISocket is empty),
// checks its binary API, and takes over the uplink. ctx bounds the start.
func New(ctx context.Context, cfg Config) (_ *Dataplane, err error) {
	d := &Dataplane{
		log:        cfg.Logger,
		grace:      cfg.Grace,
		uplinkName: cfg.Uplink,
		vnis:       vxlan.NewVNIAllocator(),
		tables:     newTableAllocator(),
		trunk:      newTrunk(),
		uplink:     NoInterface,
		held:       map[string]map[string]uint32{},
		keys:       map[string]map[string]keyPair{},
		wgPorts:    map[uint16]bool{},
		accepted:   map[string]string{},
		conns:      map[string]*vwireState{},
		orphans:    map[string]bool{},
		unclean:    map[string]bool{},
		leftovers:  map[string][]undoStep{},
		placed:     map[string][]SwIfIndex{},
		blind:      map[string]bool{},
		memifs:     newMemifRoom(cfg.MemifReserve),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.metrics = cfg.Metrics; d.metrics == nil {
		d.metrics = NewMetrics()
	}
	d.vrfs = newIPTables(d.tables)
	maxInFlight := cfg.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}
	d.admission = newAdmission(max(maxInFlight, 0), d.metrics)
	if d.grace <= 0 {
		d.grace = DefaultGrace
	}
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	d.memifDir = cfg.MemifDir
	if d.memifDir == "" {
		d.memifDir = filepath.Join(stateDir, "memif")
	}
	if cfg.MemifReserve < 0 || cfg.Workers < 0 {
		return nil, fmt.Errorf("vpp dataplane: memif reserve %d, workers %d: want 0 or more", cfg.MemifReserve, cfg.Workers)
	}
	switch cfg.Kernel {
	case KernelTap:
		d.kernelTap = true
	case KernelVeth:
	case KernelAuto:
		_, err := os.Stat("/dev/vhost-net")
		d.kernelTap = err == nil
	default:
		return nil, fmt.Errorf("vpp dataplane: kernel mode %q: want tap or veth", cfg.Kernel)
	}
	life, stop := context.WithCancel(context.Background())
	d.life, d.stop = life, stop
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	if d.passiveFallback = cfg.passiveFallback; d.passiveFallback <= 0 {
		d.passiveFallback = DefaultPassiveFallback
	}
	if d.host = cfg.host; d.host == nil {
		h, err := newNetlinkHost(cfg.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("vpp dataplane: netlink: %w", err)
		}
		d.host = h
	}

	// The intent journal first: a second forwarder on this VPP and state
	// directory stops here, before it starts or touches anything.
	journalSock := ""
	switch {
	case cfg.Adapter != nil:
	case cfg.APISocket != "":
		journalSock = cfg.APISocket
	default:
		journalSock = filepath.Join(stateDir, "api.sock") // vppstart's
	}
	if d.intents, err = openJournal(journalDir(stateDir, journalSock)); err != nil {
		return nil, fmt.Errorf("vpp dataplane: %w", err)
	}
	// VNIs the open intents name stay taken until their lookups succeed.
	for _, vni := range d.intents.openVNIs() {
		_ = d.vnis.Reserve(vni)
	}

	api, stats := cfg.Adapter, cfg.StatsAdapter
	if api == nil {
		sock, statsSock := cfg.APISocket, cfg.StatsSocket
		if sock == "" {
			vcfg := vppstart.Config{Bin: cfg.Bin, PluginPath: cfg.PluginPath, Dir: stateDir, NetNSPath: cfg.NetNSPath,
				PollSleepUsec: cfg.PollSleepUsec, MainHeapSize: cfg.MainHeapSize, Log: d.log.With("component", "vpp")}
			if cfg.Workers > 0 {
				vcfg.Extra = fmt.Sprintf("cpu {\n  workers %d\n}", cfg.Workers)
			}
			if d.proc, err = vppstart.Start(ctx, vcfg); err != nil {
				return nil, fmt.Errorf("vpp dataplane: %w", err)
			}
			sock, statsSock = d.proc.APISocket, d.proc.StatsSocket
			d.log.Info("started VPP", "pid", d.proc.Pid(), "config", d.proc.ConfigFile)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.superviseVPP(life, vcfg)
			}()
		} else if statsSock == "" {
			statsSock = DefaultStatsSocket
		}
		api = socketclient.NewVppClient(sock)
		stats = statsclient.NewStatsClient(statsSock)
		d.apiSocket = sock
	}

	ev := newConnEvents(d.log, d.metrics)
	conn, events, err := core.AsyncConnect(api, 1<<30, time.Second)
	if err != nil {
		return nil, fmt.Errorf("vpp dataplane: connect: %w", err)
	}
	d.conn = conn
	if err := waitConnected(ctx, events, ev); err != nil {
		return nil, fmt.Errorf("vpp dataplane: connect: %w", err)
	}
	version, err := binapi.Check(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("vpp dataplane: %w", err)
	}
	d.vpp = NewClient(conn, d.log, d.metrics)
	d.log.Info("connected to VPP", "version", version)
	d.memifReserve = cfg.MemifReserve
	d.reserveMemifs(ctx)

	if stats != nil {
		if sc, err := core.ConnectStats(stats); err != nil {
			d.log.Warn("VPP stats segment unavailable: vWire metrics are off", "err", err)
		} else {
			d.statsConn, d.stats = sc, &ifCounters{s: stats}
		}
	}

	if cfg.Uplink != "" {
		if err := d.setupUplink(ctx, cfg.TunnelIP); err != nil {
			return nil, fmt.Errorf("vpp dataplane: %w", err)
		}
	}
	if !d.kernelTap {
		if err := d.setupTrunk(ctx); err != nil {
			return nil, fmt.Errorf("vpp dataplane: %w", err)
		}
	}
	// What a previous run's creates may have left untagged, before any
	// Connect (and before Start holds the VNIs of the tagged tunnels).
	d.resolveAllIntents(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.watch(life, events, ev)
	}()
	return d, nil
}

func waitConnected(ctx context.Context, events <-chan core.ConnectionEvent, ev *connEvents) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultConnectTimeout)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-events:
			ev.record(e)
			switch e.State {
			case core.Connected:
				return nil
			case core.Failed:
				return e.Error
			}
		}
	}
}

// closing is closed once Close has begun.
func (d *Dataplane) closing() <-chan struct{} { return d.life.Done() }

// Close disconnects from VPP and stops the VPP it started; an attached
// VPP keeps every vWire (a restarted forwarder takes them back). Safe to
// call twice.
func (d *Dataplane) Close() error {
	d.closeOnce.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		if d.conn != nil {
			d.conn.Disconnect()
		}
		if d.statsConn != nil {
			// Disconnecting unmaps the stats segment: a Metrics call
			// reading it meanwhile (a scrape during shutdown) faulted
			// (SIGSEGV in govpp's GetInterfaceStats). Under statsMu, and
			// no reads after.
			d.statsMu.Lock()
			d.stats = nil
			d.statsConn.Disconnect()
			d.statsMu.Unlock()
		}
		d.wg.Wait()
		d.mu.Lock()
		proc := d.proc
		d.mu.Unlock()
		if proc != nil {
			if err := proc.Stop(vppstart.DefaultStopTimeout); err != nil {
				d.log.Error("stop VPP", "err", err)
			}
		}
		if d.host != nil {
			d.host.close()
		}
		d.intents.close()
	})
	return nil
}

// setupUplink takes over the host interface d.uplinkName with af_packet and
// copies its MAC, MTU, addresses and gateway routes to VPP. An uplink of a
// previous run (tagged) is kept.
func (d *Dataplane) setupUplink(ctx context.Context, tunnel netip.Addr) error {
	up, err := d.host.uplink(d.uplinkName)
	if err != nil {
		return err
	}
	if !tunnel.IsValid() {
		for _, p := range up.prefixes {
			if p.Addr().Is4() {
				tunnel = p.Addr()
				break
			}
		}
	}
	if !tunnel.IsValid() {
		return fmt.Errorf("uplink %s has no IPv4 address for tunnels (give one with --tunnel-ip)", d.uplinkName)
	}
	if !slices.ContainsFunc(up.prefixes, func(p netip.Prefix) bool { return p.Addr() == tunnel }) {
		return fmt.Errorf("tunnel address %s is not on uplink %s", tunnel, d.uplinkName)
	}
	if !d.tunnel.IsValid() {
		// Fixed at New: Accept and Offer read them without a lock, and
		// a VPP restart changes neither.
		d.tunnel, d.underlayMTU = tunnel, up.mtu
	}

	cl := d.vpp.WithLogger(d.log.With("step", "uplink"))
	tag := Tag{Role: roleUplink, Key: d.uplinkName}.String()
	ifaces, err := cl.ListInterfaces(ctx)
	if err != nil {
		return err
	}
	idx := NoInterface
	if i := slices.IndexFunc(ifaces, func(i Interface) bool { return i.Tag == tag }); i >= 0 {
		idx = ifaces[i].Index
	} else {
		if idx, err = cl.CreateAfPacket(ctx, AfPacketSpec{HostIfName: d.uplinkName, MAC: up.mac}); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		if err := cl.SetInterfaceTag(ctx, idx, tag); err != nil {
			return errors.Join(fmt.Errorf("uplink: %w", err), cl.DeleteAfPacket(ctx, d.uplinkName))
		}
		for _, p := range up.prefixes {
			if err := cl.AddInterfaceAddress(ctx, idx, p); err != nil {
				return fmt.Errorf("uplink: %w", err)
			}
		}
		if err := cl.SetInterfaceMTU(ctx, idx, uint32(up.mtu)); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		if err := cl.SetInterfaceUp(ctx, idx); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	// Routes through a gateway (a default route, most often), so that
	// tunnels reach peers beyond the uplink's subnet.
	for _, r := range up.gateways {
		r.Via = idx
		if err := cl.CreateRoute(ctx, r); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	d.mu.Lock()
	d.uplink = idx
	d.mu.Unlock()
	d.log.Info("uplink ready", "host_if", d.uplinkName, "sw_if_index", idx, "tunnel_ip", tunnel, "mtu", up.mtu)
	return nil
}

// watch follows the connection to VPP: it records each event, and when the
// connection comes back after a loss, the uplink and every vWire are checked
// and rebuilt as needed.
func (d *Dataplane) watch(ctx context.Context, events <-chan core.ConnectionEvent, ev *connEvents) {
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			ev.record(e)
			switch e.State {
			case core.Connected:
				if lost {
					lost = false
					d.log.Info("VPP connection back; restoring vWires")
					d.restore(ctx)
				}
			case core.Disconnected, core.NotResponding, core.Failed:
				lost = true
				d.memifs.shut() // until restore has reserved the pool again
				d.diagnoseVPP(ctx, e.State)
			}
		}
	}
}

// connEvents records govpp's connection events: counted by state, the
// state as a gauge, and one log line each with the time since the one
// before (a NotResponding 5 s after Connected tells another story than one
// after an hour). Its events are read by New and then by watch, never at
// once.
type connEvents struct {
	log  *slog.Logger
	m    *Metrics
	last time.Time // the previous event, or when connecting began
}

func newConnEvents(log *slog.Logger, m *Metrics) *connEvents {
	return &connEvents{log: log, m: m, last: time.Now()}
}

func (c *connEvents) record(e core.ConnectionEvent) {
	at := e.Timestamp
	if at.IsZero() {
		at = time.Now()
	}
	since := at.Sub(c.last)
	c.last = at
	c.m.connEvent(e.State)
	level, msg := slog.LevelWarn, "VPP connection lost"
	switch e.State {
	case core.Connected:
		level, msg = slog.LevelInfo, "VPP connection up"
	case core.Failed:
		level, msg = slog.LevelError, "VPP connection failed: no more reconnect attempts"
	}
	attrs := []slog.Attr{slog.String("state", stateName(e.State)), slog.Duration("since_last_event", since)}
	if e.Error != nil {
		attrs = append(attrs, slog.Any("err", e.Error))
	}
	c.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// reserveMemifs grows VPP's memif pool (see Client.ReserveMemifs); a
// failure is logged, not fatal: VPP works on, with local memif vWires
// bounded by the room reached.
func (d *Dataplane) reserveMemifs(ctx context.Context) {
	if d.memifReserve == 0 {
		return
	}
	// Bounded on its own: a start must not wait minutes on a VPP whose
	// worker the host starves.
	ctx, cancel := context.WithTimeout(ctx, reserveTimeout)
	defer cancel()
	start := time.Now()
	if err := d.resolveReserve(ctx); err != nil {
		d.log.Warn("memifs an earlier memif reserve left could not be removed: kept in the intent journal", "err", err)
	}
	// Only into an empty pool (see ReserveMemifs); a VPP that has memifs
	// had them reserved by the forwarder that made them.
	if ms, err := d.vpp.ListMemifs(ctx); err != nil || len(ms) > 0 {
		d.log.Info("memif pool not reserved: VPP has memifs", "memifs", len(ms), "err", err)
		return
	}
	// An abstract socket, in VPP's network namespace: two VPPs sharing a
	// state directory from two namespaces (tests do) must not both listen
	// on one file, and a memif VPP 25.10 fails to create on its error
	// path crashes it (vnet_delete_hw_interface from memif_create_if).
	sock := "abstract:" + filepath.Join(d.memifDir, ".vwire-reserve")
	reached, err := d.reserveJournaled(ctx, sock)
	// The room this VPP's pool has bounds the vWires' memifs (memifroom.go).
	d.memifs.setRoom(reached)
	if err != nil {
		d.log.Error("memif pool reserved short: local memif vWires past its room are refused", "room", reached, "memifs", d.memifReserve, "err", err)
		return
	}
	d.log.Info("memif pool reserved", "memifs", d.memifReserve, "took", time.Since(start))
}

// restore rebuilds what a VPP restart (or a damaging outage) lost, from
// what Connect was given, restoreWorkers vWires at a time, and logs and
// records (vwire_vpp_restore_seconds) how long it took.
func (d *Dataplane) restore(ctx context.Context) {
	start := time.Now()
	defer d.memifs.open() // however the restore ends
	cctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := binapi.Check(cctx, d.conn); err != nil {
		d.log.Error("VPP came back with another API: vWires not restored", "err", err)
		return
	}
	if d.uplinkName != "" {
		if err := d.setupUplink(cctx, d.tunnel); err != nil {
			d.log.Error("restore uplink", "err", err)
		}
	}
	d.reserveMemifs(cctx)
	// Leftovers go before socket ids count again: their undo steps go
	// by ids this run gave. What VPP cannot be asked for now stays open
	// in the intent journal, whose lookups check the socket's filename
	// too (resolveIntent), for the next time.
	d.mu.Lock()
	pending := slices.Collect(maps.Keys(d.leftovers))
	d.mu.Unlock()
	pending = append(pending, d.intents.ids()...)
	slices.Sort(pending)
	for _, id := range slices.Compact(pending) {
		unlock := d.locks.Lock(id)
		if err := d.removeLeftovers(cctx, d.vpp.WithLogger(d.log.With("conn", id)), id); err != nil {
			d.log.Error("objects creates with no answer may have made are still in VPP, untagged: kept in the intent journal, looked for again later", "conn", id, "err", err)
		}
		d.mu.Lock()
		delete(d.leftovers, id)
		d.mu.Unlock()
		unlock()
	}
	d.memifSockIDs.forget() // a new VPP: list its ids again
	if !d.kernelTap {
		if err := d.setupTrunk(cctx); err != nil {
			d.log.Error("restore KERNEL trunk", "err", err)
		}
	}
	// The shared IP tables as VPP has them now (none after a restart).
	if ifaces, err := d.vpp.ListInterfaces(cctx); err != nil {
		d.log.Error("restore: list interfaces", "err", err)
	} else if tables, err := d.vpp.ListIPTables(cctx); err != nil {
		d.log.Error("restore: list ip tables", "err", err)
	} else if err := d.vrfs.resync(cctx, d.vpp, ifaces, tables); err != nil {
		d.log.Error("restore: ip tables", "err", err)
	}
	d.mu.Lock()
	ids := slices.Sorted(maps.Keys(d.conns))
	d.mu.Unlock()
	left := d.tagged(cctx)
	ids, refused := d.readmitMemifs(ids, left)
	// The pool reserved and the restored vWires' room claimed: new
	// memifs may go, beside the rebuild.
	d.memifs.open()
	var failed atomic.Int64
	work := make(chan string)
	var wg sync.WaitGroup
	for range restoreWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := d.restoreOne(ctx, id, left); err != nil {
					failed.Add(1)
					d.log.Error("restore vWire", "conn", id, "err", err)
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	d.metrics.restored(took, len(ids)-int(failed.Load()), int(failed.Load()), refused)
	d.log.Info("vWires restored", "vwires", len(ids), "failed", failed.Load(), "refused", refused, "took", took)
}

// readmitMemifs claims room in the memif pool of a VPP that restarted for
// the vWires of ids it has nothing of (left, see tagged), in ids' order,
// before any is rebuilt: the rebuild must not grow the pool past the room
// its reserve reached (memifroom.go), and that room may be short of the
// one before. A vWire past it is refused: logged, counted, and forgotten
// here (the forwarder still holds it, so its keys and VNIs stay held), so
// that its client's next refresh is a new Connect, refused with
// ErrMemifPoolFull (ResourceExhausted) while the room stays taken. It
// returns the ids to rebuild and how many were refused. With left nil (VPP
// could not be listed) each vWire keeps its claim and is checked as it is
// rebuilt.
func (d *Dataplane) readmitMemifs(ids []string, left map[string]bool) (rebuild []string, refused int) {
	if left == nil {
		return ids, 0
	}
	// The vWires' locks, in ids' order (nothing else takes two): no
	// Connect or Disconnect of theirs claims or settles meanwhile.
	for _, id := range ids {
		if !left[tagKey(id)] {
			defer d.locks.Lock(id)()
		}
	}
	var lost []string
	need := map[string]int{}
	gone := map[string]string{} // id by tag key
	d.mu.Lock()
	for _, id := range ids {
		st := d.conns[id]
		if st == nil || left[tagKey(id)] {
			continue
		}
		lost = append(lost, tagKey(id))
		need[tagKey(id)] = st.plan.memifs()
		gone[tagKey(id)] = id
	}
	d.mu.Unlock()
	out := map[string]bool{}
	for _, key := range d.memifs.readmit(lost, need) {
		id := gone[key]
		out[id] = true
		d.mu.Lock()
		delete(d.conns, id)
		d.mu.Unlock()
		d.log.Error("vWire not rebuilt after VPP restarted: its memifs do not fit in the room reserved in the new VPP's memif pool; its next Request is refused while the room is taken (raise --vpp-memif-reserve)",
			"conn", id, "memifs", need[key])
	}
	return slices.DeleteFunc(ids, func(id string) bool { return out[id] }), len(out)
}

// tagged returns the keys of the vWires VPP has any tagged interface or IP
// table of, from one listing of each; nil when VPP could not be listed.
func (d *Dataplane) tagged(ctx context.Context) map[string]bool {
	ifaces, err := d.vpp.ListInterfaces(ctx)
	if err != nil {
		return nil
	}
	tables, err := d.vpp.ListIPTables(ctx)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, i := range ifaces {
		if t, ok := ParseTag(i.Tag); ok {
			out[t.Key] = true
		}
	}
	for _, t := range tables {
		if tg, ok := ParseTag(t.Name); ok && tg.Role != roleVRF {
			out[tg.Key] = true
		}
	}
	return out
}

// restoreOne rebuilds vWire id unless it stands intact. left, when not
// nil, names the vWires VPP still has objects of: one it has none of (VPP
// restarted) is built at once, with no check or sweep to list VPP for.
func (d *Dataplane) restoreOne(ctx context.Context, id string, left map[string]bool) error {
	unlock := d.locks.Lock(id)
	defer unlock()
	d.mu.Lock()
	st := d.conns[id]
	d.mu.Unlock()
	if st == nil {
		return nil // disconnected meanwhile
	}
	// Waits on ctx (the dataplane's life): the rebuild's own bound starts
	// once admitted.
	release, err := d.admission.admit(ctx, opBuild)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := bounded(ctx)
	defer cancel()
	cl := d.vpp.WithLogger(d.log.With("conn", id, "step", "restore"))
	if left == nil || left[tagKey(id)] {
		if ok, err := d.intact(ctx, cl, id, st); err != nil || ok {
			return err
		}
		d.mu.Lock()
		unclean := d.unclean[tagKey(id)]
		d.mu.Unlock()
		sweep := func() error { return d.sweep(ctx, cl, tagKey(id)) }
		if st.undo != nil && !unclean {
			sweep = func() error { return d.sweepBuilt(ctx, cl, st) }
		}
		if err := sweep(); err != nil {
			return err
		}
	}
	in, out, undo, err := d.build(ctx, cl, st.plan, false)
	if err != nil {
		// Its rollback may have left objects st does not name: the
		// Disconnect sweeps all of VPP for them (see sweepBuilt).
		d.mu.Lock()
		d.unclean[tagKey(id)] = true
		d.mu.Unlock()
		return err
	}
	d.mu.Lock()
	if d.conns[id] == st {
		st.in, st.out, st.undo = in, out, undo
	}
	d.mu.Unlock()
	d.log.Debug("vWire restored", "conn", id)
	return nil
}

// superviseVPP restarts a VPP of ours that exits while the dataplane is
// open; govpp then reconnects and watch restores the vWires.
func (d *Dataplane) superviseVPP(ctx context.Context, cfg vppstart.Config) {
	for {
		d.mu.Lock()
		proc := d.proc
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-proc.Done():
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Error("VPP exited; starting it again", "exit", vppstart.DescribeExit(proc.Err()),
			"output", proc.Output(), "log_tail", vppstart.TailFile(proc.LogFile(), vppstart.LogTailLines))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		next, err := vppstart.Start(ctx, cfg)
		if err != nil {
			d.log.Error("restart VPP", "err", err)
			continue
		}
		d.mu.Lock()
		d.proc = next
		d.mu.Unlock()
	}
}
