package vpp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vwire/vwire/internal/recordlog"
)

// The intent journal. Some creates make an object that stays untagged
// until a later call (a memif socket for good; memifs, VXLAN, WireGuard and
// IP-in-IP tunnels until their setup; IPsec SAs until their tunnel's
// protection). When such a create's reply never comes (VPP slow, the
// connection lost) or the forwarder dies before the tag, VPP may hold an
// object no sweep finds: sweeps go by tag, and an attached VPP may hold
// untagged objects that are not vwire's. So before such a create is sent,
// the keys vwire chose for it (socket id and filename, memif id, tunnel
// parameters, a hash of the WireGuard key, SA id) are written to the
// journal, a record log (internal/recordlog) in the state directory, and
// the record is cleared once the object is known: tagged (the build
// succeeded), removed by the build's rollback, or found by a later lookup.
// Open intents are looked up by their keys at start, when the VPP
// connection comes back, and at their vWire's next Connect or Disconnect;
// an object found with no tag is deleted (one with a tag is its vWire's,
// left to the tag sweeps), and the record is cleared only once the lookup
// succeeded.
//
// Records are not synced (see recordlog): a forwarder that dies leaves
// its writes in the page cache for the next run, and a host that crashes
// takes VPP, and every object the journal names, with it (an attached
// VPP on the same host too). The pipelined build (memif, VXLAN, WireGuard
// sides) records its intents in one write(2) and clears them in another:
// two small writes per Connect; the step-by-step one writes before each
// create, and clears them all in one.

// Intent kinds, by the create they stand for.
const (
	intentMemifSocket = "memif-socket" // memif_socket_filename_add_del_v2: Sock (0: VPP chose it) and File
	intentMemif       = "memif"        // memif_create_v2: Sock, Memif, File (the socket's)
	intentVxlan       = "vxlan"        // vxlan_add_del_tunnel_v3: Src, Dst, Port, VNI
	intentWireguard   = "wireguard"    // wireguard_interface_create: Src, Port, KeyHash
	intentSA          = "sa"           // ipsec_sad_entry_add_v2: SA
	intentIpip        = "ipip"         // ipip_add_tunnel: Src, Dst
	// ReserveMemifs: File, its socket's. Its rounds create memifs on a
	// socket of their own and delete them; a forwarder that dies in a
	// round, or a round whose deletes fail, leaves them in VPP, untagged,
	// where they take the pool's room (memifroom.go) and keep the next
	// start from reserving (only into an empty pool).
	intentMemifReserve = "memif-reserve"
)

// reserveIntentID stands for the vWire id of the memif reserve's intents:
// it is no connection's.
const reserveIntentID = "/vwire/memif-reserve"

// intent is one create that may leave an untagged object: its vWire and
// the keys it is found by.
type intent struct {
	ID    string     `json:"id"`
	Kind  string     `json:"kind"`
	Sock  uint32     `json:"sock,omitempty"`
	Memif uint32     `json:"memif,omitempty"`
	File  string     `json:"file,omitempty"`
	Src   netip.Addr `json:"src,omitzero"`
	Dst   netip.Addr `json:"dst,omitzero"`
	Port  uint16     `json:"port,omitempty"`
	VNI   uint32     `json:"vni,omitempty"`
	// KeyHash is a WireGuard interface's private key's SHA-256: the key
	// itself never goes to disk.
	KeyHash string `json:"key,omitempty"`
	SA      uint32 `json:"sa,omitempty"`
}

func vxlanIntent(id string, t VxlanTunnel) intent {
	if t.Port == 0 {
		t.Port = 4789 // as VPP lists it (VxlanTunnel.request)
	}
	return intent{ID: id, Kind: intentVxlan, Src: t.Src, Dst: t.Dst, Port: t.Port, VNI: t.VNI}
}

func wireguardIntent(id string, w WireguardInterfaceSpec) intent {
	return intent{ID: id, Kind: intentWireguard, Src: w.Src, Port: w.Port, KeyHash: wireguardKeyHash(w.PrivateKey)}
}

func wireguardKeyHash(priv [WireguardKeyLen]byte) string {
	h := sha256.Sum256(priv[:])
	return hex.EncodeToString(h[:16])
}

// journal keeps the open intents, on disk and in memory.
type journal struct {
	log *recordlog.Log

	mu   sync.Mutex                   // guards the fields below
	byID map[string]map[uint64]intent // open intents by vWire id and key
}

// journalDir is where the journal of the forwarder on the VPP whose API
// socket is sock ("": a test's adapter) is kept: one per VPP, as several
// forwarders, each on its own VPP, may share a state directory.
func journalDir(stateDir, sock string) (dir, name string) {
	name = "adapter"
	if sock != "" {
		if abs, err := filepath.Abs(sock); err == nil {
			sock = abs
		}
		h := sha256.Sum256([]byte(sock))
		name = "vpp-" + hex.EncodeToString(h[:8])
	}
	return filepath.Join(stateDir, "intents"), name
}

// openJournal opens the journal in dir and reads the intents a previous
// run left open.
func openJournal(dir, name string) (*journal, error) {
	l, err := recordlog.Open(dir, name)
	if errors.Is(err, recordlog.ErrLocked) {
		return nil, fmt.Errorf("intent journal: %w: another forwarder is attached to this VPP with this state directory", err)
	}
	if err != nil {
		return nil, fmt.Errorf("intent journal: %w", err)
	}
	j := &journal{log: l, byID: map[string]map[uint64]intent{}}
	var bad []uint64
	for _, r := range l.Records() {
		var it intent
		if err := json.Unmarshal(r.Data, &it); err != nil || it.ID == "" || it.Kind == "" {
			bad = append(bad, r.Key)
			continue
		}
		j.addLocked(r.Key, it)
	}
	// A record that is not an intent can be looked for by nothing.
	if err := l.Drop(bad...); err != nil {
		l.Close()
		return nil, fmt.Errorf("intent journal: %w", err)
	}
	return j, nil
}

func (j *journal) addLocked(key uint64, it intent) {
	if j.byID[it.ID] == nil {
		j.byID[it.ID] = map[uint64]intent{}
	}
	j.byID[it.ID][key] = it
}

// record writes its, in one write(2), and returns their keys.
func (j *journal) record(its ...intent) ([]uint64, error) {
	data := make([][]byte, len(its))
	for i, it := range its {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("intent journal: %w", err)
		}
		data[i] = b
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	keys, err := j.log.Add(data...)
	if err != nil {
		return nil, fmt.Errorf("intent journal: %w", err)
	}
	for i, it := range its {
		j.addLocked(keys[i], it)
	}
	return keys, nil
}

// clear clears keys (those open) and returns the intents it cleared. An
// intent whose clearing cannot be written stays open: looked up again
// later, its object is found tagged or gone.
func (j *journal) clear(keys ...uint64) ([]intent, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.log.Drop(keys...); err != nil {
		return nil, fmt.Errorf("intent journal: %w", err)
	}
	var out []intent
	for _, k := range keys {
		for id, its := range j.byID {
			if it, ok := its[k]; ok {
				out = append(out, it)
				delete(its, k)
				if len(its) == 0 {
					delete(j.byID, id)
				}
				break
			}
		}
	}
	return out, nil
}

// of returns id's open intents, newest first (the order their objects are
// removed in: a memif before its socket).
func (j *journal) of(id string) (keys []uint64, its []intent) {
	j.mu.Lock()
	defer j.mu.Unlock()
	keys = slices.Sorted(maps.Keys(j.byID[id]))
	slices.Reverse(keys)
	for _, k := range keys {
		its = append(its, j.byID[id][k])
	}
	return keys, its
}

// has reports whether id has open intents.
func (j *journal) has(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.byID[id]) > 0
}

// ids returns the vWires with open intents.
func (j *journal) ids() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Sorted(maps.Keys(j.byID))
}

// openVNIs returns the VNIs open VXLAN intents name.
func (j *journal) openVNIs() []uint32 {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []uint32
	for _, its := range j.byID {
		for _, it := range its {
			if it.Kind == intentVxlan {
				out = append(out, it.VNI)
			}
		}
	}
	return out
}

// vniOpen reports whether an open VXLAN intent names vni: the VNI must not
// go to another vWire, whose tunnel a later lookup would take for it.
func (j *journal) vniOpen(vni uint32) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, its := range j.byID {
		for _, it := range its {
			if it.Kind == intentVxlan && it.VNI == vni {
				return true
			}
		}
	}
	return false
}

func (j *journal) close() {
	if j != nil {
		j.log.Close()
	}
}

// intend records it (before its create is sent) for the build whose undo
// stack is u; build clears it when done (settleIntents).
func (d *Dataplane) intend(u *undoStack, it intent) (uint64, error) {
	keys, err := d.intents.record(it)
	if err != nil {
		return 0, err
	}
	u.intents = append(u.intents, keys...)
	return keys[0], nil
}

// settleIntents clears the intents u's build recorded, but those whose
// undo failed: their objects may still be in VPP, untagged.
func (d *Dataplane) settleIntents(u *undoStack) {
	var done []uint64
	for _, k := range u.intents {
		if !slices.Contains(u.stuck, k) {
			done = append(done, k)
		}
	}
	u.intents, u.stuck = nil, nil
	d.clearIntents(done...)
}

// clearIntents clears keys, and frees the VNIs that only they held.
func (d *Dataplane) clearIntents(keys ...uint64) {
	if len(keys) == 0 {
		return
	}
	its, err := d.intents.clear(keys...)
	if err != nil {
		d.log.Warn("intents not cleared: looked up again later", "err", err)
		return
	}
	for _, it := range its {
		if it.Kind == intentVxlan {
			d.releaseVNIIfFree(it.ID, it.VNI)
		}
	}
}

// releaseVNIIfFree releases vni, which vWire id's intent named, unless a
// vWire holds it (id itself, most often: checked first) or an open intent
// names it.
func (d *Dataplane) releaseVNIIfFree(id string, vni uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range d.held[id] {
		if v == vni {
			return
		}
	}
	for _, roles := range d.held {
		for _, v := range roles {
			if v == vni {
				return
			}
		}
	}
	if !d.intents.vniOpen(vni) {
		d.vnis.Release(vni)
	}
}

// resolveIntents looks up id's open intents that no kept undo step stands
// for (d.leftovers: those run first), newest first, deletes what each
// finds untagged, and clears those whose lookup succeeded. It returns what
// failed; those intents stay open.
func (d *Dataplane) resolveIntents(ctx context.Context, cl *Client, id string) error {
	keys, its := d.intents.of(id)
	if len(keys) == 0 {
		return nil
	}
	d.mu.Lock()
	var kept []uint64
	for _, s := range d.leftovers[id] {
		kept = append(kept, s.intent)
	}
	d.mu.Unlock()
	var errs []error
	var done []uint64
	for i, k := range keys {
		if slices.Contains(kept, k) {
			continue
		}
		if err := d.resolveIntent(ctx, cl, its[i]); err != nil {
			errs = append(errs, fmt.Errorf("look for what a %s create may have made: %w", its[i].Kind, err))
			continue
		}
		done = append(done, k)
	}
	d.clearIntents(done...)
	return errors.Join(errs...)
}

// resolveAllIntents runs resolveIntents for every vWire with open intents
// (at start, and when the VPP connection comes back), each under its
// vWire's lock. What fails stays open for the next time.
func (d *Dataplane) resolveAllIntents(ctx context.Context) {
	for _, id := range d.intents.ids() {
		unlock := d.locks.Lock(id)
		err := d.resolveIntents(ctx, d.vpp.WithLogger(d.log.With("conn", id)), id)
		unlock()
		if err != nil {
			d.log.Error("objects creates with no answer may have made are still in VPP, untagged: kept in the intent journal, looked for again later",
				"conn", id, "err", err)
		}
	}
}

// resolveIntent looks for the object its create may have made, and
// deletes it if it has no tag. nil means the lookup succeeded: the object
// was deleted, was not there, or is tagged (its vWire's: a build that
// succeeded, left to the tag sweeps and to adoption).
func (d *Dataplane) resolveIntent(ctx context.Context, cl *Client, it intent) error {
	switch it.Kind {
	case intentMemifSocket:
		// A socket id may be given again after VPP restarted: the
		// filename must be the recorded one too.
		if it.Sock == 0 { // VPP was to choose it: only the filename finds it
			return deleteUnusedSockets(ctx, cl, it.File)
		}
		// In use: by a memif whose intent is resolved first (newest
		// first), so one that is tagged, the socket's.
		return deleteSocketOf(ctx, cl, it.File, it.Sock, deleteSweptMemifSocketCall(it.Sock))
	case intentMemif:
		// Looked up by its name, not in the list of every memif.
		m, ok, err := cl.findInterfaceNamed(ctx, memifName(it.Sock, it.Memif))
		if err != nil || !ok {
			return err
		}
		socks, err := cl.ListMemifSockets(ctx)
		if err != nil {
			return err
		}
		if !slices.Contains(socks, MemifSocket{ID: it.Sock, Filename: it.File}) {
			return nil // that id is another socket's now
		}
		idx := m.Index
		return deleteUntagged(ctx, cl, idx, func() error { return cl.DeleteMemif(ctx, idx) })
	case intentVxlan:
		t := VxlanTunnel{Src: it.Src, Dst: it.Dst, Port: it.Port, VNI: it.VNI}
		tunnels, err := cl.ListVxlanTunnels(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(tunnels, func(x VxlanTunnelInfo) bool { return x.VxlanTunnel == t })
		if i < 0 {
			return nil
		}
		return deleteUntagged(ctx, cl, tunnels[i].Index, func() error { return cl.DeleteVxlanTunnel(ctx, t) })
	case intentWireguard:
		wgs, err := cl.ListWireguardInterfaces(ctx)
		if err != nil {
			return err
		}
		for _, w := range wgs {
			if w.Src == it.Src && w.Port == it.Port && wireguardKeyHash(w.PrivateKey) == it.KeyHash {
				idx := w.Index
				return deleteUntagged(ctx, cl, idx, func() error { return cl.DeleteWireguardInterface(ctx, idx) })
			}
		}
		return nil
	case intentSA:
		// SAs have no tag: one a tunnel's protection uses is that
		// tunnel's (tagged before it was protected).
		prots, err := cl.ListTunnelProtections(ctx, NoInterface)
		if err != nil {
			return err
		}
		for _, p := range prots {
			if p.Out == it.SA || slices.Contains(p.In, it.SA) {
				return nil
			}
		}
		if err := cl.DeleteSA(ctx, it.SA); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	case intentIpip:
		return removeIpipTunnelOf(ctx, cl, IpipTunnel{Src: it.Src, Dst: it.Dst})
	case intentMemifReserve:
		return removeReserveLeft(ctx, cl, it.File)
	}
	// A kind this version does not know: nothing can look for it.
	d.log.Warn("intent journal: a record of an unknown kind dropped", "conn", it.ID, "kind", it.Kind)
	return nil
}

// deleteUntagged runs del when interface idx is there and has no tag.
func deleteUntagged(ctx context.Context, cl *Client, idx SwIfIndex, del func() error) error {
	i, ok, err := cl.GetInterface(ctx, idx)
	if err != nil || !ok || i.Tag != "" {
		return err
	}
	if err := del(); err != nil && !IsNotFound(err) {
		return err
	}
	cl.log.Info("an untagged object a create with no answer made: deleted", "sw_if_index", idx, "name", i.Name)
	return nil
}

// reserveJournaled grows VPP's pools of memif socket files and memifs
// (ReserveMemifSockets, ReserveMemifs) on socket file with its intent
// open, returns the room reached in both, and clears the intent once every round removed
// what it made. Under the reserve's lock: resolveAllIntents, when VPP
// comes back, must not take a round's memifs for leftovers.
func (d *Dataplane) reserveJournaled(ctx context.Context, file string) (reached int, err error) {
	unlock := d.locks.Lock(reserveIntentID)
	defer unlock()
	keys, err := d.intents.record(intent{ID: reserveIntentID, Kind: intentMemifReserve, File: file})
	if err != nil {
		return 0, err
	}
	// The socket files first, as many as memifs (a memif of a vWire has
	// a socket file of its own): the room is the smaller of the two
	// pools' (ReserveMemifSockets).
	socks, serr := d.vpp.ReserveMemifSockets(ctx, file, d.memifReserve, restoreWorkers)
	reached, merr := d.vpp.ReserveMemifs(ctx, file, socks, restoreWorkers)
	if err := errors.Join(serr, merr); err != nil {
		return min(reached, socks), err // its intent stays open: looked up again
	}
	d.clearIntents(keys...)
	return reached, nil
}

// resolveReserve removes what an earlier reserve left in VPP (its open
// intents): before a reserve, which goes only into an empty pool.
func (d *Dataplane) resolveReserve(ctx context.Context) error {
	unlock := d.locks.Lock(reserveIntentID)
	defer unlock()
	return d.resolveIntents(ctx, d.vpp, reserveIntentID)
}

// removeReserveLeft deletes the untagged memifs on the sockets named file
// (the reserve's, named by vwire), then those sockets.
func removeReserveLeft(ctx context.Context, cl *Client, file string) error {
	socks, err := cl.ListMemifSockets(ctx)
	if err != nil {
		return err
	}
	ids := map[uint32]bool{}
	for _, s := range socks {
		if s.Filename == file {
			ids[s.ID] = true
		}
	}
	if len(ids) == 0 {
		return nil
	}
	memifs, err := cl.ListMemifs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range memifs {
		if ids[m.SocketID] {
			idx := m.Index
			if err := deleteUntagged(ctx, cl, idx, func() error { return cl.DeleteMemif(ctx, idx) }); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return deleteUnusedSockets(ctx, cl, file)
}
