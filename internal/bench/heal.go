package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

const healService = "bench-heal"

// healTimeout bounds one heal: the manager's probes notice a dead endpoint
// within seconds.
const healTimeout = 60 * time.Second

// measureHeal kills, cfg.Heals times, the endpoint that serves a live
// connection (SIGKILL, no unregistration) and times until traffic flows
// again through the other endpoint: the manager notices, reselects and
// rebuilds the vWire on its own, the client only watches
// MonitorConnections. The kill alternates between the two endpoints; the
// killed one is started again before the next. The baseline is a fresh
// Request to the first ping reply.
func measureHeal(ctx context.Context, m *mesh, cfg Config, p *Progress) ([]Row, error) {
	const group = "heal"
	n1 := m.nodes[0]
	nscNS, err := m.w.Netns("heal-nsc")
	if err != nil {
		return nil, err
	}
	eps := map[string]*endpoint{}
	for i, name := range []string{"nse-heal-a", "nse-heal-b"} {
		ns, err := m.w.Netns(name)
		if err != nil {
			return nil, err
		}
		e, err := m.startEndpoint(ctx, n1, ns, name, healService, fmt.Sprintf("172.16.%d.0/24", 56+i))
		if err != nil {
			return nil, err
		}
		eps[name] = e
	}

	p.Stage(fmt.Sprintf("heal: %d fresh Requests to first ping", cfg.Heals), cfg.Heals)
	var fresh []time.Duration
	for i := range cfg.Heals {
		start := time.Now()
		conn, err := m.request(ctx, n1, nscNS, healService, fmt.Sprintf("nsm-f%d", i))
		if err != nil {
			return nil, err
		}
		dst, err := dstAddr(conn)
		if err == nil {
			err = pingUntilReply(ctx, nscNS, dst, healTimeout)
		}
		fresh = append(fresh, time.Since(start))
		if cerr := m.closeConn(ctx, n1, conn); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		p.Step()
	}

	p.Stage(fmt.Sprintf("heal: %d endpoint kills", cfg.Heals), cfg.Heals)
	conn, err := m.request(ctx, n1, nscNS, healService, "nsm-heal")
	if err != nil {
		return nil, err
	}
	defer m.closeConn(ctx, n1, conn)
	dst, err := dstAddr(conn)
	if err == nil {
		err = pingUntilReply(ctx, nscNS, dst, healTimeout)
	}
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := networkservice.NewMonitorConnectionClient(n1.cc).MonitorConnections(mctx,
		&networkservice.MonitorScopeSelector{PathSegments: []*networkservice.PathSegment{{Id: conn.GetId()}}})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if _, err := stream.Recv(); err != nil { // the initial state
		return nil, fmt.Errorf("monitor: %w", err)
	}
	var heals, control []time.Duration
	serving := conn.GetNetworkServiceEndpointName()
	for range cfg.Heals {
		old := eps[serving]
		if old == nil {
			return nil, fmt.Errorf("connection on endpoint %q, not one of the bench's", serving)
		}
		start := time.Now()
		old.proc.Kill()
		// A heal that never comes ends the stream, and the run.
		timer := time.AfterFunc(healTimeout, cancel)
		healed, err := waitHealed(stream, old.name)
		timer.Stop()
		if err != nil {
			return nil, err
		}
		control = append(control, time.Since(start))
		if dst, err = dstAddr(healed); err != nil {
			return nil, err
		}
		if err := pingUntilReply(ctx, nscNS, dst, healTimeout); err != nil {
			return nil, fmt.Errorf("after heal to %s: %w", healed.GetNetworkServiceEndpointName(), err)
		}
		heals = append(heals, time.Since(start))
		serving = healed.GetNetworkServiceEndpointName()
		if err := m.restartEndpoint(ctx, old); err != nil {
			return nil, err
		}
		p.Step()
	}
	p.Done()
	rows := []Row{
		Row{Group: group, Name: "endpoint killed → traffic through another, p50", Value: Millis(Percentile(heals, 50)), Unit: "ms", Samples: len(heals)}.
			WithBaseline("fresh Request→ping", Millis(Percentile(fresh, 50))),
		{Group: group, Name: "endpoint killed → traffic through another, max", Value: Millis(Percentile(heals, 100)), Unit: "ms", Samples: len(heals)},
		{Group: group, Name: "endpoint killed → client sees the healed connection, p50", Value: Millis(Percentile(control, 50)), Unit: "ms", Samples: len(control)},
	}
	return rows, nil
}

// waitHealed reads monitor events until the connection is UP on an
// endpoint other than old.
func waitHealed(stream networkservice.MonitorConnection_MonitorConnectionsClient, old string) (*networkservice.Connection, error) {
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for the connection to heal away from %s: %w", old, err)
		}
		for _, c := range ev.GetConnections() {
			if c.GetState() == networkservice.State_UP && c.GetNetworkServiceEndpointName() != old && c.GetNetworkServiceEndpointName() != "" {
				return c, nil
			}
		}
	}
}
