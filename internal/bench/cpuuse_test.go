package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name      string
		line      string
		user, sys time.Duration
		ppid      int
		wantErr   bool
	}{
		{name: "plain", line: "42 (vwire) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 1 1 1",
			user: 2500 * time.Millisecond, sys: 310 * time.Millisecond, ppid: 7},
		{name: "name with spaces and parentheses", line: "9 (a) b (c)) R 2 0 0 0 -1 0 0 0 0 0 1 2 0 0",
			user: 10 * time.Millisecond, sys: 20 * time.Millisecond, ppid: 2},
		{name: "no name", line: "9 a R 2", wantErr: true},
		{name: "short", line: "9 (a) R 2 0 0", wantErr: true},
		{name: "bad time", line: "9 (a) R 2 0 0 0 -1 0 0 0 0 0 x 2", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ppid, err := parseProcStat([]byte(tc.line))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %q: %+v, want an error", tc.line, c)
				}
				return
			}
			if err != nil || c.user != tc.user || c.sys != tc.sys || ppid != tc.ppid {
				t.Fatalf("got %+v ppid %d err %v; want user %v sys %v ppid %d", c, ppid, err, tc.user, tc.sys, tc.ppid)
			}
		})
	}
}

func TestParseMachineStat(t *testing.T) {
	irq, busy, err := parseMachineStat([]byte("cpu  100 5 40 9000 7 3 2 11 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil || irq != 50*time.Millisecond || busy != 1500*time.Millisecond {
		t.Fatalf("irq %v busy %v err %v; want 50ms, 1.5s", irq, busy, err)
	}
	if _, _, err := parseMachineStat([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("a first line that is not cpu's parsed")
	}
}

// TestCPUWatch reads this machine's counters: this process burns CPU
// between two snaps, and the snaps see it.
func TestCPUWatch(t *testing.T) {
	c := &cpuWatch{names: []string{"bench client"}, pids: []int{os.Getpid()}}
	a, err := c.snap()
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
	}
	b, err := c.snap()
	if err != nil {
		t.Fatal(err)
	}
	if b.procs[0].total() <= a.self.total() || b.busy <= a.busy {
		t.Fatalf("100 ms spinning not seen: process %v → %v, machine %v → %v", a.self, b.procs[0], a.busy, b.busy)
	}
	rows := c.rows("latency", "test", a, b, 1, 0)
	if len(rows) != 5 || rows[0].Value <= 0 || rows[0].Skipped != "" {
		t.Fatalf("rows %+v", rows)
	}
	// Nothing counted between two equal snaps: skipped, not a zero.
	for _, r := range c.rows("latency", "test", b, b, 1, 1) {
		if r.Skipped == "" || r.Baseline != nil {
			t.Errorf("no CPU counted, yet %+v", r)
		}
	}
}

func TestProcLabel(t *testing.T) {
	for in, want := range map[string]string{"nse-lat-1796529966961481900": "nse-lat", "node1": "node1", "nse-lat-r-17": "nse-lat-r", "a-b": "a-b", "-5": "-5"} {
		if got := procLabel(in); got != want {
			t.Errorf("procLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
