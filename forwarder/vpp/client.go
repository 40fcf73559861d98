package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/ethernet_types"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/memclnt"
)

// SwIfIndex is the index of a VPP software interface.
type SwIfIndex uint32

// NoInterface is VPP's "no interface" index (~0).
const NoInterface SwIfIndex = ^SwIfIndex(0)

func (i SwIfIndex) api() interface_types.InterfaceIndex { return interface_types.InterfaceIndex(i) }

// Client makes VPP objects over one binary API connection: one file per
// object kind (memif.go, vxlan.go...), each with Create, Delete and List
// methods that take ctx first and domain types, never binapi structs. Each
// VPP call logs one debug line with its message name and duration, and is
// recorded in the Metrics given to NewClient. A Client is safe for
// concurrent use.
type Client struct {
	conn    api.Connection
	log     *slog.Logger
	metrics *Metrics // nil records nothing
	// afPacket lets one af_packet at a time be between its creation and
	// its admin up (see CreateAfPacket); shared by WithLogger's copies.
	afPacket *sync.Mutex
}

// NewClient returns a Client on conn; log and m may be nil.
func NewClient(conn api.Connection, log *slog.Logger, m *Metrics) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{conn: conn, log: log, metrics: m, afPacket: new(sync.Mutex)}
}

// WithLogger returns a Client on the same connection and metrics logging to
// log (for example with the connection id attached).
func (c *Client) WithLogger(log *slog.Logger) *Client {
	return &Client{conn: c.conn, log: log, metrics: c.metrics, afPacket: c.afPacket}
}

// done records one VPP call in the metrics and logs it.
func (c *Client) done(ctx context.Context, msg string, start time.Time, err error, attrs ...any) {
	took := time.Since(start)
	c.metrics.call(msg, took, err)
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs = append(attrs, "api", msg, "took", took)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	c.log.DebugContext(ctx, "vpp call", attrs...)
}

// dump sends a dump request and calls each for every details message of
// type D, until VPP's control ping reply ends the list.
func dump[D api.Message](ctx context.Context, c *Client, req api.Message, each func(D)) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, req.GetMessageName(), start, err) }()
	stream, err := c.conn.NewStream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.SendMsg(&memclnt.ControlPing{}); err != nil {
		return err
	}
	for {
		msg, err := stream.RecvMsg()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case D:
			each(m)
		case *memclnt.ControlPingReply:
			return nil
		default:
			return fmt.Errorf("%s: unexpected reply %s", req.GetMessageName(), msg.GetMessageName())
		}
	}
}

// dumps is dump for several requests on one stream, each followed by its
// control ping, all sent before any reply is read (one round trip, see
// pipeline); each gets the index of its request. Each request is recorded
// as a call of its own, timed until its list ends.
func dumps[D api.Message](ctx context.Context, c *Client, reqs []api.Message, each func(int, D)) (err error) {
	start := time.Now()
	next := 0 // the request whose list is being read
	defer func() {
		for _, r := range reqs[next:] {
			c.done(ctx, r.GetMessageName(), start, err)
		}
	}()
	stream, err := c.conn.NewStream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	for _, r := range reqs {
		if err := stream.SendMsg(r); err != nil {
			return err
		}
		if err := stream.SendMsg(&memclnt.ControlPing{}); err != nil {
			return err
		}
	}
	for next < len(reqs) {
		msg, err := stream.RecvMsg()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case D:
			each(next, m)
		case *memclnt.ControlPingReply:
			c.done(ctx, reqs[next].GetMessageName(), start, nil)
			next++
		default:
			return fmt.Errorf("%s: unexpected reply %s", reqs[next].GetMessageName(), msg.GetMessageName())
		}
	}
	return nil
}

// IsNotFound reports whether err is VPP's answer for an object that does not
// exist (what a second delete gets).
func IsNotFound(err error) bool {
	var e api.VPPApiError
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case api.NO_SUCH_ENTRY, api.NO_SUCH_TABLE, api.INVALID_SW_IF_INDEX, api.INVALID_INTERFACE, api.NO_SUCH_NODE:
		return true
	}
	return false
}

// Conversions between domain types and binapi types.

func toAddress(a netip.Addr) ip_types.Address { return ip_types.NewAddress(net.IP(a.AsSlice())) }

func fromAddress(a ip_types.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.ToIP())
	return ip.Unmap()
}

func toPrefix(p netip.Prefix) ip_types.Prefix {
	return ip_types.Prefix{Address: toAddress(p.Addr()), Len: uint8(p.Bits())}
}

func fromPrefix(p ip_types.Prefix) netip.Prefix {
	return netip.PrefixFrom(fromAddress(p.Address), int(p.Len))
}

func toMAC(m net.HardwareAddr) ethernet_types.MacAddress {
	var out ethernet_types.MacAddress
	copy(out[:], m)
	return out
}

func fromMAC(m ethernet_types.MacAddress) net.HardwareAddr {
	return net.HardwareAddr(append([]byte(nil), m[:]...))
}

func addressUnion(a netip.Addr) ip_types.AddressUnion {
	if !a.IsValid() {
		return ip_types.AddressUnion{}
	}
	if a.Is4() {
		return ip_types.AddressUnionIP4(a.As4())
	}
	return ip_types.AddressUnionIP6(a.As16())
}

// pipelined is one request of a pipeline, what is logged of it, and its
// error's wrapping.
type pipelined struct {
	req   api.Message
	attrs []any
	wrap  func(error) error
	got   func(api.Message) // the reply of a request that succeeded; may be nil
	// none, when set, tells a refusal that only means there was nothing
	// to do (a delete of what is not there): the call counts as done.
	none func(error) bool
	// lost, when set, is told of a request whose reply never came (the
	// context ended or the connection failed first): VPP may have
	// carried it out all the same.
	lost func()
}

// pipeline sends every request on one stream before reading any reply:
// VPP serves them in order, one after the other, with no round trip in
// between. Each call is recorded and logged as if made alone (its time runs
// from the pipeline's start to its reply). It returns the first failure;
// requests after a failed one have run all the same, so callers pipeline
// only what their rollback removes either way.
func (c *Client) pipeline(ctx context.Context, calls ...pipelined) error {
	for _, err := range c.pipelineEach(ctx, calls...) {
		if err != nil {
			return err
		}
	}
	return nil
}

// pipelineEach is pipeline, returning each call's error (nil when it
// succeeded), wrapped by its wrap: for callers that go on past failures
// and judge each (the undo stack). A call that got no reply (the stream
// or the connection failed) gets that failure.
func (c *Client) pipelineEach(ctx context.Context, calls ...pipelined) []error {
	errs := make([]error, len(calls))
	if len(calls) == 0 {
		return errs
	}
	start := time.Now()
	fail := func(from int, err error) []error {
		for i, p := range calls[from:] {
			c.done(ctx, p.req.GetMessageName(), start, err, p.attrs...)
			errs[from+i] = p.wrap(err)
			if p.lost != nil {
				p.lost()
			}
		}
		return errs
	}
	stream, err := c.conn.NewStream(ctx)
	if err != nil {
		return fail(0, err)
	}
	defer func() { _ = stream.Close() }()
	for i, p := range calls {
		if err := stream.SendMsg(p.req); err != nil {
			// The ones sent have no reader left: their replies are
			// dropped with the stream.
			return fail(i, err)
		}
	}
	for i, p := range calls {
		msg, err := stream.RecvMsg()
		if err != nil {
			return fail(i, err)
		}
		err = retval(msg)
		if err != nil && p.none != nil && p.none(err) {
			err = nil
		}
		c.done(ctx, p.req.GetMessageName(), start, err, p.attrs...)
		if err != nil {
			errs[i] = p.wrap(err)
			continue
		}
		if p.got != nil {
			p.got(msg)
		}
	}
	return errs
}

// retval is a reply's retval as VPP's error (nil for 0).
func retval(msg api.Message) error {
	v := reflect.ValueOf(msg)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	if f := v.FieldByName("Retval"); f.IsValid() && f.CanInt() {
		return api.RetvalToVPPApiError(int32(f.Int()))
	}
	return nil
}
