package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"github.com/vwire/vwire/mechanisms/memif"
)

// pollSleepUsec keeps each VPP of the measurement from taking a whole
// core: the host's cores are shared.
const pollSleepUsec = 100

// measureMemif measures packets per second (64-byte frames from VPP's
// packet generator) from one memif workload to another: through a vWire
// the VPP dataplane built, and, as the baseline, through a memif l2xc made
// by hand on the same VPP. Each workload is a VPP of its own in its own
// network namespace, attached to the forwarder's memif as slave.
func measureMemif(ctx context.Context, cfg Config, p *Progress) ([]Row, error) {
	const group, name = GroupMemif, "memif→memif across a vWire (64-byte frames)"
	switch {
	case cfg.VPPBin == "":
		return []Row{Skip(group, name, "VPP_BIN is not set (a VPP 25.10 binary, and VPP_PLUGIN_PATH for its plugins)")}, nil
	case os.Geteuid() != 0:
		return []Row{Skip(group, name, "needs root: it makes network namespaces and VPPs")}, nil
	}
	w, err := NewWorld(cfg.Bin)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	p.Stage("memif: starting the forwarder's VPP", 0)
	nodeNS, err := w.Netns("memif-node")
	if err != nil {
		return nil, err
	}
	fwd, err := startVPP(ctx, cfg, filepath.Join(w.Dir, "fwd"), nodeNS)
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = fwd.Stop(vppstart.DefaultStopTimeout) })
	log := slog.New(slog.DiscardHandler)
	dp, err := vpp.New(ctx, vpp.Config{APISocket: fwd.APISocket, StatsSocket: fwd.StatsSocket,
		StateDir: filepath.Join(w.Dir, "fwd-state"), NetNSPath: nodeNS.Path(), Logger: log})
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { dp.Close() })
	if err := dp.Start(ctx); err != nil {
		return nil, err
	}
	raw, err := core.Connect(socketclient.NewVppClient(fwd.APISocket))
	if err != nil {
		return nil, fmt.Errorf("connect to the forwarder's VPP: %w", err)
	}
	stops = append(stops, raw.Disconnect)
	vc := vpp.NewClient(raw, log, nil)

	pps := map[string]float64{}
	for _, mode := range []string{"vwire", "l2xc"} {
		p.Stage(fmt.Sprintf("memif: %s, %v of packet generator", mode, cfg.Duration), 0)
		var ws [2]*vppWorkload
		for i, role := range []string{"src", "dst"} {
			ns, err := w.Netns("memif-" + mode + "-" + role)
			if err != nil {
				return nil, err
			}
			if ws[i], err = startWorkload(ctx, cfg, filepath.Join(w.Dir, mode+"-"+role), ns); err != nil {
				return nil, err
			}
			stops = append(stops, ws[i].stop)
		}
		files := [2]string{"bench-src-" + mode, "bench-dst-" + mode}
		switch mode {
		case "vwire":
			mk := func(i int) *networkservice.Connection {
				return &networkservice.Connection{Payload: payload.Ethernet,
					Mechanism: memif.New(memif.Params{SocketFile: files[i], NetNSURL: "file://" + ws[i].ns.Path()})}
			}
			if err := dp.Connect(ctx, "bench-memif", mk(0), mk(1)); err != nil {
				return nil, fmt.Errorf("vWire: %w", err)
			}
			stops = append(stops, func() { _ = dp.Disconnect(context.WithoutCancel(ctx), "bench-memif") })
		case "l2xc":
			var ifs [2]vpp.SwIfIndex
			for i := range ifs {
				sock, err := vc.CreateMemifSocket(ctx, "abstract:"+files[i]+",netns_name="+ws[i].ns.Path())
				if err != nil {
					return nil, err
				}
				idx, err := vc.CreateMemif(ctx, vpp.MemifSpec{SocketID: sock})
				if err != nil {
					return nil, err
				}
				stops = append(stops, func() {
					cctx := context.WithoutCancel(ctx)
					_ = vc.DeleteMemif(cctx, idx)
					_ = vc.DeleteMemifSocket(cctx, sock)
				})
				if err := vc.SetInterfaceUp(ctx, idx); err != nil {
					return nil, err
				}
				ifs[i] = idx
			}
			for _, x := range []vpp.L2XC{{Rx: ifs[0], Tx: ifs[1]}, {Rx: ifs[1], Tx: ifs[0]}} {
				if err := vc.CreateL2XC(ctx, x); err != nil {
					return nil, err
				}
			}
		}
		addrs := [2]string{"172.16.250.1", "172.16.250.2"}
		for i := range ws {
			if err := ws[i].attach(ctx, files[i], addrs[i]); err != nil {
				return nil, err
			}
		}
		if err := poll(ctx, 30*time.Second, func() error { return ws[0].ping(ctx, addrs[1]) }); err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		if pps[mode], err = generate(ctx, ws[0], ws[1], cfg.Duration); err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
	}
	p.Done()
	return []Row{Row{Group: group, Name: name, Value: pps["vwire"] / 1e6, Unit: "Mpps"}.
		WithBaseline("VPP memif l2xc", pps["l2xc"]/1e6)}, nil
}

func startVPP(ctx context.Context, cfg Config, dir string, ns *Netns) (*vppstart.Process, error) {
	if err := mkdirAll(dir); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	proc, err := vppstart.Start(sctx, vppstart.Config{Bin: cfg.VPPBin, PluginPath: cfg.VPPPluginPath, Dir: dir,
		NetNSPath: ns.Path(), PollSleepUsec: pollSleepUsec})
	if err != nil {
		return nil, fmt.Errorf("start VPP in %s: %w", ns.Label, err)
	}
	return proc, nil
}

// vppWorkload is a VPP playing a memif workload, driven by its CLI.
type vppWorkload struct {
	ns   *Netns
	proc *vppstart.Process
	conn *core.Connection
}

func startWorkload(ctx context.Context, cfg Config, dir string, ns *Netns) (*vppWorkload, error) {
	proc, err := startVPP(ctx, cfg, dir, ns)
	if err != nil {
		return nil, err
	}
	conn, err := core.Connect(socketclient.NewVppClient(proc.APISocket))
	if err != nil {
		_ = proc.Stop(vppstart.DefaultStopTimeout)
		return nil, fmt.Errorf("connect to VPP in %s: %w", ns.Label, err)
	}
	return &vppWorkload{ns: ns, proc: proc, conn: conn}, nil
}

func (v *vppWorkload) stop() {
	v.conn.Disconnect()
	_ = v.proc.Stop(vppstart.DefaultStopTimeout)
}

func (v *vppWorkload) cli(ctx context.Context, cmd string) (string, error) {
	reply, err := vlib.NewServiceClient(v.conn).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("%s: vpp %q: %w", v.ns.Label, cmd, err)
	}
	return reply.Reply, nil
}

// attach makes a slave memif on the abstract socket file, up, with addr.
func (v *vppWorkload) attach(ctx context.Context, file, addr string) error {
	for _, c := range []string{
		"create memif socket id 1 filename abstract:" + file,
		"create interface memif id 0 socket-id 1 slave",
		"set interface state memif1/0 up",
		"set interface ip address memif1/0 " + addr + "/24",
	} {
		if _, err := v.cli(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

var pingReceived = regexp.MustCompile(`(\d+) sent, (\d+) received`)

func (v *vppWorkload) ping(ctx context.Context, dst string) error {
	out, err := v.cli(ctx, "ping "+dst+" repeat 2 interval 0.2")
	if err != nil {
		return err
	}
	if m := pingReceived.FindStringSubmatch(out); m == nil || m[2] == "0" {
		return fmt.Errorf("%s: ping %s: %s", v.ns.Label, dst, strings.TrimSpace(out))
	}
	return nil
}

var rxPackets = regexp.MustCompile(`rx packets\s+(\d+)`)

func (v *vppWorkload) rx(ctx context.Context) (uint64, error) {
	out, err := v.cli(ctx, "show interface memif1/0")
	if err != nil {
		return 0, err
	}
	m := rxPackets.FindStringSubmatch(out)
	if m == nil {
		return 0, nil
	}
	return strconv.ParseUint(m[1], 10, 64)
}

// generate sends 64-byte UDP frames from src's memif at full speed for d
// and returns the packets per second dst received.
func generate(ctx context.Context, src, dst *vppWorkload, d time.Duration) (float64, error) {
	stream := `packet-generator new {
  name bench
  limit -1
  size 64-64
  node memif1/0-output
  data {
    IP4: 02:fe:00:00:00:01 -> ff:ff:ff:ff:ff:ff
    UDP: 172.16.250.1 -> 172.16.250.2
    UDP: 1234 -> 5678
    length 22
    incrementing 1
  }
}`
	if _, err := src.cli(ctx, stream); err != nil {
		return 0, err
	}
	before, err := dst.rx(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := src.cli(ctx, "packet-generator enable-stream bench"); err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if _, err := src.cli(context.WithoutCancel(ctx), "packet-generator disable-stream bench"); err != nil {
		return 0, err
	}
	time.Sleep(100 * time.Millisecond) // what is in flight arrives
	after, err := dst.rx(ctx)
	if err != nil {
		return 0, err
	}
	if after <= before {
		return 0, fmt.Errorf("no packets arrived")
	}
	return float64(after-before) / time.Since(start).Seconds(), nil
}
