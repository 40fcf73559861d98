package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Where a sequential local Request's time went, from the processes' debug
// logs (VWIRE_BENCH_LOG_LEVEL=debug; GODEBUG=gctrace=1 adds node1's GC
// cycles): node1's gRPC lines give the manager's handling of the bench's
// Request and the forwarder's of the manager's, the endpoint's its own;
// the kernel dataplane's "kernel vWire built" line its steps; its "reaper
// pass" lines when each deletion pass ran. In the sequential run each
// kind of line comes once per Request, in order, so the k-th of each is
// the k-th Request's. The slowest Requests' breakdown next to the median
// ones' names what makes the tail.

// reqWindow is when the bench sent a Request and had its answer.
type reqWindow struct{ start, end time.Time }

// reqPhases is one Request's time, by where it went.
type reqPhases struct {
	total, manager, forwarder, endpoint time.Duration
	kernel                              time.Duration // the dataplane's Connect of the pair, whole
	steps                               [6]time.Duration
	reaper                              time.Duration // reaper passes' time inside the Request's window
	gcs                                 int           // node1's GC cycles that ended during it
	gcPause                             time.Duration // their stop-the-world time
}

// kernelSteps name reqPhases.steps, as the "kernel vWire built" line does.
var kernelSteps = [6]string{"open", "check", "record", "create", "client_end", "endpoint_end"}

// logfmt parses one line of slog's text handler: key=value pairs, values
// quoted when they hold spaces.
func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key := line[:eq]
		line = line[eq+1:]
		if strings.HasPrefix(line, `"`) {
			v, rest, ok := quoted(line)
			if !ok {
				break
			}
			kv[key], line = v, rest
			continue
		}
		end := strings.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		kv[key], line = line[:end], line[end:]
	}
	return kv
}

// quoted reads the Go-quoted string s starts with and returns it unquoted
// and what follows.
func quoted(s string) (string, string, bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, s[i+1:], err == nil
		}
	}
	return "", "", false
}

// gcLine parses a gctrace line ("gc 12 @3.4s 1%: 0.02+1.1+0.03 ms clock,
// ..."): its stop-the-world time (the first and last clock phases).
func gcLine(line string) (time.Duration, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	_, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return 0, false
	}
	clock, _, ok := strings.Cut(rest, " ms clock")
	if !ok {
		return 0, false
	}
	parts := strings.Split(clock, "+")
	if len(parts) != 3 {
		return 0, false
	}
	var pause float64
	for _, p := range []string{parts[0], parts[2]} {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return 0, false
		}
		pause += f
	}
	return time.Duration(pause * float64(time.Millisecond)), true
}

// breakdown lays node1's and the endpoint's log lines written during a
// sequential run over its Requests (windows, one per Request, in order).
// Whose call a gRPC line is, its peer's SPIFFE path says: the bench's
// client for the manager's, the manager for the forwarder's.
func breakdown(node, ep io.Reader, windows []reqWindow) ([]reqPhases, error) {
	n := len(windows)
	out := make([]reqPhases, n)
	for i, w := range windows {
		out[i].total = w.end.Sub(w.start)
	}
	type pass struct {
		start time.Time
		took  time.Duration
	}
	var passes []pass
	var mgr, fwd, kern, closes int
	sc := bufio.NewScanner(node)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if pause, ok := gcLine(line); ok {
			// Ended after the last Close's answer and before this
			// Request's: during this Request (or that Close).
			if k := closes; k < n && k == mgr {
				out[k].gcs++
				out[k].gcPause += pause
			}
			continue
		}
		kv := logfmt(line)
		switch kv["msg"] {
		case "grpc call":
			if kv["code"] != "OK" {
				continue
			}
			d, err := time.ParseDuration(kv["duration"])
			if err != nil {
				return nil, fmt.Errorf("node1's log: %q: %w", line, err)
			}
			peer := kv["peer"]
			switch {
			case strings.HasSuffix(kv["method"], "NetworkService/Request") && strings.HasSuffix(peer, "/bench"):
				if mgr < n {
					out[mgr].manager = d
				}
				mgr++
			case strings.HasSuffix(kv["method"], "NetworkService/Request") && strings.HasSuffix(peer, "/manager"):
				if fwd < n {
					out[fwd].forwarder = d
				}
				fwd++
			case strings.HasSuffix(kv["method"], "NetworkService/Close") && strings.HasSuffix(peer, "/bench"):
				closes++
			}
		case "kernel vWire built":
			if kern < n {
				var err error
				if out[kern].kernel, err = time.ParseDuration(kv["whole"]); err != nil {
					return nil, fmt.Errorf("node1's log: %q: %w", line, err)
				}
				for i, s := range kernelSteps {
					if out[kern].steps[i], err = time.ParseDuration(kv[s]); err != nil {
						return nil, fmt.Errorf("node1's log: %q: %s: %w", line, s, err)
					}
				}
			}
			kern++
		case "reaper pass":
			us, err := strconv.ParseInt(kv["start_us"], 10, 64)
			d, derr := time.ParseDuration(kv["took"])
			if err != nil || derr != nil {
				return nil, fmt.Errorf("node1's log: %q: %v %v", line, err, derr)
			}
			passes = append(passes, pass{time.UnixMicro(us), d})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var eps int
	sc = bufio.NewScanner(ep)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		kv := logfmt(sc.Text())
		if kv["msg"] != "grpc call" || kv["code"] != "OK" || !strings.HasSuffix(kv["method"], "NetworkService/Request") {
			continue
		}
		d, err := time.ParseDuration(kv["duration"])
		if err != nil {
			return nil, fmt.Errorf("the endpoint's log: %w", err)
		}
		if eps < n {
			out[eps].endpoint = d
		}
		eps++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if mgr != n || fwd != n || kern != n || eps != n {
		return nil, fmt.Errorf("%d Requests, but %d manager, %d forwarder, %d kernel dataplane and %d endpoint lines (debug logs? VWIRE_BENCH_LOG_LEVEL=debug)", n, mgr, fwd, kern, eps)
	}
	for i, w := range windows {
		for _, p := range passes {
			from, to := p.start, p.start.Add(p.took)
			if from.Before(w.start) {
				from = w.start
			}
			if to.After(w.end) {
				to = w.end
			}
			if to.After(from) {
				out[i].reaper += to.Sub(from)
			}
		}
	}
	return out, nil
}

// tailRows are the slowest 1% of the Requests' mean phases (at least
// one Request) next to the median ones' (p40 to p60).
func tailRows(group string, phases []reqPhases) []Row {
	if len(phases) == 0 {
		return nil
	}
	sorted := slices.Clone(phases)
	slices.SortFunc(sorted, func(a, b reqPhases) int { return int(a.total - b.total) })
	n := len(sorted)
	tail := sorted[n-max(1, n/100):]
	mid := sorted[n*40/100 : max(n*60/100, n*40/100+1)]
	type phase struct {
		name string
		f    func(p reqPhases) float64
	}
	ms := func(f func(p reqPhases) time.Duration) func(p reqPhases) float64 {
		return func(p reqPhases) float64 { return Millis(f(p)) }
	}
	list := []phase{
		{"the Request, at the client", ms(func(p reqPhases) time.Duration { return p.total })},
		{"the client and the wire to the manager", ms(func(p reqPhases) time.Duration { return p.total - p.manager })},
		{"the manager's own (its gRPC to the forwarder included)", ms(func(p reqPhases) time.Duration { return p.manager - p.forwarder })},
		{"the forwarder's own (its gRPC to the endpoint included)", ms(func(p reqPhases) time.Duration { return p.forwarder - p.endpoint - p.kernel })},
		{"the endpoint's handling", ms(func(p reqPhases) time.Duration { return p.endpoint })},
		{"the kernel dataplane's Connect", ms(func(p reqPhases) time.Duration { return p.kernel })},
	}
	for i, s := range kernelSteps {
		list = append(list, phase{"of it " + strings.ReplaceAll(s, "_", " "), ms(func(p reqPhases) time.Duration { return p.steps[i] })})
	}
	list = append(list,
		phase{"of it the rest", ms(func(p reqPhases) time.Duration {
			rest := p.kernel
			for _, s := range p.steps {
				rest -= s
			}
			return rest
		})},
		phase{"reaper passes running meanwhile", ms(func(p reqPhases) time.Duration { return p.reaper })},
		phase{"node1's GC pauses (stop the world) meanwhile", ms(func(p reqPhases) time.Duration { return p.gcPause })},
	)
	mean := func(ps []reqPhases, f func(reqPhases) float64) float64 {
		var s float64
		for _, p := range ps {
			s += f(p)
		}
		return s / float64(len(ps))
	}
	base := fmt.Sprintf("p40–p60 (n=%d)", len(mid))
	var rows []Row
	for _, ph := range list {
		rows = append(rows, Row{Group: group, Name: "slowest 1% of local sequential Requests: " + ph.name,
			Value: mean(tail, ph.f), Unit: "ms", Samples: len(tail)}.WithBaseline(base, mean(mid, ph.f)))
	}
	gcs := func(p reqPhases) float64 { return float64(p.gcs) }
	rows = append(rows, Row{Group: group, Name: "slowest 1% of local sequential Requests: node1's GC cycles ended meanwhile",
		Value: mean(tail, gcs), Samples: len(tail)}.WithBaseline(base, mean(mid, gcs)))
	return rows
}

// logFrom is what the file at path holds past offset.
func logFrom(path string, offset int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// logSize is the size of the file at path; 0 when it cannot be read.
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
