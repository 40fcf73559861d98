package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

const (
	throughputLocalService  = "bench-tp-local"
	throughputRemoteService = "bench-tp-remote"
)

// tpPath is one way from a client namespace to an iperf3 server.
type tpPath struct {
	name     string
	from, to *Netns
	addr     string
}

// measureThroughput runs iperf3 (TCP, one stream, cfg.Duration after a
// first second left out) across a plain veth pair, a local vWire (client
// and endpoint on one node: two veths and tc redirects) and a remote one
// (kernel VXLAN between two nodes), and gives each vWire's ratio to the
// veth.
func measureThroughput(ctx context.Context, m *mesh, cfg Config, p *Progress) ([]Row, error) {
	const group = "throughput"
	if _, err := exec.LookPath("iperf3"); err != nil {
		why := "iperf3 is not installed (apt-get install -y iperf3)"
		return []Row{Skip(group, "TCP across a local vWire (iperf3)", why), Skip(group, "TCP across a remote vWire (iperf3)", why)}, nil
	}
	va, err := m.w.Netns("tp-veth-a")
	if err != nil {
		return nil, err
	}
	vb, err := m.w.Netns("tp-veth-b")
	if err != nil {
		return nil, err
	}
	if err := ipAll(va,
		[]string{"link", "add", "name", "veth0", "type", "veth", "peer", "name", "veth0", "netns", vb.Name},
		[]string{"addr", "add", "10.115.0.1/30", "dev", "veth0"},
		[]string{"link", "set", "veth0", "up"},
	); err != nil {
		return nil, err
	}
	if err := ipAll(vb, []string{"addr", "add", "10.115.0.2/30", "dev", "veth0"}, []string{"link", "set", "veth0", "up"}); err != nil {
		return nil, err
	}
	paths := []tpPath{{name: "veth", from: va, to: vb, addr: "10.115.0.2"}}

	nscNS, err := m.w.Netns("tp-nsc")
	if err != nil {
		return nil, err
	}
	type target struct {
		name, service, cidr, ifname string
		nd                          *node
	}
	targets := []target{{"local", throughputLocalService, "172.16.60.0/24", "nsm-tl", m.nodes[0]}}
	if len(m.nodes) > 1 {
		targets = append(targets, target{"remote", throughputRemoteService, "172.16.61.0/24", "nsm-tr", m.nodes[1]})
	}
	for _, t := range targets {
		ns, err := m.w.Netns("tp-nse-" + t.name)
		if err != nil {
			return nil, err
		}
		if _, err := m.startEndpoint(ctx, t.nd, ns, "nse-tp-"+t.name, t.service, t.cidr); err != nil {
			return nil, err
		}
		conn, err := m.request(ctx, m.nodes[0], nscNS, t.service, t.ifname)
		if err != nil {
			return nil, err
		}
		defer m.closeConn(ctx, m.nodes[0], conn)
		dst, err := dstAddr(conn)
		if err != nil {
			return nil, err
		}
		paths = append(paths, tpPath{name: t.name, from: nscNS, to: ns, addr: dst})
	}

	p.Stage(fmt.Sprintf("throughput: iperf3 %v across %d paths", cfg.Duration, len(paths)), len(paths))
	mbps := map[string]float64{}
	for _, path := range paths {
		srv, err := startIperf3Server(ctx, m.w, path.to, "iperf3-"+path.name)
		if err != nil {
			return nil, err
		}
		if err := pingUntilReply(ctx, path.from, path.addr, 30*time.Second); err != nil {
			srv.Stop()
			return nil, err
		}
		if mbps[path.name], err = iperf3(ctx, path, cfg.Duration); err != nil {
			return nil, err
		}
		srv.Stop()
		p.Step()
	}
	p.Done()
	rows := []Row{Row{Group: group, Name: "TCP across a local vWire (iperf3)", Value: mbps["local"], Unit: "Mbit/s"}.WithBaseline("plain veth", mbps["veth"])}
	if r, ok := mbps["remote"]; ok {
		rows = append(rows, Row{Group: group, Name: "TCP across a remote vWire, vxlan (iperf3)", Value: r, Unit: "Mbit/s"}.WithBaseline("plain veth", mbps["veth"]))
	}
	return rows, nil
}

// startIperf3Server runs an iperf3 server, named name, in ns and waits
// until it listens; the caller stops it.
func startIperf3Server(ctx context.Context, w *World, ns *Netns, name string) (*Proc, error) {
	srv, err := w.Start(ns, name, "iperf3", "--server", "--forceflush")
	if err != nil {
		return nil, err
	}
	err = poll(ctx, startTimeout, func() error {
		if strings.Contains(srv.Output(), "Server listening") {
			return nil
		}
		if srv.Exited() {
			return permanent{fmt.Errorf("iperf3 server in %s exited: %s", ns.Label, tail(srv.Log(), 5))}
		}
		return fmt.Errorf("iperf3 server in %s not listening yet", ns.Label)
	})
	if err != nil {
		srv.Stop()
		return nil, err
	}
	return srv, nil
}

// iperf3 runs one iperf3 client along path and returns what the server
// received, in Mbit/s.
func iperf3(ctx context.Context, path tpPath, d time.Duration) (float64, error) {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	out, err := path.from.Exec(ctx, "iperf3", "--client", path.addr, "--time", fmt.Sprint(secs), "--omit", "1", "--json")
	if err != nil {
		return 0, fmt.Errorf("%s: iperf3 to %s: %v: %s", path.name, path.addr, err, tail(out, 5))
	}
	bps, err := parseIperf3(out)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path.name, err)
	}
	return bps / 1e6, nil
}

// parseIperf3 reads the receiver's bits per second from iperf3 --json.
func parseIperf3(out string) (float64, error) {
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w: %s", err, tail(out, 5))
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3: nothing received")
	}
	return res.End.SumReceived.BitsPerSecond, nil
}
