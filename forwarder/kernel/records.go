package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A direct pair (direct.go) has nothing in the forwarder's namespace, so a
// restarted forwarder could not list it at start. Each one has a record
// instead, a small file in the state directory written before the pair is
// made and removed once it is deleted (by the reaper after a Close). At
// start records are orphans, like links found by alias; one whose
// connection is not refreshed within the grace has its ends found (by the
// identity of their namespaces) and deleted. Records are not synced: a
// host that crashes takes every namespace, and so every pair, with it.

// pairRecord is what finding a pair's ends again needs.
type pairRecord struct {
	ID   string      `json:"id"`
	Ends []recordEnd `json:"ends"` // the client's end, then the endpoint's
	path string      // its file
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

// records keeps the records in dir; a zero records keeps none.
type records struct{ dir string }

// openRecords keeps records under dir for the forwarder whose namespace
// is nsPath ("": this process's).
func openRecords(dir, nsPath string) (records, error) {
	if dir == "" {
		return records{}, nil
	}
	if nsPath == "" {
		nsPath = "/proc/self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return records{}, fmt.Errorf("state directory: the forwarder's netns: %w", err)
	}
	dir = filepath.Join(dir, fmt.Sprintf("netns-%x-%x", st.Dev, st.Ino))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return records{}, fmt.Errorf("state directory: %w", err)
	}
	return records{dir: dir}, nil
}

// newPath is a record file for id, a new one each time: the reaper
// removes a closed pair's record after the Close has returned, when id may
// have been connected again. Ids are the peers' strings, so the name is a
// hash of one.
func (r records) newPath(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(r.dir, hex.EncodeToString(sum[:12])+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".pair")
}

// write records id's pair with both ends' namespaces (h) and returns its
// file ("" when records are not kept). One write(2) of a few hundred bytes
// to a new file: a process killed meanwhile leaves it whole or empty (and
// the pair not made yet), so no temporary file and rename (which cost as
// much again).
func (r records) write(id string, h *pairHandles, p directPair) (string, error) {
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
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("record pair: %w", err)
	}
	path := r.newPath(id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("record pair: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("record pair: %w", err)
	}
	return path, nil
}

// removeRecord drops the record in path; none ("") is fine.
func removeRecord(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pair record: %w", err)
	}
	return nil
}

// list reads every record; unreadable ones are returned as errors (and
// removed: nothing can be done with them).
func (r records) list() ([]pairRecord, error) {
	if r.dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("pair records: %w", err)
	}
	var recs []pairRecord
	var errs []error
	for _, e := range ents {
		path := filepath.Join(r.dir, e.Name())
		if !strings.HasSuffix(e.Name(), ".pair") {
			continue
		}
		b, err := os.ReadFile(path)
		var rec pairRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil && (rec.ID == "" || len(rec.Ends) != 2) {
			err = errors.New("not a pair record")
		}
		if err != nil {
			// Empty when the run stopped as it wrote it, before it
			// made the pair.
			if len(b) > 0 {
				errs = append(errs, fmt.Errorf("pair record %s: %w", path, err))
			}
			os.Remove(path)
			continue
		}
		rec.path = path
		recs = append(recs, rec)
	}
	return recs, errors.Join(errs...)
}

// removeRecords deletes what is left of recs' pairs (removeRecorded) and
// then their records; a record whose pair could not be deleted stays.
func removeRecords(recs []pairRecord) error {
	var errs []error
	for _, r := range recs {
		err := removeRecorded(r)
		if err == nil {
			err = removeRecord(r.path)
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
