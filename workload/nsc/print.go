package nsc

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// Report is what the client prints about a connection: one line of text,
// or one JSON object, per event.
type Report struct {
	// Event is connected, changed, expired or closed for the client's own
	// view, or monitor for an event from the manager (Type says which).
	Event          string            `json:"event"`
	Type           string            `json:"type,omitempty"`
	URL            string            `json:"url"`
	ID             string            `json:"id"`
	NetworkService string            `json:"network_service"`
	Endpoint       string            `json:"endpoint,omitempty"`
	State          string            `json:"state,omitempty"`
	Mechanism      string            `json:"mechanism,omitempty"`
	Parameters     map[string]string `json:"parameters,omitempty"`
	SrcIPs         []string          `json:"src_ips,omitempty"`
	DstIPs         []string          `json:"dst_ips,omitempty"`
	SrcRoutes      []string          `json:"src_routes,omitempty"`
	DstRoutes      []string          `json:"dst_routes,omitempty"`
}

// newReport describes conn, as known for target t.
func newReport(event string, t Target, conn *networkservice.Connection) Report {
	ipc := conn.GetContext().GetIpContext()
	return Report{
		Event:          event,
		URL:            t.URL,
		ID:             conn.GetId(),
		NetworkService: conn.GetNetworkService(),
		Endpoint:       conn.GetNetworkServiceEndpointName(),
		State:          conn.GetState().String(),
		Mechanism:      conn.GetMechanism().GetType(),
		Parameters:     conn.GetMechanism().GetParameters(),
		SrcIPs:         ipc.GetSrcIpAddrs(),
		DstIPs:         ipc.GetDstIpAddrs(),
		SrcRoutes:      routes(ipc.GetSrcRoutes()),
		DstRoutes:      routes(ipc.GetDstRoutes()),
	}
}

// view is what a user sees of conn: it changes when the endpoint, the
// mechanism, the addresses or the routes do, not on every refresh.
func view(conn *networkservice.Connection) string {
	r := newReport("", Target{}, conn)
	r.ID, r.State = "", ""
	return r.text()
}

func routes(rs []*networkservice.Route) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		s := r.GetPrefix()
		if r.GetNextHop() != "" {
			s += " via " + r.GetNextHop()
		}
		out = append(out, s)
	}
	return out
}

// text is the report on one line: event, url, then key=value fields.
func (r Report) text() string {
	var b strings.Builder
	b.WriteString(r.Event)
	if r.Type != "" {
		b.WriteString(" " + r.Type)
	}
	b.WriteString(" " + r.URL)
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	field("id", r.ID)
	field("service", r.NetworkService)
	field("endpoint", r.Endpoint)
	field("state", r.State)
	if r.Mechanism != "" {
		params := make([]string, 0, len(r.Parameters))
		for _, k := range slices.Sorted(maps.Keys(r.Parameters)) {
			params = append(params, k+"="+r.Parameters[k])
		}
		field("mechanism", r.Mechanism+"{"+strings.Join(params, ",")+"}")
	}
	field("src", strings.Join(r.SrcIPs, ","))
	field("dst", strings.Join(r.DstIPs, ","))
	field("src_routes", strings.Join(r.SrcRoutes, ","))
	field("dst_routes", strings.Join(r.DstRoutes, ","))
	return b.String()
}

// printer writes reports to one writer from every connection's goroutine.
type printer struct {
	json bool

	mu sync.Mutex // guards w
	w  io.Writer
}

func newPrinter(w io.Writer, format string) (*printer, error) {
	if w == nil {
		w = io.Discard
	}
	switch format {
	case "", "text":
		return &printer{w: w}, nil
	case "json":
		return &printer{w: w, json: true}, nil
	}
	return nil, fmt.Errorf("nsc: output format %q: want text or json", format)
}

func (p *printer) connection(event string, t Target, conn *networkservice.Connection) {
	p.print(newReport(event, t, conn))
}

// event prints each connection of a monitor event, in id order.
func (p *printer) event(t Target, ev *networkservice.ConnectionEvent) {
	conns := ev.GetConnections()
	if len(conns) == 0 {
		p.print(Report{Event: "monitor", Type: ev.GetType().String(), URL: t.URL})
		return
	}
	for _, id := range slices.Sorted(maps.Keys(conns)) {
		r := newReport("monitor", t, conns[id])
		r.Type = ev.GetType().String()
		p.print(r)
	}
}

func (p *printer) print(r Report) {
	var line []byte
	if p.json {
		line, _ = json.Marshal(r)
	} else {
		line = []byte(r.text())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w.Write(append(line, '\n'))
}
