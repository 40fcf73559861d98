package vpp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/af_packet"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/gso"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/ipip"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/l3xc"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/tapv2"
	"go.fd.io/govpp/binapi/vpe"
	"go.fd.io/govpp/binapi/vxlan"
	"go.fd.io/govpp/binapi/wireguard"
	"go.fd.io/govpp/codec"

	"github.com/vwire/vwire/binapi"
)

// fakeVPP is govpp's mock adapter with a small model of VPP behind it: it
// decodes every request, records it, keeps the interfaces, memifs, tunnels,
// SAs, tables and cross-connects it was asked to make, answers dumps from
// that state, and fails the requests a test names with the retval it gives.
type fakeVPP struct {
	*mock.VppAdapter

	mu        sync.Mutex
	cb        adapter.MsgCallback
	protos    map[string]api.Message
	unknown   map[string]bool    // messages the running "VPP" does not know
	fail      map[string]failure // message name -> how to fail it
	sent      []api.Message
	nextIndex uint32
	ifaces    map[uint32]*fakeIface
	sockets   map[uint32]string
	nextSock  uint32
	// socketRoom is the room of VPP's pool of memif socket files: the
	// most it held at once since it started (a pool keeps its room).
	// socketGrowths counts the times a socket file grew that pool while
	// VPP had a memif, which the memif process may be walking (see
	// ReserveMemifSockets), over every start.
	// onSend, when set, is called with each request's name as it comes,
	// before it is handled (a test holds VPP's answers back there).
	onSend        func(name string)
	socketRoom    int
	socketGrowths int
	memifRoom     int // the same for VPP's pool of memifs
	sas           map[uint32]bool
	protect       map[uint32]ipsec.IpsecTunnelProtect
	peers         map[uint32]uint32 // peer -> interface
	peerInfo      map[uint32]wireguard.WireguardPeer
	nextPeer      uint32
	tables        map[[2]uint32]string // {id, ip6} -> name
	l2xc          map[uint32]uint32
	l3xc          map[[2]uint32]l3xc.L3xc // {rx, ip6}
	routes        map[routeKey]ip.IPRoute
	leakedRoutes  int // API routes left in a deleted table
	// orphanRoutes counts the routes and l3xcs that were still through
	// an interface when it was deleted: VPP keeps them, and with an l3xc
	// through it, the route's path keeps the deleted interface's
	// adjacency (see TestRouteOutlivingInterfaceVPP).
	orphanRoutes int
	down         bool            // crashed: nothing is answered
	silent       map[string]bool // messages taken but never answered
	dropped      map[string]int  // the same for the next requests, not carried out
	// unanswered counts, per message, the next requests that are
	// carried out but whose reply is never sent (as one that comes after
	// its caller gave up).
	unanswered  map[string]int
	answerFirst map[string]int // of those, how many requests are answered first
	// muteOn names the request from which the next mute requests (of
	// any name) are carried out but never answered (withholdFrom).
	muteOn       string
	mute         int
	muting       bool
	refuse       map[string]error // messages whose sending fails
	onDisconnect func()
}

type routeKey struct {
	table  [2]uint32
	prefix string
}

type failure struct {
	skip   int // requests to let through first
	retval int32
}

type fakeIface struct {
	idx     uint32
	name    string
	tag     string
	up      bool
	mtu     uint32
	host    string // af_packet / tap host name
	memif   memif.MemifCreateV2
	vxlan   vxlan.VxlanAddDelTunnelV3
	ipip    ipip.IpipTunnel
	wgPub   []byte
	wgPriv  []byte
	wgSrc   ip_types.Address
	wgPort  uint16
	kind    string
	addrs   int
	unnumTo uint32
	sub     bool // a sub-interface of sup, for VLAN subID
	sup     uint32
	subID   uint32
	vtrPop  bool
}

func newFakeVPP() *fakeVPP {
	f := &fakeVPP{
		VppAdapter:  mock.NewVppAdapter(),
		protos:      map[string]api.Message{},
		unknown:     map[string]bool{},
		fail:        map[string]failure{},
		silent:      map[string]bool{},
		dropped:     map[string]int{},
		unanswered:  map[string]int{},
		answerFirst: map[string]int{},
		refuse:      map[string]error{},
	}
	f.reset()
	for _, m := range binapi.Messages() {
		f.protos[m.GetMessageName()] = m
	}
	return f
}

// reset empties the model, as a freshly started VPP (f.mu held or not
// yet shared).
func (f *fakeVPP) reset() {
	f.nextIndex = 1 // 0 is local0
	f.ifaces = map[uint32]*fakeIface{0: {idx: 0, name: "local0", kind: "local"}}
	f.sockets = map[uint32]string{0: "/run/vpp/memif.sock"}
	f.nextSock = 1
	f.socketRoom = 1
	f.memifRoom = 0
	f.sas = map[uint32]bool{}
	f.protect = map[uint32]ipsec.IpsecTunnelProtect{}
	f.peers = map[uint32]uint32{}
	f.peerInfo = map[uint32]wireguard.WireguardPeer{}
	f.nextPeer = 0
	f.tables = map[[2]uint32]string{{0, 0}: "ipv4-VRF:0", {0, 1}: "ipv6-VRF:0"}
	f.l2xc = map[uint32]uint32{}
	f.l3xc = map[[2]uint32]l3xc.L3xc{}
	f.routes = map[routeKey]ip.IPRoute{}
	f.leakedRoutes = 0
}

// memifsLocked is how many memifs VPP has (f.mu held).
func (f *fakeVPP) memifsLocked() int { return f.kindLocked("memif") }

// kindLocked is how many interfaces of kind VPP has (f.mu held).
func (f *fakeVPP) kindLocked(kind string) int {
	n := 0
	for _, i := range f.ifaces {
		if i.kind == kind {
			n++
		}
	}
	return n
}

// count is how many interfaces of kind VPP has.
func (f *fakeVPP) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kindLocked(kind)
}

// crash makes VPP lose everything and stop answering (and accepting
// connections) until revive.
func (f *fakeVPP) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	f.down = true
}

// stall makes VPP's main thread stop answering, keeping what it has: every
// request and connection attempt goes unanswered until revive.
func (f *fakeVPP) stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = true
}

// revive lets VPP answer again (with what it had after crash: nothing).
func (f *fakeVPP) revive() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = false
}

func (f *fakeVPP) Connect() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("fake vpp: down")
	}
	return nil
}

func (f *fakeVPP) Disconnect() error {
	f.mu.Lock()
	cb := f.onDisconnect
	f.mu.Unlock()
	if cb != nil {
		cb()
	}
	return nil
}

// notifyDisconnect calls cb whenever a client disconnects.
func (f *fakeVPP) notifyDisconnect(cb func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onDisconnect = cb
}

func (f *fakeVPP) SetMsgCallback(cb adapter.MsgCallback) {
	f.mu.Lock()
	f.cb = cb
	f.mu.Unlock()
	f.VppAdapter.SetMsgCallback(cb)
}

func (f *fakeVPP) GetMsgID(name, crc string) (uint16, error) {
	f.mu.Lock()
	unknown := f.unknown[name]
	f.mu.Unlock()
	if unknown {
		return 0, &adapter.UnknownMsgError{MsgName: name, MsgCrc: crc}
	}
	return f.VppAdapter.GetMsgID(name, crc)
}

// failNth makes the n-th (from 1) next request named msg answer retval.
func (f *fakeVPP) failNth(msg string, n int, retval int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[msg] = failure{skip: n - 1, retval: retval}
}

// silence makes VPP take every request named msg and never answer it, as
// a main thread that is stuck.
func (f *fakeVPP) silence(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.silent[msg] = true
}

// drop makes VPP take the next n requests named msg and neither carry
// them out nor answer them: a create that got no answer and made nothing.
func (f *fakeVPP) drop(msg string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped[msg] = n
}

// withhold makes VPP carry out the next n requests named msg but never
// answer them: what their caller sees when the reply comes after its
// context ended.
func (f *fakeVPP) withhold(msg string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unanswered[msg] = n
}

// withholdFrom makes VPP carry out the next request named msg and the
// n-1 requests after it, of any name, and answer none of them: what a
// caller whose context ended in the middle of a pipeline sees (VPP answers
// in order, so every reply after the first lost one is lost too).
func (f *fakeVPP) withholdFrom(msg string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.muteOn, f.mute = msg, n
}

// withholdAfter is withhold, after answering the next skip requests named
// msg.
func (f *fakeVPP) withholdAfter(msg string, skip, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answerFirst[msg], f.unanswered[msg] = skip, n
}

// refuseSend makes sending a request named msg fail with err (nil: no
// longer), as a connection that broke.
func (f *fakeVPP) refuseSend(msg string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[msg] = err
}

// refuseKey names, for refuseSend, a lookup of interfaces by name
// (sw_interface_dump's name filter) by the filter's leading letters:
// "sw_interface_dump:memif" is the lookup of a memif by its name.
func refuseKey(req api.Message) string {
	d, ok := req.(*interfaces.SwInterfaceDump)
	if !ok || !d.NameFilterValid {
		return ""
	}
	kind, _, _ := strings.Cut(strings.TrimRight(d.NameFilter, "0123456789/."), "/")
	if i := strings.IndexAny(kind, "0123456789"); i >= 0 {
		kind = kind[:i]
	}
	return "sw_interface_dump:" + kind
}

// requests returns the names of the requests sent so far (no pings, no
// dumps unless withDumps) and forgets them.
func (f *fakeVPP) requests(withDumps bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.sent {
		n := m.GetMessageName()
		if !withDumps && strings.HasSuffix(n, "_dump") {
			continue
		}
		out = append(out, n)
	}
	f.sent = nil
	return out
}

// takeSent returns the requests sent so far (no pings) and forgets them.
func (f *fakeVPP) takeSent() []api.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sent
	f.sent = nil
	return out
}

// messageNames are the names of msgs.
func messageNames(msgs []api.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.GetMessageName())
	}
	return out
}

func (f *fakeVPP) sentOf(name string) []api.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Message
	for _, m := range f.sent {
		if m.GetMessageName() == name {
			out = append(out, m)
		}
	}
	return out
}

// snapshot describes the state for comparisons.
func (f *fakeVPP) snapshot() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	var idx []uint32
	for i := range f.ifaces {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		fmt.Fprintf(&b, "if %d %s tag=%q up=%v\n", i, f.ifaces[i].name, f.ifaces[i].tag, f.ifaces[i].up)
	}
	fmt.Fprintf(&b, "sockets %v sas %v protect %d peers %d tables %v l2xc %v l3xc %d routes %d leaked %d\n",
		f.sockets, f.sas, len(f.protect), len(f.peers), f.tables, f.l2xc, len(f.l3xc), len(f.routes), f.leakedRoutes)
	return b.String()
}

func (f *fakeVPP) SendMsg(clientID uint32, data []byte) error {
	msgID := binary.BigEndian.Uint16(data[0:2])
	name, ok := f.GetMsgNameByID(msgID)
	if !ok {
		return fmt.Errorf("fake vpp: unknown message id %d", msgID)
	}
	proto, ok := f.protos[name]
	if !ok {
		return fmt.Errorf("fake vpp: message %s is not in binapi.Messages()", name)
	}
	req := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(api.Message)
	if err := codec.DefaultCodec.DecodeMsg(data, req); err != nil {
		return fmt.Errorf("fake vpp: decode %s: %w", name, err)
	}
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return nil
	}
	if hook := f.onSend; hook != nil {
		f.mu.Unlock()
		hook(name)
		f.mu.Lock()
	}
	if err := cmp.Or(f.refuse[name], f.refuse[refuseKey(req)]); err != nil {
		f.mu.Unlock()
		return err
	}
	if name != "control_ping" {
		f.sent = append(f.sent, req)
	}
	if f.dropped[name] > 0 {
		f.dropped[name]--
		f.mu.Unlock()
		return nil
	}
	if f.silent[name] {
		f.mu.Unlock()
		return nil
	}
	fl, failing := f.fail[name]
	if failing && fl.skip > 0 {
		fl.skip--
		f.fail[name] = fl
		failing = false
	} else if failing {
		delete(f.fail, name)
	}
	var replies []api.Message
	if failing {
		replies = []api.Message{f.errorReply(req, fl.retval)}
	} else {
		replies = f.handle(req)
	}
	if name == f.muteOn && f.mute > 0 {
		f.muteOn, f.muting = "", true
	}
	if f.muting {
		if f.mute--; f.mute == 0 {
			f.muting = false
		}
		replies = nil
	} else if f.answerFirst[name] > 0 {
		f.answerFirst[name]--
	} else if f.unanswered[name] > 0 {
		f.unanswered[name]--
		replies = nil
	}
	cb := f.cb
	f.mu.Unlock()
	for _, r := range replies {
		id, err := f.VppAdapter.GetMsgID(r.GetMessageName(), r.GetCrcString())
		if err != nil {
			return err
		}
		out, err := codec.DefaultCodec.EncodeMsg(r, id)
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint32(out[2:6], clientID)
		cb(id, out)
	}
	return nil
}

// errorReply is req's reply with retval set.
func (f *fakeVPP) errorReply(req api.Message, retval int32) api.Message {
	reply := f.replyFor(req)
	reflect.ValueOf(reply).Elem().FieldByName("Retval").SetInt(int64(retval))
	return reply
}

func (f *fakeVPP) replyFor(req api.Message) api.Message {
	name := req.GetMessageName() + "_reply"
	proto, ok := f.protos[name]
	if !ok {
		panic("fake vpp: no reply type for " + req.GetMessageName())
	}
	return reflect.New(reflect.TypeOf(proto).Elem()).Interface().(api.Message)
}

func (f *fakeVPP) newIface(kind, name string) *fakeIface {
	i := &fakeIface{idx: f.nextIndex, name: name, kind: kind, mtu: 9000}
	f.ifaces[i.idx] = i
	f.nextIndex++
	return i
}

func (f *fakeVPP) noIface(idx interface_types.InterfaceIndex) bool {
	_, ok := f.ifaces[uint32(idx)]
	return !ok
}

func (f *fakeVPP) delIface(idx uint32) {
	for _, r := range f.routes {
		if slices.ContainsFunc(r.Paths, func(p fib_types.FibPath) bool { return p.SwIfIndex == idx }) {
			f.orphanRoutes++
		}
	}
	for k, x := range f.l3xc {
		if k[0] != idx && slices.ContainsFunc(x.Paths, func(p fib_types.FibPath) bool { return p.SwIfIndex == idx }) {
			f.orphanRoutes++
		}
	}
	delete(f.ifaces, idx)
	delete(f.l2xc, idx)
	delete(f.l3xc, [2]uint32{idx, 0})
	delete(f.l3xc, [2]uint32{idx, 1})
	for p, i := range f.peers {
		if i == idx {
			delete(f.peers, p)
			delete(f.peerInfo, p)
		}
	}
}

const (
	errInvalidIndex  = int32(api.INVALID_SW_IF_INDEX)
	errNoSuchEntry   = int32(api.NO_SUCH_ENTRY)
	errAlreadyExists = int32(api.ENTRY_ALREADY_EXISTS)
)

func rv(r api.Message, retval int32) []api.Message {
	reflect.ValueOf(r).Elem().FieldByName("Retval").SetInt(int64(retval))
	return []api.Message{r}
}

// handle answers one request (f.mu held).
func (f *fakeVPP) handle(req api.Message) []api.Message {
	switch m := req.(type) {
	case *memclnt.ControlPing:
		// As VPP: a dump's list has no end of its own; the control
		// ping sent after it ends it.
		return []api.Message{&memclnt.ControlPingReply{}}
	case *vpe.ShowVersion:
		return []api.Message{&vpe.ShowVersionReply{Version: "25.10-release"}}

	case *interfaces.SwInterfaceDump:
		var out []api.Message
		var idx []uint32
		for i := range f.ifaces {
			// As VPP: ~0 lists every interface, an index that one.
			if m.NameFilterValid {
				// As VPP: a name filter lists every interface whose
				// name holds it (case aside).
				if strings.Contains(strings.ToLower(f.ifaces[i].name), strings.ToLower(m.NameFilter)) {
					idx = append(idx, i)
				}
				continue
			}
			if m.SwIfIndex == ^interface_types.InterfaceIndex(0) || uint32(m.SwIfIndex) == i {
				idx = append(idx, i)
			}
		}
		slices.Sort(idx)
		for _, i := range idx {
			fi := f.ifaces[i]
			var flags interface_types.IfStatusFlags
			if fi.up {
				flags = interface_types.IF_STATUS_API_FLAG_ADMIN_UP | interface_types.IF_STATUS_API_FLAG_LINK_UP
			}
			sup := i
			if fi.sub {
				sup = fi.sup
			}
			out = append(out, &interfaces.SwInterfaceDetails{SwIfIndex: interface_types.InterfaceIndex(i), SupSwIfIndex: sup, SubID: fi.subID,
				InterfaceName: fi.name, Tag: fi.tag, Flags: flags, Mtu: []uint32{fi.mtu, 0, 0, 0}})
		}
		return out
	case *interfaces.SwInterfaceSetFlags:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceSetFlagsReply{}, errInvalidIndex)
		}
		f.ifaces[uint32(m.SwIfIndex)].up = m.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0
		return []api.Message{&interfaces.SwInterfaceSetFlagsReply{}}
	case *interfaces.SwInterfaceSetRxMode:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceSetRxModeReply{}, errInvalidIndex)
		}
		return []api.Message{&interfaces.SwInterfaceSetRxModeReply{}}
	case *interfaces.SwInterfaceTagAddDel:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceTagAddDelReply{}, errInvalidIndex)
		}
		f.ifaces[uint32(m.SwIfIndex)].tag = map[bool]string{true: m.Tag}[m.IsAdd]
		return []api.Message{&interfaces.SwInterfaceTagAddDelReply{}}
	case *gso.FeatureGsoEnableDisable:
		if f.noIface(m.SwIfIndex) {
			return rv(&gso.FeatureGsoEnableDisableReply{}, errInvalidIndex)
		}
		return []api.Message{&gso.FeatureGsoEnableDisableReply{}}
	case *interfaces.SwInterfaceSetMtu:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceSetMtuReply{}, errInvalidIndex)
		}
		f.ifaces[uint32(m.SwIfIndex)].mtu = m.Mtu[0]
		return []api.Message{&interfaces.SwInterfaceSetMtuReply{}}
	case *interfaces.SwInterfaceAddDelAddress:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceAddDelAddressReply{}, errInvalidIndex)
		}
		f.ifaces[uint32(m.SwIfIndex)].addrs++
		return []api.Message{&interfaces.SwInterfaceAddDelAddressReply{}}
	case *interfaces.SwInterfaceSetTable:
		if f.noIface(m.SwIfIndex) {
			return rv(&interfaces.SwInterfaceSetTableReply{}, errInvalidIndex)
		}
		ip6 := map[bool]uint32{true: 1}[m.IsIPv6]
		if _, ok := f.tables[[2]uint32{m.VrfID, ip6}]; !ok {
			return rv(&interfaces.SwInterfaceSetTableReply{}, int32(api.NO_SUCH_FIB))
		}
		return []api.Message{&interfaces.SwInterfaceSetTableReply{}}
	case *interfaces.SwInterfaceSetUnnumbered:
		if f.noIface(m.SwIfIndex) || f.noIface(m.UnnumberedSwIfIndex) {
			return rv(&interfaces.SwInterfaceSetUnnumberedReply{}, errInvalidIndex)
		}
		f.ifaces[uint32(m.UnnumberedSwIfIndex)].unnumTo = uint32(m.SwIfIndex)
		return []api.Message{&interfaces.SwInterfaceSetUnnumberedReply{}}

	case *ip.IPTableAddDel:
		k := [2]uint32{m.Table.TableID, map[bool]uint32{true: 1}[m.Table.IsIP6]}
		if m.IsAdd {
			f.tables[k] = m.Table.Name
		} else {
			if _, ok := f.tables[k]; !ok {
				return rv(&ip.IPTableAddDelReply{}, int32(api.NO_SUCH_FIB))
			}
			for rk := range f.routes {
				if rk.table == k {
					// As VPP: routes added through the API stay.
					f.leakedRoutes++
				}
			}
			delete(f.tables, k)
		}
		return []api.Message{&ip.IPTableAddDelReply{}}
	case *ip.IPTableDump:
		var out []api.Message
		for k, n := range f.tables {
			out = append(out, &ip.IPTableDetails{Table: ip.IPTable{TableID: k[0], IsIP6: k[1] == 1, Name: n}})
		}
		return out
	case *ip.IPRouteAddDel:
		ip6 := map[bool]uint32{true: 1}[m.Route.Prefix.Address.Af == 1]
		k := [2]uint32{m.Route.TableID, ip6}
		if _, ok := f.tables[k]; !ok {
			return rv(&ip.IPRouteAddDelReply{}, int32(api.NO_SUCH_FIB))
		}
		rk := routeKey{k, m.Route.Prefix.String()}
		if m.IsAdd {
			f.routes[rk] = m.Route
		} else {
			delete(f.routes, rk)
		}
		return []api.Message{&ip.IPRouteAddDelReply{}}
	case *ip.IPRouteDump:
		var out []api.Message
		k := [2]uint32{m.Table.TableID, map[bool]uint32{true: 1}[m.Table.IsIP6]}
		for rk, r := range f.routes {
			if rk.table == k {
				out = append(out, &ip.IPRouteDetails{Route: r})
			}
		}
		return out

	case *memif.MemifSocketFilenameAddDelV2:
		if m.IsAdd {
			id := m.SocketID
			if id == ^uint32(0) {
				for f.sockets[f.nextSock] != "" {
					f.nextSock++
				}
				id = f.nextSock
				f.nextSock++
			} else if fn, ok := f.sockets[id]; ok && fn != m.SocketFilename {
				return rv(&memif.MemifSocketFilenameAddDelV2Reply{}, errAlreadyExists)
			}
			f.sockets[id] = m.SocketFilename
			if len(f.sockets) > f.socketRoom {
				f.socketRoom = len(f.sockets)
				if f.memifsLocked() > 0 {
					f.socketGrowths++
				}
			}
			return []api.Message{&memif.MemifSocketFilenameAddDelV2Reply{SocketID: id}}
		}
		// As VPP 25.10 (memif_socket_filename_add_del): "invalid
		// argument" for socket 0 and an id it does not have, "unexpected
		// interface state" for a socket a memif uses.
		if _, ok := f.sockets[m.SocketID]; !ok || m.SocketID == 0 {
			return rv(&memif.MemifSocketFilenameAddDelV2Reply{}, int32(api.INVALID_ARGUMENT))
		}
		for _, i := range f.ifaces {
			if i.kind == "memif" && i.memif.SocketID == m.SocketID {
				return rv(&memif.MemifSocketFilenameAddDelV2Reply{}, int32(api.UNEXPECTED_INTF_STATE))
			}
		}
		delete(f.sockets, m.SocketID)
		return []api.Message{&memif.MemifSocketFilenameAddDelV2Reply{}}
	case *memif.MemifSocketFilenameDump:
		var out []api.Message
		for id, fn := range f.sockets {
			out = append(out, &memif.MemifSocketFilenameDetails{SocketID: id, SocketFilename: fn})
		}
		return out
	case *memif.MemifCreateV2:
		if _, ok := f.sockets[m.SocketID]; !ok {
			return rv(&memif.MemifCreateV2Reply{}, errNoSuchEntry)
		}
		i := f.newIface("memif", fmt.Sprintf("memif%d/%d", m.SocketID, m.ID))
		i.memif = *m
		f.memifRoom = max(f.memifRoom, f.memifsLocked())
		return []api.Message{&memif.MemifCreateV2Reply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *memif.MemifDelete:
		if f.noIface(m.SwIfIndex) {
			return rv(&memif.MemifDeleteReply{}, errInvalidIndex)
		}
		f.delIface(uint32(m.SwIfIndex))
		return []api.Message{&memif.MemifDeleteReply{}}
	case *memif.MemifDump:
		var out []api.Message
		for _, i := range f.ifaces {
			if i.kind == "memif" {
				out = append(out, &memif.MemifDetails{SwIfIndex: interface_types.InterfaceIndex(i.idx), SocketID: i.memif.SocketID, ID: i.memif.ID, Mode: i.memif.Mode, IfName: i.name})
			}
		}
		return out

	case *interfaces.CreateVlanSubif:
		parent, ok := f.ifaces[uint32(m.SwIfIndex)]
		if !ok || parent.sub {
			return rv(&interfaces.CreateVlanSubifReply{}, errInvalidIndex)
		}
		for _, i := range f.ifaces {
			if i.sub && i.sup == parent.idx && i.subID == m.VlanID {
				// VPP 25.10's answer (vl_api_create_vlan_subif_t_handler).
				return rv(&interfaces.CreateVlanSubifReply{}, int32(api.VLAN_ALREADY_EXISTS))
			}
		}
		i := f.newIface("sub", fmt.Sprintf("%s.%d", parent.name, m.VlanID))
		i.sub, i.sup, i.subID = true, parent.idx, m.VlanID
		return []api.Message{&interfaces.CreateVlanSubifReply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *interfaces.DeleteSubif:
		if i, ok := f.ifaces[uint32(m.SwIfIndex)]; !ok || !i.sub {
			return rv(&interfaces.DeleteSubifReply{}, errInvalidIndex)
		}
		f.delIface(uint32(m.SwIfIndex))
		return []api.Message{&interfaces.DeleteSubifReply{}}
	case *l2.L2InterfaceVlanTagRewrite:
		i, ok := f.ifaces[uint32(m.SwIfIndex)]
		if !ok || !i.sub {
			return rv(&l2.L2InterfaceVlanTagRewriteReply{}, errInvalidIndex)
		}
		i.vtrPop = m.VtrOp == vtrPop1
		return []api.Message{&l2.L2InterfaceVlanTagRewriteReply{}}

	case *af_packet.AfPacketCreateV3:
		i := f.newIface("afpacket", "host-"+m.HostIfName)
		i.host = m.HostIfName
		return []api.Message{&af_packet.AfPacketCreateV3Reply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *af_packet.AfPacketDelete:
		for _, i := range f.ifaces {
			if i.kind == "afpacket" && i.host == m.HostIfName {
				f.delIface(i.idx)
				return []api.Message{&af_packet.AfPacketDeleteReply{}}
			}
		}
		return rv(&af_packet.AfPacketDeleteReply{}, errInvalidIndex)
	case *af_packet.AfPacketDump:
		var out []api.Message
		for _, i := range f.ifaces {
			if i.kind == "afpacket" {
				out = append(out, &af_packet.AfPacketDetails{SwIfIndex: interface_types.InterfaceIndex(i.idx), HostIfName: i.host})
			}
		}
		return out

	case *tapv2.TapCreateV3:
		i := f.newIface("tap", fmt.Sprintf("tap%d", f.nextIndex))
		i.host, i.tag = m.HostIfName, m.Tag
		return []api.Message{&tapv2.TapCreateV3Reply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *tapv2.TapDeleteV2:
		if f.noIface(m.SwIfIndex) {
			return rv(&tapv2.TapDeleteV2Reply{}, errInvalidIndex)
		}
		f.delIface(uint32(m.SwIfIndex))
		return []api.Message{&tapv2.TapDeleteV2Reply{}}
	case *tapv2.SwInterfaceTapV2Dump:
		return nil

	case *vxlan.VxlanAddDelTunnelV3:
		if m.IsAdd {
			i := f.newIface("vxlan", fmt.Sprintf("vxlan_tunnel%d", f.nextIndex))
			i.vxlan = *m
			return []api.Message{&vxlan.VxlanAddDelTunnelV3Reply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
		}
		for _, i := range f.ifaces {
			if i.kind == "vxlan" && i.vxlan.Vni == m.Vni && i.vxlan.DstAddress == m.DstAddress {
				f.delIface(i.idx)
				return []api.Message{&vxlan.VxlanAddDelTunnelV3Reply{}}
			}
		}
		return rv(&vxlan.VxlanAddDelTunnelV3Reply{}, errNoSuchEntry)
	case *vxlan.VxlanTunnelV2Dump:
		var out []api.Message
		for _, i := range f.ifaces {
			if i.kind == "vxlan" {
				out = append(out, &vxlan.VxlanTunnelV2Details{SwIfIndex: interface_types.InterfaceIndex(i.idx), SrcAddress: i.vxlan.SrcAddress,
					DstAddress: i.vxlan.DstAddress, SrcPort: i.vxlan.SrcPort, DstPort: i.vxlan.DstPort, Vni: i.vxlan.Vni})
			}
		}
		return out

	case *wireguard.WireguardInterfaceCreate:
		i := f.newIface("wg", fmt.Sprintf("wg%d", f.nextIndex))
		i.wgPort, i.wgPriv, i.wgSrc = m.Interface.Port, slices.Clone(m.Interface.PrivateKey), m.Interface.SrcIP
		return []api.Message{&wireguard.WireguardInterfaceCreateReply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *wireguard.WireguardInterfaceDelete:
		if f.noIface(m.SwIfIndex) {
			return rv(&wireguard.WireguardInterfaceDeleteReply{}, errInvalidIndex)
		}
		f.delIface(uint32(m.SwIfIndex))
		return []api.Message{&wireguard.WireguardInterfaceDeleteReply{}}
	case *wireguard.WireguardInterfaceDump:
		var out []api.Message
		for _, i := range f.ifaces {
			if i.kind == "wg" {
				w := wireguard.WireguardInterface{SwIfIndex: interface_types.InterfaceIndex(i.idx), Port: i.wgPort, SrcIP: i.wgSrc, PublicKey: make([]byte, 32), PrivateKey: make([]byte, 32)}
				if m.ShowPrivateKey {
					copy(w.PrivateKey, i.wgPriv)
				}
				out = append(out, &wireguard.WireguardInterfaceDetails{Interface: w})
			}
		}
		return out
	case *wireguard.WireguardPeersDump:
		var out []api.Message
		for p := range f.peers {
			out = append(out, &wireguard.WireguardPeersDetails{Peer: f.peerInfo[p]})
		}
		return out
	case *wireguard.WireguardPeerAdd:
		if f.noIface(m.Peer.SwIfIndex) {
			return rv(&wireguard.WireguardPeerAddReply{}, errInvalidIndex)
		}
		p := f.nextPeer
		f.nextPeer++
		f.peers[p] = uint32(m.Peer.SwIfIndex)
		info := m.Peer
		info.PeerIndex = p
		f.peerInfo[p] = info
		return []api.Message{&wireguard.WireguardPeerAddReply{PeerIndex: p}}
	case *wireguard.WireguardPeerRemove:
		if _, ok := f.peers[m.PeerIndex]; !ok {
			return rv(&wireguard.WireguardPeerRemoveReply{}, errNoSuchEntry)
		}
		delete(f.peers, m.PeerIndex)
		delete(f.peerInfo, m.PeerIndex)
		return []api.Message{&wireguard.WireguardPeerRemoveReply{}}

	case *ipip.IpipAddTunnel:
		i := f.newIface("ipip", fmt.Sprintf("ipip%d", f.nextIndex))
		i.ipip = m.Tunnel
		return []api.Message{&ipip.IpipAddTunnelReply{SwIfIndex: interface_types.InterfaceIndex(i.idx)}}
	case *ipip.IpipDelTunnel:
		if f.noIface(m.SwIfIndex) {
			return rv(&ipip.IpipDelTunnelReply{}, errInvalidIndex)
		}
		if _, ok := f.protect[uint32(m.SwIfIndex)]; ok {
			return rv(&ipip.IpipDelTunnelReply{}, int32(api.INSTANCE_IN_USE))
		}
		f.delIface(uint32(m.SwIfIndex))
		return []api.Message{&ipip.IpipDelTunnelReply{}}
	case *ipip.IpipTunnelDump:
		var out []api.Message
		for _, i := range f.ifaces {
			if i.kind == "ipip" {
				out = append(out, &ipip.IpipTunnelDetails{Tunnel: ipip.IpipTunnel{SwIfIndex: interface_types.InterfaceIndex(i.idx), Src: i.ipip.Src, Dst: i.ipip.Dst}})
			}
		}
		return out
	case *ipsec.IpsecSadEntryAddV2:
		if f.sas[m.Entry.SadID] {
			return rv(&ipsec.IpsecSadEntryAddV2Reply{}, int32(api.ENTRY_ALREADY_EXISTS))
		}
		f.sas[m.Entry.SadID] = true
		return []api.Message{&ipsec.IpsecSadEntryAddV2Reply{}}
	case *ipsec.IpsecSadEntryDel:
		if !f.sas[m.ID] {
			return rv(&ipsec.IpsecSadEntryDelReply{}, errNoSuchEntry)
		}
		delete(f.sas, m.ID)
		return []api.Message{&ipsec.IpsecSadEntryDelReply{}}
	case *ipsec.IpsecTunnelProtectUpdate:
		if f.noIface(m.Tunnel.SwIfIndex) || !f.sas[m.Tunnel.SaOut] {
			return rv(&ipsec.IpsecTunnelProtectUpdateReply{}, errNoSuchEntry)
		}
		f.protect[uint32(m.Tunnel.SwIfIndex)] = m.Tunnel
		return []api.Message{&ipsec.IpsecTunnelProtectUpdateReply{}}
	case *ipsec.IpsecTunnelProtectDel:
		if _, ok := f.protect[uint32(m.SwIfIndex)]; !ok {
			return rv(&ipsec.IpsecTunnelProtectDelReply{}, errNoSuchEntry)
		}
		delete(f.protect, uint32(m.SwIfIndex))
		return []api.Message{&ipsec.IpsecTunnelProtectDelReply{}}
	case *ipsec.IpsecTunnelProtectDump:
		var out []api.Message
		for idx, p := range f.protect {
			if m.SwIfIndex == interface_types.InterfaceIndex(NoInterface) || uint32(m.SwIfIndex) == idx {
				out = append(out, &ipsec.IpsecTunnelProtectDetails{Tun: p})
			}
		}
		return out

	case *l2.SwInterfaceSetL2Xconnect:
		if f.noIface(m.RxSwIfIndex) {
			return rv(&l2.SwInterfaceSetL2XconnectReply{}, errInvalidIndex)
		}
		if m.Enable {
			if f.noIface(m.TxSwIfIndex) {
				return rv(&l2.SwInterfaceSetL2XconnectReply{}, errInvalidIndex)
			}
			f.l2xc[uint32(m.RxSwIfIndex)] = uint32(m.TxSwIfIndex)
		} else {
			delete(f.l2xc, uint32(m.RxSwIfIndex))
		}
		return []api.Message{&l2.SwInterfaceSetL2XconnectReply{}}
	case *l2.L2XconnectDump:
		var out []api.Message
		for rx, tx := range f.l2xc {
			out = append(out, &l2.L2XconnectDetails{RxSwIfIndex: interface_types.InterfaceIndex(rx), TxSwIfIndex: interface_types.InterfaceIndex(tx)})
		}
		return out
	case *l3xc.L3xcUpdate:
		if f.noIface(m.L3xc.SwIfIndex) {
			return rv(&l3xc.L3xcUpdateReply{}, errInvalidIndex)
		}
		f.l3xc[[2]uint32{uint32(m.L3xc.SwIfIndex), map[bool]uint32{true: 1}[m.L3xc.IsIP6]}] = m.L3xc
		return []api.Message{&l3xc.L3xcUpdateReply{}}
	case *l3xc.L3xcDel:
		k := [2]uint32{uint32(m.SwIfIndex), map[bool]uint32{true: 1}[m.IsIP6]}
		if _, ok := f.l3xc[k]; !ok {
			return rv(&l3xc.L3xcDelReply{}, errNoSuchEntry)
		}
		delete(f.l3xc, k)
		return []api.Message{&l3xc.L3xcDelReply{}}
	case *l3xc.L3xcDump:
		var out []api.Message
		for _, x := range f.l3xc {
			out = append(out, &l3xc.L3xcDetails{L3xc: x})
		}
		return out
	}
	panic(fmt.Sprintf("fake vpp: no handler for %s", req.GetMessageName()))
}
