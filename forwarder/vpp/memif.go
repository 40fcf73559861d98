package vpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.fd.io/govpp/binapi/memif"
)

// MemifSocket is one memif control socket VPP listens on.
type MemifSocket struct {
	ID uint32
	// Filename is a path, or "abstract:<name>,netns_name=<netns path>" for
	// an abstract socket inside a network namespace.
	Filename string
}

// CreateMemifSocket registers a socket filename and returns the id VPP
// gave it.
func (c *Client) CreateMemifSocket(ctx context.Context, filename string) (id uint32, err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "memif_socket_filename_add_del_v2", start, err, "socket", filename, "socket_id", id)
	}()
	reply, err := memif.NewServiceClient(c.conn).MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{
		IsAdd: true, SocketID: ^uint32(0), SocketFilename: filename,
	})
	if err != nil {
		return 0, fmt.Errorf("memif socket %q: create: %w", filename, err)
	}
	return reply.SocketID, nil
}

// DeleteMemifSocket removes a socket that no memif uses any more.
func (c *Client) DeleteMemifSocket(ctx context.Context, id uint32) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "memif_socket_filename_add_del_v2", start, err, "socket_id", id, "add", false) }()
	_, err = memif.NewServiceClient(c.conn).MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{SocketID: id})
	if err != nil {
		return fmt.Errorf("memif socket %d: delete: %w", id, err)
	}
	return nil
}

// ListMemifSockets returns every memif socket.
func (c *Client) ListMemifSockets(ctx context.Context) ([]MemifSocket, error) {
	var out []MemifSocket
	err := dump(ctx, c, &memif.MemifSocketFilenameDump{}, func(d *memif.MemifSocketFilenameDetails) {
		out = append(out, MemifSocket{ID: d.SocketID, Filename: d.SocketFilename})
	})
	if err != nil {
		return nil, fmt.Errorf("list memif sockets: %w", err)
	}
	return out, nil
}

// MemifSpec is one memif interface, VPP being the master.
type MemifSpec struct {
	SocketID uint32
	// ID tells apart the memifs of one socket.
	ID uint32
	// IP makes an IP-mode memif (IP packets, no Ethernet header).
	IP bool
}

// Memif is what VPP reports of one memif.
type Memif struct {
	Index    SwIfIndex
	SocketID uint32
	ID       uint32
	IP       bool
	Name     string
}

// CreateMemif creates a master memif on a registered socket.
func (c *Client) CreateMemif(ctx context.Context, s MemifSpec) (idx SwIfIndex, err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "memif_create_v2", start, err, "socket_id", s.SocketID, "id", s.ID, "ip", s.IP, "sw_if_index", idx)
	}()
	mode := memif.MEMIF_MODE_API_ETHERNET
	if s.IP {
		mode = memif.MEMIF_MODE_API_IP
	}
	reply, err := memif.NewServiceClient(c.conn).MemifCreateV2(ctx, &memif.MemifCreateV2{
		Role: memif.MEMIF_ROLE_API_MASTER, Mode: mode, ID: s.ID, SocketID: s.SocketID,
	})
	if err != nil {
		return NoInterface, fmt.Errorf("memif %d on socket %d: create: %w", s.ID, s.SocketID, err)
	}
	return SwIfIndex(reply.SwIfIndex), nil
}

// DeleteMemif deletes a memif.
func (c *Client) DeleteMemif(ctx context.Context, idx SwIfIndex) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "memif_delete", start, err, "sw_if_index", idx) }()
	_, err = memif.NewServiceClient(c.conn).MemifDelete(ctx, &memif.MemifDelete{SwIfIndex: idx.api()})
	if err != nil {
		return fmt.Errorf("memif %d: delete: %w", idx, err)
	}
	return nil
}

// ListMemifs returns every memif.
func (c *Client) ListMemifs(ctx context.Context) ([]Memif, error) {
	var out []Memif
	err := dump(ctx, c, &memif.MemifDump{}, func(d *memif.MemifDetails) {
		out = append(out, Memif{Index: SwIfIndex(d.SwIfIndex), SocketID: d.SocketID, ID: d.ID, IP: d.Mode == memif.MEMIF_MODE_API_IP, Name: d.IfName})
	})
	if err != nil {
		return nil, fmt.Errorf("list memifs: %w", err)
	}
	return out, nil
}

// ReserveMemifs grows VPP's pool of memif interfaces to hold n at once, by
// creating n memifs on a socket of their own (filename) and deleting them:
// VPP keeps a pool's room once it has grown. VPP 25.10's memif process
// walks that pool pausing every 10 µs (on every memif admin up or down,
// and every 3 s), and keeps its pointer into the pool across the pause; a
// memif created meanwhile that makes the pool grow moves it, and the
// process then reads freed memory and VPP dies (SIGSEGV in memif_process,
// seen here from about 500 vWires built at once). With the room reserved
// the pool does not move below n memifs. Calls are made from workers
// goroutines, so that several are in flight.
func (c *Client) ReserveMemifs(ctx context.Context, filename string, n, workers int) (err error) {
	if n <= 0 {
		return nil
	}
	start := time.Now()
	sock, err := c.CreateMemifSocket(ctx, filename)
	if err != nil {
		return fmt.Errorf("reserve memifs: %w", err)
	}
	made := make([]SwIfIndex, n)
	each := func(f func(i int) error) error {
		var mu sync.Mutex
		var first error
		ids := make(chan int)
		var wg sync.WaitGroup
		for range max(workers, 1) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ids {
					if err := f(i); err != nil {
						mu.Lock()
						first = cmp.Or(first, err)
						mu.Unlock()
					}
				}
			}()
		}
		for i := range n {
			ids <- i
		}
		close(ids)
		wg.Wait()
		return first
	}
	createErr := each(func(i int) error {
		made[i] = NoInterface
		if ctx.Err() != nil {
			return ctx.Err()
		}
		idx, err := c.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: uint32(i)})
		if err == nil {
			made[i] = idx
		}
		return err
	})
	// Removed on a context of their own: ctx may be what failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	deleteErr := each(func(i int) error {
		if made[i] == NoInterface {
			return nil
		}
		return c.DeleteMemif(cctx, made[i])
	})
	if err := errors.Join(createErr, deleteErr, c.DeleteMemifSocket(cctx, sock)); err != nil {
		return fmt.Errorf("reserve %d memifs: %w", n, err)
	}
	c.log.DebugContext(ctx, "memif pool reserved", "memifs", n, "took", time.Since(start))
	return nil
}
