package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/internal/recordlog"
)

// A direct pair (direct.go) has nothing in the forwarder's namespace, so a
// restarted forwarder could not list it at start. Each one has a record
// instead, written before the pair is made and dropped once it is deleted
// (by the reaper after a Close). At start records are orphans, like links
// found by alias; one whose connection is not refreshed within the grace
// has its ends found (by the identity of their namespaces) and deleted.
//
// The records are kept in a record log (internal/recordlog), pairs.log in
// the state directory: a record costs its Connect one write(2) to a file
// that is open already. A file of its own (create, write, close; unlink
// later) cost a new inode and directory entry each time, 0.1-0.5 ms on
// ext4, most of the price of a pair's Connect after the kernel's own
// work. Nothing is synced: a host that crashes takes every namespace, and
// so every pair, with it.

// pairRecord is what finding a pair's ends again needs.
type pairRecord struct {
	ID   string      `json:"id"`
	Ends []recordEnd `json:"ends"` // the client's end, then the endpoint's
	key  string      // its key in the log
}

// recordEnd is one end: its interface name, the path the mechanism named
// for its namespace (it may name another namespace, or none, by the time
// it is read) and the namespace's identity, which does not change.
type recordEnd struct {
	Name string `json:"name"`
	Path string `json:"netns"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
}

// records keeps the records in a log in dir; one with no dir keeps none.
// Keys are the log's, in decimal ("" is none), as direct pairs hold them.
type records struct {
	dir   string
	log   *recordlog.Log
	found []pairRecord // the records a previous run left, for list; set at open
	errs  error        // unreadable records found at open
}

const recordLog = "pairs" // pairs.log, pairs.lock

// openRecords keeps records under dir for the forwarder whose namespace
// is nsPath ("": this process's), and reads what a previous run left.
func openRecords(dir, nsPath string) (*records, error) {
	if dir == "" {
		return &records{}, nil
	}
	if nsPath == "" {
		nsPath = "/proc/self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return nil, fmt.Errorf("state directory: the forwarder's netns: %w", err)
	}
	dir = filepath.Join(dir, fmt.Sprintf("netns-%x-%x", st.Dev, st.Ino))
	// One forwarder at a time: another's rewrite of the log would take
	// this one's later lines with the old file.
	l, err := recordlog.Open(dir, recordLog)
	if errors.Is(err, recordlog.ErrLocked) {
		return nil, fmt.Errorf("state directory %s: another forwarder in this network namespace keeps its pair records there; give each its own --state-dir", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	r := &records{dir: dir, log: l}
	if err := r.load(); err != nil {
		l.Close()
		return nil, err
	}
	return r, nil
}

// load reads the log's records, drops those that are not pair records,
// and moves into the log the files of one record each that runs before
// the log left.
func (r *records) load() error {
	var errs []error
	if err := r.log.Unreadable(); err != nil {
		errs = append(errs, fmt.Errorf("pair records: %w", err))
	}
	var bad []uint64
	for _, lr := range r.log.Records() {
		rec, err := parseRecord(lr.Data)
		if err != nil {
			errs = append(errs, fmt.Errorf("pair record %d: %w", lr.Key, err))
			bad = append(bad, lr.Key)
			continue
		}
		rec.key = strconv.FormatUint(lr.Key, 10)
		r.found = append(r.found, rec)
	}
	// Nothing can be done with them.
	if err := r.log.Drop(bad...); err != nil {
		return fmt.Errorf("pair records: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(r.dir, "*.pair"))
	var recs []pairRecord
	var datas [][]byte
	var moved []string
	for _, path := range old {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			var rec pairRecord
			if rec, err = parseRecord(b); err == nil {
				line, merr := json.Marshal(rec)
				if merr != nil {
					return fmt.Errorf("pair record %s: %w", path, merr)
				}
				recs, datas, moved = append(recs, rec), append(datas, line), append(moved, path)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pair record %s: %w", path, err))
		}
	}
	keys, err := r.log.Add(datas...)
	if err != nil {
		return fmt.Errorf("pair records: %w", err)
	}
	for i, rec := range recs {
		rec.key = strconv.FormatUint(keys[i], 10)
		r.found = append(r.found, rec)
	}
	for _, path := range moved {
		os.Remove(path) // in the log now
	}
	r.errs = errors.Join(errs...)
	return nil
}

func parseRecord(b []byte) (pairRecord, error) {
	var rec pairRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, err
	}
	if rec.ID == "" || len(rec.Ends) != 2 {
		return rec, errors.New("not a pair record")
	}
	return rec, nil
}

// close closes the log; the records stay for the next run.
func (r *records) close() {
	if r.log != nil {
		r.log.Close()
	}
}

// write records id's pair with both ends' namespaces (h) and returns its
// key ("" when records are not kept).
func (r *records) write(id string, h *pairHandles, p directPair) (string, error) {
	if r.log == nil {
		return "", nil
	}
	rec := pairRecord{ID: id}
	for _, e := range []struct {
		s  vethSpec
		ns netns.NsHandle
	}{{p.in, h.inNS}, {p.out, h.outNS}} {
		var st unix.Stat_t
		if err := unix.Fstat(int(e.ns), &st); err != nil {
			return "", fmt.Errorf("record pair: stat netns %s: %w", e.s.netns, err)
		}
		rec.Ends = append(rec.Ends, recordEnd{Name: e.s.name, Path: e.s.netns, Dev: st.Dev, Ino: st.Ino})
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("record pair: %w", err)
	}
	keys, err := r.log.Add(b)
	if err != nil {
		return "", fmt.Errorf("record pair: %w", err)
	}
	return strconv.FormatUint(keys[0], 10), nil
}

// logKey is key's in the log; ok is false for none ("") or one that is no
// key, which no record has.
func logKey(key string) (uint64, bool) {
	k, err := strconv.ParseUint(key, 10, 64)
	return k, err == nil
}

// remove drops the record key; none ("") or one dropped already is fine.
func (r *records) remove(key string) error {
	k, ok := logKey(key)
	if !ok || r.log == nil {
		return nil
	}
	if err := r.log.Drop(k); err != nil {
		return fmt.Errorf("remove pair record: %w", err)
	}
	return nil
}

// has reports whether key is a live record.
func (r *records) has(key string) bool {
	k, ok := logKey(key)
	return ok && r.log != nil && r.log.Has(k)
}

// list returns the records a previous run left, and those it could not
// read as errors (they are dropped: nothing can be done with them).
func (r *records) list() ([]pairRecord, error) {
	return slices.Clone(r.found), r.errs
}

// removePairs deletes what is left of recs' pairs (removeRecorded) and
// then their records; a record whose pair could not be deleted stays.
func (r *records) removePairs(recs []pairRecord) error {
	var errs []error
	for _, rec := range recs {
		err := removeRecorded(rec)
		if err == nil {
			err = r.remove(rec.key)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeRecorded deletes what is left of rec's pair: in each end's
// namespace, if it still exists, the links whose alias is rec's id's
// workload end (deleting one end deletes both).
func removeRecorded(rec pairRecord) error {
	var errs []error
	for _, e := range rec.Ends {
		ns, ok := findNetNS(e)
		if !ok {
			continue // the namespace is gone, and the pair with it
		}
		err := func() error {
			defer ns.Close()
			h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
			if err != nil {
				return fmt.Errorf("netlink in %s: %w", e.Path, err)
			}
			defer h.Close()
			links, err := h.LinkList()
			if err != nil {
				return fmt.Errorf("list links in %s: %w", e.Path, err)
			}
			for _, l := range links {
				if l.Attrs().Alias == alias(roleWL, rec.ID) {
					if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
						return fmt.Errorf("delete %s in %s: %w", l.Attrs().Name, e.Path, err)
					}
				}
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// findNetNS opens the namespace of e: by its recorded path if that still
// names it, else by any process's (or thread's) or a named namespace's
// path that does. ok is false when none does: it is gone.
func findNetNS(e recordEnd) (netns.NsHandle, bool) {
	if ns, err := openNetNS(e.Path); err == nil {
		if isNetNS(ns, e) {
			return ns, true
		}
		ns.Close()
	}
	var paths []string
	for _, g := range []string{"/run/netns/*", "/proc/[0-9]*/ns/net", "/proc/[0-9]*/task/[0-9]*/ns/net"} {
		m, _ := filepath.Glob(g)
		paths = append(paths, m...)
	}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Dev != e.Dev || st.Ino != e.Ino {
			continue
		}
		ns, err := netns.GetFromPath(p)
		if err != nil {
			continue // went meanwhile
		}
		if isNetNS(ns, e) {
			return ns, true
		}
		ns.Close()
	}
	return netns.None(), false
}

func isNetNS(ns netns.NsHandle, e recordEnd) bool {
	var st unix.Stat_t
	return unix.Fstat(int(ns), &st) == nil && st.Dev == e.Dev && st.Ino == e.Ino
}
