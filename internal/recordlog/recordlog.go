// Package recordlog keeps small records in one append-only file, so that
// a process that restarts finds what the one before it was in the middle
// of. A record costs one write(2) to a file that is open already; one
// write(2) adds or drops any number of records at once.
//
// The file, <name>.log, holds lines "+<key> <data>" (a record added) and
// "-<key>" (a record dropped); <name>.lock is flocked while a process has
// the log open, so that no other one rewrites it underneath. The log is
// rewritten with the live records only (to a new file renamed over the
// old: it is whole at every moment) when it is opened and when dropped
// records outnumber live ones by CompactAfter, so it stays as small as
// what it describes.
//
// Nothing is synced: a write(2) this small to a regular file is whole or
// not there when the process is killed, and stays in the page cache for
// the next process; only a host crash can tear the last line, and a line
// without its newline is skipped at open. The caller says why that is
// enough for what it records (for both users, a host crash takes what
// the records describe with it).
package recordlog

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned (wrapped) by Open when another process (or
// another Log in this one) has the log open.
var ErrLocked = errors.New("the record log is open in another process")

// CompactAfter is how many dropped records the log may hold, beyond as
// many as it has live ones, before it is rewritten.
const CompactAfter = 1024

// Record is one live record. Keys count from 1.
type Record struct {
	Key  uint64
	Data []byte
}

// Log is an open record log.
type Log struct {
	path string // <dir>/<name>.log

	mu   sync.Mutex        // guards the fields below
	lock *os.File          // <name>.lock, flocked while the log is ours
	f    *os.File          // the log, open for appending; nil once closed
	live map[uint64][]byte // each live record's data, by key
	dead int               // dropped records in the log
	next uint64            // the next key
	bad  error             // lines that could not be read at open
}

// Open opens (creating dir and the log as needed) the log name in dir and
// reads the records it holds. Lines that cannot be read, but for a torn
// last line, are reported by Unreadable; they are dropped.
func Open(dir, name string) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record log: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record log: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("record log %s: %w", filepath.Join(dir, name+".log"), ErrLocked)
		}
		return nil, fmt.Errorf("record log: lock %s: %w", dir, err)
	}
	l := &Log{path: filepath.Join(dir, name+".log"), lock: lock, live: map[uint64][]byte{}, next: 1}
	b, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("record log: %w", err)
	}
	l.bad = l.parse(b)
	l.mu.Lock()
	err = l.compactLocked()
	l.mu.Unlock()
	if err != nil {
		lock.Close()
		return nil, err
	}
	return l, nil
}

// parse reads the log's lines into l.live and returns the lines it could
// not read. A last line without its newline is torn (a host crash in its
// write): skipped, with no error.
func (l *Log) parse(b []byte) error {
	var errs []error
	for n := 1; len(b) > 0; n++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // torn
		}
		line := b[:i]
		b = b[i+1:]
		if len(line) == 0 {
			continue
		}
		op, rest := line[0], line[1:]
		keyText, data, hasData := bytes.Cut(rest, []byte{' '})
		key, err := strconv.ParseUint(string(keyText), 10, 64)
		switch {
		case err != nil || key == math.MaxUint64: // next must not wrap
			errs = append(errs, fmt.Errorf("line %d: not a record", n))
			continue
		case op == '+' && hasData:
			l.live[key] = bytes.Clone(data)
		case op == '-' && !hasData:
			delete(l.live, key)
		default:
			errs = append(errs, fmt.Errorf("line %d: not a record", n))
			continue
		}
		if key >= l.next {
			l.next = key + 1
		}
	}
	// Logs the kernel forwarder wrote before it used this package counted
	// keys from 0: such a record is given a key of its own (the rewrite
	// at open keeps it), so that no caller sees key 0.
	if d, ok := l.live[0]; ok {
		delete(l.live, 0)
		l.live[l.next] = d
		l.next++
	}
	if len(errs) > 0 {
		return fmt.Errorf("record log %s: %w", l.path, errors.Join(errs...))
	}
	return nil
}

// Read returns the live records of the log name in dir (none when there
// is no log) as the next Open would find them, and the lines it could not
// read, without taking the log's lock or rewriting it: a log another
// process has open is read as it was at one moment (a rewrite renames a
// whole file in place; a line being written is torn and skipped).
func Read(dir, name string) ([]Record, error) {
	l := &Log{path: filepath.Join(dir, name+".log"), live: map[uint64][]byte{}, next: 1}
	b, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("record log: %w", err)
	}
	bad := l.parse(b)
	return l.recordsLocked(), bad
}

// Unreadable reports the lines Open could not read (and dropped), nil
// when there were none.
func (l *Log) Unreadable() error { return l.bad }

// Records returns the live records, by key (oldest first).
func (l *Log) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recordsLocked()
}

// Len reports how many records are live.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live)
}

// Add adds one record per data, in one write(2), and returns their keys.
// A data must not hold a newline.
func (l *Log) Add(data ...[]byte) ([]uint64, error) {
	if len(data) == 0 {
		return nil, nil
	}
	n := 0
	for _, d := range data {
		if bytes.IndexByte(d, '\n') >= 0 {
			return nil, errors.New("record log: a record holds a newline")
		}
		n += len(d) + 24
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil, errors.New("record log: closed")
	}
	buf := make([]byte, 0, n)
	keys := make([]uint64, len(data))
	for i, d := range data {
		keys[i] = l.next + uint64(i)
		buf = append(buf, '+')
		buf = strconv.AppendUint(buf, keys[i], 10)
		buf = append(append(append(buf, ' '), d...), '\n')
	}
	if _, err := l.f.Write(buf); err != nil {
		return nil, fmt.Errorf("record log: %w", err)
	}
	l.next += uint64(len(data))
	for i, d := range data {
		l.live[keys[i]] = bytes.Clone(d)
	}
	return keys, nil
}

// Drop drops the records keys, in one write(2); keys not live (dropped
// already) are skipped.
func (l *Log) Drop(keys ...uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []byte
	for _, k := range keys {
		if _, ok := l.live[k]; ok {
			buf = append(strconv.AppendUint(append(buf, '-'), k, 10), '\n')
		}
	}
	if len(buf) == 0 {
		return nil
	}
	if l.f == nil {
		return errors.New("record log: closed")
	}
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("record log: %w", err)
	}
	for _, k := range keys {
		if _, ok := l.live[k]; ok {
			delete(l.live, k)
			l.dead++
		}
	}
	if l.dead > CompactAfter && l.dead > len(l.live) {
		// Should it fail, the log is longer than it need be, no more.
		_ = l.compactLocked()
	}
	return nil
}

// Has reports whether key is a live record.
func (l *Log) Has(key uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.live[key]
	return ok
}

// compactLocked writes the live records to a new log and renames it over
// the old one.
func (l *Log) compactLocked() error {
	tmp := l.path + ".new"
	var buf []byte
	for _, r := range l.recordsLocked() {
		buf = append(strconv.AppendUint(append(buf, '+'), r.Key, 10), ' ')
		buf = append(append(buf, r.Data...), '\n')
	}
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return fmt.Errorf("record log: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("record log: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.dead = f, 0
	return nil
}

func (l *Log) recordsLocked() []Record {
	out := make([]Record, 0, len(l.live))
	for k, d := range l.live {
		out = append(out, Record{Key: k, Data: d})
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Close closes the log; its records stay for the next Open. Safe to call
// twice.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
	return nil
}
