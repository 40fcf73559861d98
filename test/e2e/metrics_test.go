package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// metricsAddr is where the tests' daemons serve /metrics, on the loopback
// of their own namespace.
const metricsAddr = "127.0.0.1:9090"

// TestMetricsNode scrapes a running `vwire node` (registry, manager and
// forwarder in one process) while a client connects to an icmp-responder,
// pings across the vWire and closes, and checks that the series move: the
// registry's entries, the manager's Request and Close histograms and its
// connections by service, mechanism and state, the forwarder's live
// vWires and, on VPP, each vWire's interface counters, the VPP API calls'
// latency and the VPP connection's state.
func TestMetricsNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		// args are the dataplane's flags; nil skips the case.
		args     func(t *testing.T) []string
		counters bool // the dataplane counts per vWire
	}{
		{name: "kernel", args: func(*testing.T) []string { return []string{"--dataplane", "kernel"} }},
		{name: "vpp", counters: true, args: func(t *testing.T) []string {
			bin := os.Getenv("VPP_BIN")
			if bin == "" {
				t.Skip("VPP_BIN not set: the per-vWire counters need a VPP 25.10 (and VPP_PLUGIN_PATH)")
			}
			args := []string{"--dataplane", "vpp", "--vpp-bin", bin}
			if p := os.Getenv("VPP_PLUGIN_PATH"); p != "" {
				args = append(args, "--vpp-plugin-path", p)
			}
			return args
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if suite.skip != "" {
				t.Skip(suite.skip)
			}
			dpArgs := tc.args(t)
			l, m := newMesh(t, MeshOptions{Nodes: 1, Embedded: true, LogLevel: "info",
				ForwarderArgs: append([]string{"--metrics-listen", metricsAddr}, dpArgs...)})
			n := m.Nodes[0]
			checkHealth(t, n.Netns, metricsAddr)

			s0 := mustScrape(t, n.Netns, metricsAddr)
			for _, name := range []string{"vwire_manager_heals_total", "vwire_manager_reselections_total", "vwire_registry_watchers", "go_goroutines"} {
				if _, ok := s0.sum(name, nil); !ok {
					t.Errorf("no series %s", name)
				}
			}
			if v, _ := s0.sum("vwire_forwarder_vwires", nil); v != 0 {
				t.Errorf("vwire_forwarder_vwires = %v before any client, want 0", v)
			}
			nse0, ok := s0.sum("vwire_registry_entries", map[string]string{"kind": "nse"})
			if !ok {
				t.Errorf("no series vwire_registry_entries{kind=nse}")
			}
			req0, _ := s0.sum("vwire_manager_request_duration_seconds_count", nil)

			const service = "metrics-svc"
			n.StartICMPResponder(l.Netns("nse1"), EndpointOptions{Name: "nse1", Service: service, CIDR: "172.16.70.0/24"})
			Eventually(t, StartTimeout, "the registry counts the endpoint", func() error {
				s := mustScrape(t, n.Netns, metricsAddr)
				if v, _ := s.sum("vwire_registry_entries", map[string]string{"kind": "nse"}); v != nse0+1 {
					return fmt.Errorf("vwire_registry_entries{kind=nse} = %v, want %v", v, nse0+1)
				}
				if v, _ := s.sum("vwire_registry_entries", map[string]string{"kind": "ns"}); v < 1 {
					return fmt.Errorf("vwire_registry_entries{kind=ns} = %v, want the endpoint's service", v)
				}
				return nil
			})

			nscNS := l.Netns("nsc1")
			c := n.StartNSC(nscNS, "nsc1", "kernel://"+service+"/nsm-1")
			dst := Addr(c.WaitConnected()["kernel://"+service+"/nsm-1"].DstIPs[0])
			up := map[string]string{"service": service, "mechanism": "KERNEL", "state": "UP"}
			var s1 promScrape
			Eventually(t, StartTimeout, "the node reports the connection", func() error {
				s1 = mustScrape(t, n.Netns, metricsAddr)
				if v, _ := s1.sum("vwire_manager_connections", up); v != 1 {
					return fmt.Errorf("vwire_manager_connections%v = %v, want 1", up, v)
				}
				if v, _ := s1.sum("vwire_forwarder_vwires", nil); v != 1 {
					return fmt.Errorf("vwire_forwarder_vwires = %v, want 1", v)
				}
				return nil
			})
			if v, _ := s1.sum("vwire_manager_request_duration_seconds_count", map[string]string{"code": "OK"}); v < 1 || v <= req0 {
				t.Errorf("Requests answered OK: %v, was %v before the client", v, req0)
			}
			if v, _ := s1.sum("vwire_manager_request_duration_seconds_bucket", map[string]string{"code": "OK", "le": "+Inf"}); v < 1 {
				t.Errorf("the request histogram's +Inf bucket holds %v", v)
			}

			if tc.counters {
				checkVPPSeries(t, s1)
			} else if s1.has("vwire_vpp_api_seconds") {
				t.Errorf("the kernel dataplane serves vwire_vpp_api_seconds")
			}

			if err := nscNS.Ping(dst); err != nil {
				t.Fatal(err)
			}
			if tc.counters {
				Eventually(t, StartTimeout, "the vWire's counters grow with pings", func() error {
					if err := nscNS.Ping(dst); err != nil {
						return Permanent(err)
					}
					s := mustScrape(t, n.Netns, metricsAddr)
					for _, counter := range []string{"rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} {
						sel := map[string]string{"service": service, "counter": counter}
						before, _ := s1.sum("vwire_forwarder_vwire_counter", sel)
						after, ok := s.sum("vwire_forwarder_vwire_counter", sel)
						if !ok || after <= before {
							return fmt.Errorf("vwire_forwarder_vwire_counter%v: %v, was %v before the pings (present %v)", sel, after, before, ok)
						}
					}
					return nil
				})
			} else if _, ok := s1.sum("vwire_forwarder_vwire_counter", nil); ok {
				t.Errorf("the kernel dataplane reports per-vWire counters; this test expected none")
			}

			close0, _ := s1.sum("vwire_manager_close_duration_seconds_count", nil)
			if err := c.Stop(); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			Eventually(t, StartTimeout, "the node reports the connection closed", func() error {
				s := mustScrape(t, n.Netns, metricsAddr)
				if v, _ := s.sum("vwire_manager_connections", map[string]string{"service": service}); v != 0 {
					return fmt.Errorf("vwire_manager_connections{service=%s} = %v, want 0", service, v)
				}
				if v, _ := s.sum("vwire_forwarder_vwires", nil); v != 0 {
					return fmt.Errorf("vwire_forwarder_vwires = %v, want 0", v)
				}
				if v, _ := s.sum("vwire_manager_close_duration_seconds_count", nil); v <= close0 {
					return fmt.Errorf("Closes: %v, was %v", v, close0)
				}
				return nil
			})
		})
	}
}

// checkVPPSeries checks a VPP node's own series once it has built a
// vWire: the API calls it made, its connection to VPP (up, counted once at
// least) and the health-check misses (present, whatever their number).
func checkVPPSeries(t *testing.T, s promScrape) {
	t.Helper()
	if v, _ := s.sum("vwire_vpp_api_seconds_count", nil); v < 1 {
		t.Errorf("vwire_vpp_api_seconds_count = %v after building a vWire", v)
	}
	if v, _ := s.sum("vwire_vpp_api_seconds_count", map[string]string{"msg": "sw_interface_dump"}); v < 1 {
		t.Errorf("vwire_vpp_api_seconds_count{msg=sw_interface_dump} = %v: the start's dumps are not recorded", v)
	}
	if v, _ := s.sum("vwire_vpp_connection_events_total", map[string]string{"state": "connected"}); v < 1 {
		t.Errorf("vwire_vpp_connection_events_total{state=connected} = %v", v)
	}
	if v, ok := s.sum("vwire_vpp_connection_state", map[string]string{"state": "connected"}); v != 1 || !ok {
		t.Errorf("vwire_vpp_connection_state{state=connected} = %v (present %v), want 1", v, ok)
	}
	if _, ok := s.sum("vwire_vpp_health_check_misses_total", nil); !ok {
		t.Errorf("no series vwire_vpp_health_check_misses_total")
	}
}

// TestMetricsEachComponent runs a registry, a manager and a forwarder as
// processes of their own, each with --metrics-listen, and checks that each
// serves /healthz, /readyz and its own series.
func TestMetricsEachComponent(t *testing.T) {
	l := newLab(t)
	ns := l.Netns("node1")
	common := []string{"--state-dir", l.Dir, "--log-level", "info"}
	addrs := map[string]string{"registry": "127.0.0.1:9191", "manager": "127.0.0.1:9192", "forwarder": "127.0.0.1:9193"}
	withMetrics := func(component string, args ...string) []string {
		return append(append(append([]string{component}, args...), common...), "--metrics-listen", addrs[component])
	}
	reg := l.Start(ns, "registry", withMetrics("registry", "--listen", "127.0.0.1:5002")...)
	reg.WaitLogLine(StartTimeout, "registry serving")
	socket := filepath.Join(l.Dir, "manager.sock")
	mgr := l.Start(ns, "manager", withMetrics("manager", "--registry", "127.0.0.1:5002", "--node-name", "node1",
		"--socket", socket, "--manager-listen", "127.0.0.1:5001", "--advertise-url", "tcp://127.0.0.1:5001")...)
	WaitUnixSocket(t, mgr, socket)
	l.Start(ns, "forwarder", withMetrics("forwarder", "--dataplane", "kernel", "--node-name", "node1",
		"--listen", "unix://"+filepath.Join(l.Dir, "forwarder.sock"), "--connect-to", "unix://"+socket)...)
	mgr.WaitLogLine(StartTimeout, "forwarder registered")

	for component, series := range map[string]string{
		"registry":  "vwire_registry_entries",
		"manager":   "vwire_manager_heals_total",
		"forwarder": "vwire_forwarder_vwires",
	} {
		checkHealth(t, ns, addrs[component])
		s := mustScrape(t, ns, addrs[component])
		if !s.has(series) {
			t.Errorf("%s: no %s series at %s", component, series, addrs[component])
		}
	}
	// Each process serves its own registry of series, not the others'.
	for component, foreign := range map[string]string{"registry": "vwire_forwarder_vwires", "forwarder": "vwire_registry_entries"} {
		if s := mustScrape(t, ns, addrs[component]); s.has(foreign) {
			t.Errorf("%s serves %s", component, foreign)
		}
	}
}

// checkHealth waits until /healthz and /readyz answer 200 "ok".
func checkHealth(t *testing.T, ns *Netns, addr string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		Eventually(t, StartTimeout, fmt.Sprintf("%s answers %s", addr, path), func() error {
			code, body, err := httpGetInNetns(ns, addr, path)
			if err != nil {
				return err
			}
			if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
				return fmt.Errorf("%s: %d %q", path, code, body)
			}
			return nil
		})
	}
}

// httpGetInNetns GETs http://addr/path from inside ns and returns the
// status code and body.
func httpGetInNetns(ns *Netns, addr, path string) (int, string, error) {
	conn, err := dialInNetns(ns, addr)
	if err != nil {
		return 0, "", fmt.Errorf("%s: dial %s: %w", ns.Label, addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// dialInNetns opens a TCP connection from inside ns: a socket belongs to
// the namespace of the thread that made it. The thread goes back to this
// process's namespace before it is released; if it cannot, it stays locked
// and the runtime discards it with its goroutine.
func dialInNetns(ns *Netns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if rerr := netns.Set(orig); rerr == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// promSample is one line of Prometheus's text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// promScrape is what one GET /metrics returned.
type promScrape []promSample

func mustScrape(t *testing.T, ns *Netns, addr string) promScrape {
	t.Helper()
	code, body, err := httpGetInNetns(ns, addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK {
		t.Fatalf("%s/metrics: %d: %s", addr, code, body)
	}
	s, err := parseExposition(body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", addr, err)
	}
	return s
}

// sum adds up the samples of name whose labels include want; ok says
// whether there was any.
func (s promScrape) sum(name string, want map[string]string) (total float64, ok bool) {
	for _, x := range s {
		if x.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && x.labels[k] == v
		}
		if match {
			total, ok = total+x.value, true
		}
	}
	return total, ok
}

// has says whether a metric family called name (or name_count, name_sum...
// for a histogram) has a promSample.
func (s promScrape) has(name string) bool {
	for _, x := range s {
		if x.name == name || strings.HasPrefix(x.name, name+"_") {
			return true
		}
	}
	return false
}

// parseExposition reads Prometheus's text exposition format: comments are
// skipped, each other line is name{labels} value.
func parseExposition(text string) (promScrape, error) {
	var out promScrape
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		x, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
		out = append(out, x)
	}
	return out, nil
}

func parseSample(line string) (promSample, error) {
	x := promSample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return x, fmt.Errorf("no value")
	}
	x.name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return x, fmt.Errorf("bad labels")
			}
			key := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(line); j++ {
				switch c := line[j]; {
				case c == '\\' && j+1 < len(line):
					j++
					switch line[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(line[j])
					}
				case c == '"':
					line, closed = line[j+1:], true
				default:
					val.WriteByte(c)
				}
				if closed {
					break
				}
			}
			if !closed {
				return x, fmt.Errorf("unterminated label value")
			}
			x.labels[key] = val.String()
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return x, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return x, err
	}
	x.value = v
	return x, nil
}

func TestParseExposition(t *testing.T) {
	text := `# HELP vwire_manager_connections Live connections.
# TYPE vwire_manager_connections gauge
vwire_manager_connections{mechanism="KERNEL",service="icmp",state="UP"} 2
vwire_manager_connections{mechanism="MEMIF",service="a \"quoted\", odd}\\name",state="DOWN"} 1
vwire_forwarder_vwires 3
vwire_manager_request_duration_seconds_bucket{code="OK",le="+Inf"} 7
go_gc_duration_seconds{quantile="0.5"} 1.5e-05
`
	s, err := parseExposition(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{name: "vwire_manager_connections", want: 3, ok: true},
		{name: "vwire_manager_connections", labels: map[string]string{"service": "icmp"}, want: 2, ok: true},
		{name: "vwire_manager_connections", labels: map[string]string{"service": `a "quoted", odd}\name`, "state": "DOWN"}, want: 1, ok: true},
		{name: "vwire_manager_connections", labels: map[string]string{"service": "other"}, want: 0, ok: false},
		{name: "vwire_forwarder_vwires", want: 3, ok: true},
		{name: "vwire_manager_request_duration_seconds_bucket", labels: map[string]string{"le": "+Inf"}, want: 7, ok: true},
		{name: "go_gc_duration_seconds", want: 1.5e-05, ok: true},
		{name: "vwire_forwarder", want: 0, ok: false},
	} {
		if got, ok := s.sum(tc.name, tc.labels); got != tc.want || ok != tc.ok {
			t.Errorf("sum(%s, %v) = %v, %v; want %v, %v", tc.name, tc.labels, got, ok, tc.want, tc.ok)
		}
	}
	if !s.has("vwire_manager_request_duration_seconds") || s.has("vwire_registry_entries") {
		t.Errorf("has() is wrong: %v", s)
	}
	for _, bad := range []string{`x{a="1" 2`, `x{a=1} 2`, `x`, `x{a="1"}`, `x one`} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("parseExposition(%q) succeeded", bad)
		}
	}
}
