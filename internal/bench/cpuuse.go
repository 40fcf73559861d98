package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Where the CPU of a phase goes: each process's user and system time (the
// kernel's work for its system calls, its netlink requests among them, is
// system time), the kernel's own threads (kworkers running deferred work
// such as IPv6 address configuration and link-watch events, RCU,
// ksoftirqd), the interrupts /proc/stat counts apart, and the whole
// machine, from /proc. The machine's figure also holds whatever else runs
// on it: read it next to the load average.

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go runs on but alpha and ia64.
const clockTick = 10 * time.Millisecond

// cpuTimes is CPU time used so far.
type cpuTimes struct {
	user, sys time.Duration
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{c.user - o.user, c.sys - o.sys} }
func (c cpuTimes) total() time.Duration    { return c.user + c.sys }

// cpuSnap is the CPU used so far by a set of named processes, the
// kernel's threads, interrupts and the whole machine.
type cpuSnap struct {
	procs    []cpuTimes // as the cpuWatch's pids; procs[0] is this one
	kthreads time.Duration
	irq      time.Duration // hard and soft interrupts
	busy     time.Duration // every CPU, all but idle, iowait and steal
	// self is this process's CPU at the end of the snap: what it spent
	// reading /proc is no vWire's.
	self cpuTimes
}

// cpuWatch takes cpuSnaps of processes named by pid.
type cpuWatch struct {
	names []string
	pids  []int
}

// newCPUWatch watches this process (as "bench client") and w's running
// processes.
func newCPUWatch(w *World) *cpuWatch {
	c := &cpuWatch{names: []string{"bench client"}, pids: []int{os.Getpid()}}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.procs {
		if !p.Exited() {
			c.names = append(c.names, procLabel(p.Name))
			c.pids = append(c.pids, p.cmd.Process.Pid)
		}
	}
	return c
}

// procLabel is a process's name without the unique number a restartable
// endpoint's carries (nse-lat-<n>): the rows keep their names from run to
// run.
func procLabel(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return name
	}
	if _, err := strconv.ParseUint(name[i+1:], 10, 64); err != nil {
		return name
	}
	return name[:i]
}

// snap reads the counters; a process that cannot be read (gone) counts
// zero.
func (c *cpuWatch) snap() (cpuSnap, error) {
	var s cpuSnap
	var err error
	if s.irq, s.busy, err = machineCPU(); err != nil {
		return s, err
	}
	for _, pid := range c.pids {
		t, _, err := procCPU(strconv.Itoa(pid))
		if err != nil {
			t = cpuTimes{}
		}
		s.procs = append(s.procs, t)
	}
	if s.kthreads, err = kthreadsCPU(); err != nil {
		return s, err
	}
	s.self, _, err = procCPU("self")
	return s, err
}

// cpuRows are the rows of the CPU per vWire between a and b, n vWires:
// each process's user+system time and its system time, the kernel's
// threads, interrupts and the whole machine; wholeBase, when above 0, is
// the whole machine's per pair of the plain loop.
func (c *cpuWatch) rows(group, name string, a, b cpuSnap, n int, wholeBase float64) []Row {
	if n == 0 {
		return nil
	}
	// row is a figure, or skipped when /proc counted nothing: less than
	// one clock tick over the phase, not a measured zero.
	row := func(what string, d time.Duration) Row {
		name := fmt.Sprintf("CPU per vWire, %s: %s", name, what)
		if d <= 0 {
			return Row{Group: group, Name: name, Skipped: fmt.Sprintf("under /proc's %v tick over the phase", clockTick)}
		}
		return Row{Group: group, Name: name, Value: Millis(d) / float64(n), Unit: "ms", Samples: n}
	}
	var rows []Row
	for i, pn := range c.names {
		from := a.procs[i]
		if i == 0 {
			from = a.self
		}
		d := b.procs[i].sub(from)
		rows = append(rows, row(pn+", user+system", d.total()), row(pn+", of it system", d.sys))
	}
	rows = append(rows, row("kernel threads", b.kthreads-a.kthreads), row("interrupts", b.irq-a.irq))
	whole := row("whole machine (other jobs too)", b.busy-a.busy-a.self.sub(a.procs[0]).total())
	if wholeBase > 0 && whole.Skipped == "" {
		whole = whole.WithBaseline("plain loop", wholeBase)
	}
	return append(rows, whole)
}

// procCPU reads /proc/<pid>/stat: the process's user and system time
// (its threads', the ended ones' too) and its parent's pid.
func procCPU(pid string) (cpuTimes, int, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return cpuTimes{}, 0, err
	}
	return parseProcStat(b)
}

// parseProcStat parses a /proc/<pid>/stat line: the name in parentheses
// may hold spaces and parentheses, so fields count from the last ')'.
func parseProcStat(b []byte) (cpuTimes, int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuTimes{}, 0, fmt.Errorf("stat: no ')' in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return cpuTimes{}, 0, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return cpuTimes{}, 0, fmt.Errorf("stat: ppid %q", f[1])
	}
	var t [2]time.Duration
	for j, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuTimes{}, 0, fmt.Errorf("stat: time %q", s)
		}
		t[j] = time.Duration(v) * clockTick
	}
	return cpuTimes{user: t[0], sys: t[1]}, ppid, nil
}

// kthreadsCPU is the CPU time of kthreadd (pid 2) and its children, the
// kernel's threads.
func kthreadsCPU() (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		t, ppid, err := procCPU(e.Name())
		if err != nil {
			continue // gone since the listing
		}
		if ppid == 2 || e.Name() == "2" {
			sum += t.total()
		}
	}
	return sum, nil
}

// machineCPU reads /proc/stat's first line: interrupts (hard and soft)
// and all busy time over every CPU.
func machineCPU() (irq, busy time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseMachineStat(b)
}

func parseMachineStat(b []byte) (irq, busy time.Duration, err error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var v [8]time.Duration
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q", f[i+1])
		}
		v[i] = time.Duration(n) * clockTick
	}
	irq = v[5] + v[6]
	busy = v[0] + v[1] + v[2] + irq
	return irq, busy, nil
}
