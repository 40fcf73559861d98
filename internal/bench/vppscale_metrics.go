package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vwire/vwire/internal/netnsrun"
)

// promText is a Prometheus text exposition: each series (name and labels
// as written, e.g. `vwire_vpp_api_seconds_sum{msg="memif_create"}`) and
// its value.
type promText map[string]float64

// parsePromText reads the text format /metrics serves. Comments and empty
// lines are skipped; a sample line that cannot be read is an error.
func parsePromText(r io.Reader) (promText, error) {
	out := promText{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The value follows the last space outside the labels; a
		// timestamp may follow it.
		series, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], strings.TrimSpace(line[i+1:])
		} else if f := strings.Fields(line); len(f) >= 2 {
			series, rest = f[0], strings.Join(f[1:], " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %d: no value: %q", n, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %q: %w", n, line, err)
		}
		out[series] = v
	}
	return out, sc.Err()
}

// seriesName is the metric name of a series, without its labels.
func seriesName(series string) string {
	name, _, _ := strings.Cut(series, "{")
	return name
}

// total sums every series of metric name, whatever its labels.
func (t promText) total(name string) float64 {
	var sum float64
	for s, v := range t {
		if seriesName(s) == name {
			sum += v
		}
	}
	return sum
}

// byLabel gives, for each series of metric name, the value of its label
// key and the series' value.
func (t promText) byLabel(name, key string) map[string]float64 {
	out := map[string]float64{}
	for s, v := range t {
		if seriesName(s) != name {
			continue
		}
		_, labels, _ := strings.Cut(s, "{")
		for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			k, val, ok := strings.Cut(kv, "=")
			if ok && strings.TrimSpace(k) == key {
				out[strings.Trim(val, `"`)] += v
			}
		}
	}
	return out
}

// Series of the nodes' metrics the vpp-scale group reads.
const (
	mgrRequestSeconds = "vwire_manager_request_duration_seconds"
	vppAPISeconds     = "vwire_vpp_api_seconds"
)

// vsCost is where a run's Requests spent their time, from the nodes'
// metrics before and after the run's build: node1's manager's mean
// handling of one Request (the forwarders, the endpoint and the VPP calls
// inside it), and on each node the VPP API calls per vWire and the time
// they took, summed (a call waiting for VPP's one API thread counts its
// wait).
type vsCost struct {
	manager time.Duration
	api     [2]time.Duration
	calls   [2]float64
	// top is node1's and node2's messages with the most time, for the
	// progress log.
	top [2]string
}

// costOf works out a run's vsCost from the nodes' metrics before and
// after the build of n vWires; a node whose figures are missing counts
// zero.
func costOf(n int, before, after [2]promText) vsCost {
	var c vsCost
	if n < 1 {
		return c
	}
	if dn := after[0].total(mgrRequestSeconds+"_count") - before[0].total(mgrRequestSeconds+"_count"); dn > 0 {
		ds := after[0].total(mgrRequestSeconds+"_sum") - before[0].total(mgrRequestSeconds+"_sum")
		c.manager = time.Duration(ds / dn * float64(time.Second))
	}
	for i := range after {
		if after[i] == nil {
			continue
		}
		ds := after[i].total(vppAPISeconds+"_sum") - before[i].total(vppAPISeconds+"_sum")
		c.api[i] = time.Duration(ds / float64(n) * float64(time.Second))
		c.calls[i] = (after[i].total(vppAPISeconds+"_count") - before[i].total(vppAPISeconds+"_count")) / float64(n)
		c.top[i] = topMessages(before[i], after[i], n, 5)
	}
	return c
}

// topMessages lists the k messages with the most time between two
// scrapes, per vWire of n: "memif_create 2.0× 0.31 ms".
func topMessages(before, after promText, n, k int) string {
	sums, counts := after.byLabel(vppAPISeconds+"_sum", "msg"), after.byLabel(vppAPISeconds+"_count", "msg")
	bs, bc := before.byLabel(vppAPISeconds+"_sum", "msg"), before.byLabel(vppAPISeconds+"_count", "msg")
	type msg struct {
		name       string
		sum, count float64
	}
	var ms []msg
	for name, s := range sums {
		m := msg{name: name, sum: s - bs[name], count: counts[name] - bc[name]}
		if m.count > 0 {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b msg) int {
		if a.sum != b.sum {
			if a.sum > b.sum {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for _, m := range ms[:min(k, len(ms))] {
		out = append(out, fmt.Sprintf("%s %.1f× %.3f ms", m.name, m.count/float64(n), m.sum/float64(n)*1e3))
	}
	return strings.Join(out, ", ")
}

// scrapeNode reads nd's /metrics: the node serves it on its fabric
// address, inside its namespace, so the connection is made in there.
func scrapeNode(ctx context.Context, nd *node) (promText, error) {
	if nd.metrics == "" {
		return nil, fmt.Errorf("%s serves no metrics", nd.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var conn net.Conn
	err := netnsrun.InPath(nd.ns.Path(), func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", nd.metrics)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", nd.name, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Close = true
	req.Header.Set("Accept", "text/plain")
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("%s metrics: %w", nd.name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", nd.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s metrics: %s", nd.name, resp.Status)
	}
	t, err := parsePromText(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", nd.name, err)
	}
	return t, nil
}
