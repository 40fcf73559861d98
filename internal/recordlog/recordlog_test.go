package recordlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func datas(rs []Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d=%s", r.Key, r.Data))
	}
	return out
}

// TestReopen: records added and not dropped are there for the next Open,
// in key order; dropped ones are not; keys are never given twice.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, "x")
	must(t, err)
	keys, err := l.Add([]byte(`{"a":1}`), []byte(`{"b":2}`), []byte(`{"c":3}`))
	must(t, err)
	must(t, l.Drop(keys[1], keys[1], 99))
	must(t, l.Close())
	must(t, l.Close())
	if _, err := l.Add([]byte("x")); err == nil {
		t.Fatal("Add on a closed log did not fail")
	}

	l, err = Open(dir, "x")
	must(t, err)
	defer l.Close()
	got := strings.Join(datas(l.Records()), " ")
	if want := fmt.Sprintf(`%d={"a":1} %d={"c":3}`, keys[0], keys[2]); got != want {
		t.Fatalf("records %s, want %s", got, want)
	}
	more, err := l.Add([]byte("d"))
	must(t, err)
	if more[0] <= keys[2] {
		t.Fatalf("key %d given again (had up to %d)", more[0], keys[2])
	}
	must(t, l.Unreadable())
}

// TestTornLastLine: a last line cut mid-record (a host crash in its
// write) is skipped with no error, and the records before it are read;
// a bad line elsewhere is reported and skipped.
func TestTornLastLine(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		want      string
		bad       bool
	}{
		{name: "torn add", log: "+1 {\"a\":1}\n+2 {\"b\":2}\n+3 {\"c\"", want: `1={"a":1} 2={"b":2}`},
		{name: "torn drop", log: "+1 {\"a\":1}\n+2 {\"b\":2}\n-", want: `1={"a":1} 2={"b":2}`},
		{name: "torn key", log: "+1 a\n+2", want: `1=a`},
		{name: "whole", log: "+1 a\n+2 b\n-1\n", want: `2=b`},
		{name: "bad middle line", log: "+1 a\ngarbage\n+2 b\n", want: `1=a 2=b`, bad: true},
		{name: "drop with data", log: "+1 a\n-1 x\n", want: `1=a`, bad: true},
		{name: "empty", log: "", want: ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "x.log"), []byte(tc.log), 0o600))
			l, err := Open(dir, "x")
			must(t, err)
			defer l.Close()
			if got := strings.Join(datas(l.Records()), " "); got != tc.want {
				t.Fatalf("records %q, want %q", got, tc.want)
			}
			if bad := l.Unreadable() != nil; bad != tc.bad {
				t.Fatalf("Unreadable() = %v, want an error: %v", l.Unreadable(), tc.bad)
			}
			// The torn line is gone from the file: what is added next
			// is a line of its own.
			_, err = l.Add([]byte("next"))
			must(t, err)
			must(t, l.Close())
			l2, err := Open(dir, "x")
			must(t, err)
			defer l2.Close()
			must(t, l2.Unreadable())
			if n := len(l2.Records()); n != len(l.live) {
				t.Fatalf("%d records after reopening, want %d", n, len(l.live))
			}
		})
	}
}

// TestOneOpen: a second Open of the same log fails with ErrLocked until
// the first is closed.
func TestOneOpen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, "x")
	must(t, err)
	if _, err := Open(dir, "x"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	must(t, l.Close())
	l, err = Open(dir, "x")
	must(t, err)
	l.Close()
}

// TestCompaction: a log whose dropped records outnumber live ones by
// CompactAfter is rewritten with the live ones only.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, "x")
	must(t, err)
	defer l.Close()
	kept, err := l.Add([]byte("kept"))
	must(t, err)
	for range CompactAfter + 1 {
		k, err := l.Add([]byte("gone"))
		must(t, err)
		must(t, l.Drop(k...))
	}
	b, err := os.ReadFile(filepath.Join(dir, "x.log"))
	must(t, err)
	if want := fmt.Sprintf("+%d kept\n", kept[0]); string(b) != want {
		t.Fatalf("log after compaction %q, want %q", b, want)
	}
	if _, err := l.Add([]byte("a\nb")); err == nil {
		t.Fatal("a record with a newline was taken")
	}
}

// BenchmarkAddDrop is one record's cost: added, then dropped.
func BenchmarkAddDrop(b *testing.B) {
	l, err := Open(b.TempDir(), "x")
	must(b, err)
	defer l.Close()
	rec := []byte(`{"id":"0123456789abcdef","kind":"memif","sock":12,"file":"/var/lib/vwire/vpp/memif/abc/out.sock"}`)
	for b.Loop() {
		k, err := l.Add(rec, rec)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Drop(k...); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOpen: any log file opens without a panic, and what it reads is
// what the rewritten log reads again.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("+1 a\n+2 b\n-1\n"))
	f.Add([]byte("+1 {\"a\":1}\n+2 {\"b\""))
	f.Add([]byte("garbage\n-\n+\n+x y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "x.log"), b, 0o600))
		l, err := Open(dir, "x")
		must(t, err)
		first := strings.Join(datas(l.Records()), "\n")
		must(t, l.Close())
		l, err = Open(dir, "x")
		must(t, err)
		defer l.Close()
		must(t, l.Unreadable())
		if again := strings.Join(datas(l.Records()), "\n"); again != first {
			t.Fatalf("records %q, after rewriting %q", first, again)
		}
	})
}

// TestKeyZero: a log whose keys count from 0 (the kernel forwarder's
// pairs.log before it used this package) is read; its record 0 gets a key
// of its own, which the next Open finds again, and a dropped 0 stays
// dropped.
func TestKeyZero(t *testing.T) {
	for _, tc := range []struct{ name, log, want string }{
		{name: "live", log: "+0 a\n+1 b\n+2 c\n-1\n", want: "2=c 3=a"},
		{name: "dropped", log: "+0 a\n+1 b\n-0\n", want: "1=b"},
		{name: "alone", log: "+0 a\n", want: "1=a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "x.log"), []byte(tc.log), 0o600))
			for range 2 {
				l, err := Open(dir, "x")
				must(t, err)
				must(t, l.Unreadable())
				got := strings.Join(datas(l.Records()), " ")
				must(t, l.Close())
				if got != tc.want {
					t.Fatalf("records %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// TestRead: Read finds what the next Open would, while another Log has
// the log open, and neither takes its lock nor rewrites it.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	if recs, err := Read(dir, "x"); err != nil || len(recs) != 0 {
		t.Fatalf("no log: %v, %v", recs, err)
	}
	l, err := Open(dir, "x")
	must(t, err)
	defer l.Close()
	keys, err := l.Add([]byte("a"), []byte("b"))
	must(t, err)
	must(t, l.Drop(keys[0]))
	recs, err := Read(dir, "x")
	must(t, err)
	if got := strings.Join(datas(recs), " "); got != fmt.Sprintf("%d=b", keys[1]) {
		t.Fatalf("Read: %q", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "x.log"))
	must(t, err)
	if strings.Count(string(b), "\n") != 3 {
		t.Fatalf("the log was rewritten by Read:\n%s", b)
	}
	f, err := os.OpenFile(filepath.Join(dir, "x.log"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("junk\n+7 torn")
	f.Close()
	must(t, err)
	if recs, err := Read(dir, "x"); err == nil || len(recs) != 1 {
		t.Fatalf("a bad line: %d records, err %v", len(recs), err)
	}
}
