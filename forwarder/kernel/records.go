package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A direct pair (direct.go) has nothing in the forwarder's namespace, so a
// restarted forwarder could not list it at start. Each one has a record
// instead, written before the pair is made and dropped once it is deleted
// (by the reaper after a Close). At start records are orphans, like links
// found by alias; one whose connection is not refreshed within the grace
// has its ends found (by the identity of their namespaces) and deleted.
//
// The records are lines of one append-only file, pairs.log, in the state
// directory: "+<key> <record>" when a pair is recorded, "-<key>" when its
// record is dropped. A record costs its Connect one write(2) to a file
// that is open already: a file of its own (create, write, close; unlink
// later) cost a new inode and directory entry each time, 0.1-0.5 ms on
// ext4, most of the price of a pair's Connect after the kernel's own
// work. A write(2) this small to a regular file is whole or not there
// when the process is killed; a torn last line (a host crash) is skipped.
// Nothing is synced: a host that crashes takes every namespace, and so
// every pair, with it. The file is rewritten with the live records only
// when a run opens it and when dropped lines outnumber live ones (see
// compactAfter), so it stays as small as what it describes.

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

// compactAfter is how many dropped records the log may hold, beyond as
// many as it has live ones, before it is rewritten.
const compactAfter = 1024

// records keeps the records in a log in dir; one with no dir keeps none.
type records struct {
	dir string

	mu    sync.Mutex        // guards the fields below
	lock  *os.File          // pairs.lock, flocked while the log is ours
	f     *os.File          // the log, open for appending
	live  map[string][]byte // the line of each live record, by key
	dead  int               // dropped records in the log
	next  uint64            // the next key
	found []pairRecord      // the records a previous run left, for list
	errs  error             // unreadable records found at open
}

const recordLog = "pairs.log"

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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// One forwarder at a time: another's rewrite of the log would take
	// this one's later lines with the old file.
	lock, err := os.OpenFile(filepath.Join(dir, "pairs.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory %s: another forwarder in this network namespace keeps its pair records there; give each its own --state-dir", dir)
		}
		return nil, fmt.Errorf("state directory: lock %s: %w", dir, err)
	}
	r := &records{dir: dir, live: map[string][]byte{}, lock: lock}
	old, err := r.load()
	if err == nil {
		r.mu.Lock()
		err = r.compactLocked()
		r.mu.Unlock()
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	for _, path := range old {
		os.Remove(path) // in the log now
	}
	return r, nil
}

// load reads the log, and the files of one record each that runs before
// the log left (returned: they go once the log holds them).
func (r *records) load() ([]string, error) {
	var errs []error
	b, err := os.ReadFile(filepath.Join(r.dir, recordLog))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pair records: %w", err)
	}
	recs := map[string]pairRecord{}
	var order []string
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if line == "" {
			continue
		}
		key, rest, _ := strings.Cut(line[1:], " ")
		switch {
		case line[0] == '-' && rest == "":
			delete(recs, key)
		case line[0] == '+':
			rec, err := parseRecord([]byte(rest))
			if err != nil {
				if i < len(lines)-1 { // not a torn last line
					errs = append(errs, fmt.Errorf("pair record %s: %w", key, err))
				}
				continue
			}
			if _, dup := recs[key]; !dup {
				order = append(order, key)
			}
			recs[key] = rec
		default:
			errs = append(errs, fmt.Errorf("pair records: line %d: not a record", i+1))
			continue
		}
		if n, err := strconv.ParseUint(key, 10, 64); err == nil && n >= r.next {
			r.next = n + 1
		}
	}
	old, _ := filepath.Glob(filepath.Join(r.dir, "*.pair"))
	for _, path := range old {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			var rec pairRecord
			if rec, err = parseRecord(b); err == nil {
				key := strconv.FormatUint(r.next, 10)
				r.next++
				order = append(order, key)
				recs[key] = rec
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pair record %s: %w", path, err))
		}
	}
	for _, key := range order {
		rec, ok := recs[key]
		if !ok {
			continue
		}
		line, err := recordLine(key, rec)
		if err != nil {
			return nil, err
		}
		rec.key = key
		r.live[key] = line
		r.found = append(r.found, rec)
		delete(recs, key)
	}
	r.errs = errors.Join(errs...)
	return old, nil
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

func recordLine(key string, rec pairRecord) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("record pair: %w", err)
	}
	line := make([]byte, 0, len(key)+len(b)+3)
	line = append(append(append(append(line, '+'), key...), ' '), b...)
	return append(line, '\n'), nil
}

// compactLocked writes the live records to a new log and puts it in the
// old one's place (a rename: the log is whole at every moment).
func (r *records) compactLocked() error {
	path := filepath.Join(r.dir, recordLog)
	tmp := path + ".new"
	var buf []byte
	for _, line := range r.live {
		buf = append(buf, line...)
	}
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return fmt.Errorf("pair records: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pair records: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pair records: %w", err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.dead = f, 0
	return nil
}

// close closes the log; the records stay for the next run.
func (r *records) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	if r.lock != nil {
		r.lock.Close()
		r.lock = nil
	}
}

// write records id's pair with both ends' namespaces (h) and returns its
// key ("" when records are not kept).
func (r *records) write(id string, h *pairHandles, p directPair) (string, error) {
	if r.dir == "" {
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return "", errors.New("record pair: the records are closed")
	}
	key := strconv.FormatUint(r.next, 10)
	line, err := recordLine(key, rec)
	if err != nil {
		return "", err
	}
	if _, err := r.f.Write(line); err != nil {
		return "", fmt.Errorf("record pair: %w", err)
	}
	r.next++
	r.live[key] = line
	return key, nil
}

// remove drops the record key; none ("") or one dropped already is fine.
func (r *records) remove(key string) error {
	if key == "" || r.dir == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.live[key]; !ok {
		return nil
	}
	if r.f == nil {
		return errors.New("remove pair record: the records are closed")
	}
	if _, err := r.f.WriteString("-" + key + "\n"); err != nil {
		return fmt.Errorf("remove pair record: %w", err)
	}
	delete(r.live, key)
	r.dead++
	if r.dead > compactAfter && r.dead > len(r.live) {
		if err := r.compactLocked(); err != nil {
			// The log is longer than it need be, no more.
			return nil
		}
	}
	return nil
}

// has reports whether key is a live record.
func (r *records) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.live[key]
	return ok
}

// list returns the records a previous run left, and those it could not
// read as errors (they are dropped: nothing can be done with them).
func (r *records) list() ([]pairRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
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
