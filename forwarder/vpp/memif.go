package vpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.fd.io/govpp/api"
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
	return id, c.pipeline(ctx, createMemifSocketCall(filename, ^uint32(0), func(i uint32) { id = i }))
}

// createMemifSocketCall is the request that registers filename with id
// (^0: VPP chooses), for a pipeline; made gets the socket's id.
func createMemifSocketCall(filename string, id uint32, made func(uint32)) pipelined {
	return pipelined{
		req:   &memif.MemifSocketFilenameAddDelV2{IsAdd: true, SocketID: id, SocketFilename: filename},
		attrs: []any{"socket", filename, "socket_id", id},
		wrap:  func(err error) error { return fmt.Errorf("memif socket %q: create: %w", filename, err) },
		got: func(m api.Message) {
			if r, ok := m.(*memif.MemifSocketFilenameAddDelV2Reply); ok {
				made(r.SocketID)
			}
		},
	}
}

// socketIDs hands out memif socket ids that no socket in VPP has, so
// that a socket and its memif can be created on one stream (VPP answers
// the id it chose only in the reply). It lists VPP's sockets once (VPP
// chooses random ids for the sockets it names: those of a previous run,
// the memif reserve's) and then counts up from 1, never giving an id
// twice; forget makes it list again (a VPP that came back).
type socketIDs struct {
	mu   sync.Mutex
	used map[uint32]bool // nil until listed
	next uint32
}

// take returns an id no socket in VPP has.
func (a *socketIDs) take(ctx context.Context, c *Client) (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used == nil {
		socks, err := c.ListMemifSockets(ctx)
		if err != nil {
			return 0, err
		}
		a.used = make(map[uint32]bool, len(socks))
		for _, s := range socks {
			a.used[s.ID] = true
		}
	}
	for {
		a.next++
		// 0 is VPP's default socket, ^0 asks VPP to choose.
		if id := a.next; id != 0 && id != ^uint32(0) && !a.used[id] {
			return id, nil
		}
	}
}

// forget makes the next take list VPP's sockets again, and count from 1
// again (what VPP still has is listed).
func (a *socketIDs) forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used, a.next = nil, 0
}

// DeleteMemifSocket removes a socket that no memif uses any more.
func (c *Client) DeleteMemifSocket(ctx context.Context, id uint32) error {
	return c.pipeline(ctx, deleteMemifSocketCall(id))
}

// deleteMemifSocketCall is the request that removes socket id, for a
// pipeline.
func deleteMemifSocketCall(id uint32) pipelined {
	return pipelined{
		req:   &memif.MemifSocketFilenameAddDelV2{SocketID: id},
		attrs: []any{"socket_id", id, "add", false},
		wrap:  func(err error) error { return fmt.Errorf("memif socket %d: delete: %w", id, err) },
	}
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

// MemifSpec is one memif interface, VPP being the master unless Slave.
type MemifSpec struct {
	// Slave connects to a socket another process listens on.
	Slave    bool
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

// CreateMemif creates a memif on a registered socket.
func (c *Client) CreateMemif(ctx context.Context, s MemifSpec) (idx SwIfIndex, err error) {
	idx = NoInterface
	return idx, c.pipeline(ctx, createMemifCall(s, func(i SwIfIndex) { idx = i }))
}

// createMemifCall is the request that creates memif s, for a pipeline;
// made gets its index.
func createMemifCall(s MemifSpec, made func(SwIfIndex)) pipelined {
	mode := memif.MEMIF_MODE_API_ETHERNET
	if s.IP {
		mode = memif.MEMIF_MODE_API_IP
	}
	role := memif.MEMIF_ROLE_API_MASTER
	if s.Slave {
		role = memif.MEMIF_ROLE_API_SLAVE
	}
	return pipelined{
		req:   &memif.MemifCreateV2{Role: role, Mode: mode, ID: s.ID, SocketID: s.SocketID},
		attrs: []any{"socket_id", s.SocketID, "id", s.ID, "ip", s.IP, "slave", s.Slave},
		wrap:  func(err error) error { return fmt.Errorf("memif %d on socket %d: create: %w", s.ID, s.SocketID, err) },
		got: func(m api.Message) {
			if r, ok := m.(*memif.MemifCreateV2Reply); ok {
				made(SwIfIndex(r.SwIfIndex))
			}
		},
	}
}

// DeleteMemif deletes a memif.
func (c *Client) DeleteMemif(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteMemifCall(idx))
}

// deleteMemifCall is the request that deletes memif idx, for a pipeline.
func deleteMemifCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &memif.MemifDelete{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("memif %d: delete: %w", idx, err) },
	}
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
// creating memifs on a socket of their own (filename) and deleting them:
// VPP keeps a pool's room once it has grown.
//
// Why: VPP 25.10's memif process walks that pool, pausing every 10 µs, on
// every memif admin up or down and every 3 s, and keeps its pointer into
// the pool across the pause; a memif created meanwhile that makes the pool
// grow moves it, the process reads freed memory and VPP dies (SIGSEGV in
// memif_process; here from about 500 vWires built at once). With the room
// reserved the pool does not move below n memifs.
//
// The reserve itself grows the pool, so it runs in rounds that each end
// within 2 s of their first create: the first memif in an empty pool
// wakes the process for a walk of one, after which it sleeps 3 s, and no
// reserved memif is ever set up (so no other wake-up). Each round deletes what it made (an empty
// pool stops the process) and the next grows on from there. Call it on a
// VPP with no memif. Calls are made from workers goroutines, so that
// several are in flight. It returns the room reached, which may be short
// of n when it fails.
func (c *Client) ReserveMemifs(ctx context.Context, filename string, n, workers int) (reached int, err error) {
	const maxRounds = 20
	start := time.Now()
	for round := 1; reached < n; round++ {
		if round > maxRounds {
			return reached, fmt.Errorf("reserve %d memifs: %d reached in %d rounds", n, reached, maxRounds)
		}
		made, err := c.reserveRound(ctx, filename, n, workers, reserveBudget)
		// A round slower than the one before makes fewer: the pool
		// keeps the room of the largest (a failed round's too).
		reached = max(reached, made)
		if err != nil {
			return reached, fmt.Errorf("reserve %d memifs (%d reached): %w", n, reached, err)
		}
		c.log.DebugContext(ctx, "memif pool round", "round", round, "memifs", made)
	}
	c.log.DebugContext(ctx, "memif pool reserved", "memifs", n, "took", time.Since(start))
	return reached, nil
}

// ReserveMemifSockets grows VPP's pool of memif socket files to hold n at
// once, by registering n socket filenames (all filename, VPP choosing
// their ids) and removing them: VPP keeps a pool's room once it has grown.
// It returns the room reached, which may be short of n when it fails.
//
// Why: the memif process's walk (see ReserveMemifs) takes its memif's
// entry in that pool (memif.c, memif_process: msf) before it pauses and,
// for a slave memif that is up and not connected (one on an NSM
// endpoint's socket the endpoint does not answer yet), reads the entry's
// filename and writes its fd hash after the pause. A socket file
// registered meanwhile that grows the pool moves it: VPP reads and writes
// freed memory. Each memif vwire makes has a socket file of its own
// (build), so with this pool's room as large as the memifs' no vWire
// within the memif room grows it. Unlike memifs, a socket file wakes no
// walk: the registrations go as fast as VPP answers, pipelined.
func (c *Client) ReserveMemifSockets(ctx context.Context, filename string, n, workers int) (reached int, err error) {
	const batch = 64 // requests in flight on one stream
	ids := make([]uint32, n)
	made := make([]bool, n)
	createErr := each((n+batch-1)/batch, workers, func(b int) error {
		var calls []pipelined
		for i := b * batch; i < min(n, (b+1)*batch); i++ {
			calls = append(calls, createMemifSocketCall(filename, ^uint32(0), func(id uint32) { ids[i], made[i] = id, true }))
		}
		return c.pipeline(ctx, calls...)
	})
	// Removed on a context of their own: ctx may be what failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var dels []pipelined
	for i := range ids {
		if made[i] {
			reached++
			dels = append(dels, deleteMemifSocketCall(ids[i]))
		}
	}
	deleteErr := each((len(dels)+batch-1)/batch, workers, func(b int) error {
		return c.pipeline(cctx, dels[b*batch:min(len(dels), (b+1)*batch)]...)
	})
	if err := errors.Join(createErr, deleteErr); err != nil {
		return reached, fmt.Errorf("reserve %d memif sockets (%d reached): %w", n, reached, err)
	}
	c.log.DebugContext(ctx, "memif socket pool reserved", "sockets", n)
	return reached, nil
}

// reserveBudget is how long a reserve round creates memifs: well inside
// the 3 s the memif process sleeps after the walk the round's first memif
// wakes it for.
const reserveBudget = 2 * time.Second

// reserveRound creates up to n memifs on a new socket, stopping budget after
// the first, deletes them all and the socket, and returns how many it made.
func (c *Client) reserveRound(ctx context.Context, filename string, n, workers int, budget time.Duration) (int, error) {
	sock, err := c.CreateMemifSocket(ctx, filename)
	if err != nil {
		return 0, err
	}
	made := make([]SwIfIndex, n)
	for i := range made {
		made[i] = NoInterface
	}
	var createErr error
	idx, err := c.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: 0})
	if err != nil {
		createErr = err
	} else {
		made[0] = idx
		deadline := time.Now().Add(budget)
		createErr = each(n-1, workers, func(i int) error {
			if time.Now().After(deadline) {
				return nil
			}
			idx, err := c.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: uint32(i + 1)})
			if err == nil {
				made[i+1] = idx
			}
			return err
		})
	}
	// Removed on a context of their own: ctx may be what failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	count := 0
	deleteErr := each(n, workers, func(i int) error {
		if made[i] == NoInterface {
			return nil
		}
		return c.DeleteMemif(cctx, made[i])
	})
	for _, idx := range made {
		if idx != NoInterface {
			count++
		}
	}
	return count, errors.Join(createErr, deleteErr, c.DeleteMemifSocket(cctx, sock))
}

// each calls f(i) for i in [0, n) from workers goroutines and returns the
// first error; it stops giving out work after an error.
func each(n, workers int, f func(i int) error) error {
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
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		ids <- i
	}
	close(ids)
	wg.Wait()
	return first
}

// removeMemifOn deletes the memif id on socket sock if VPP has one: the
// undo of a memif_create_v2 that got no answer (sock is chosen by vwire,
// see socketIDs, so no other memif is there). It is looked up by its name
// (memifName), not in the list of every memif: under load, listings of
// thousands of memifs for each unanswered create kept VPP's one API
// thread busy, and more creates went unanswered (#16). VPP serves a
// connection's messages in order, so the lookup, sent after the create,
// finds the memif if the create made it. A memif that cannot be looked for
// or deleted is logged; it holds its socket, whose id socketIDs never
// gives again (nor, after forget, a socket VPP lists).
func removeMemifOn(ctx context.Context, cl *Client, sock, id uint32) error {
	err := func() error {
		i, ok, err := cl.findInterfaceNamed(ctx, memifName(sock, id))
		if err != nil || !ok {
			return err
		}
		if err := cl.DeleteMemif(ctx, i.Index); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	}()
	if err != nil {
		cl.log.Error("a memif_create_v2 got no answer and the memif it may have made cannot be removed: left untagged in VPP",
			"socket_id", sock, "id", id, "err", err)
	}
	return err
}

// memifName is the name VPP 25.10 gives memif id on socket sock
// (format_memif_device_name; memifSocketOf reads it back).
func memifName(sock, id uint32) string { return fmt.Sprintf("memif%d/%d", sock, id) }

// removeSocketNamed deletes VPP's sockets named filename that no memif
// uses: the undo of a memif_socket_filename_add_del_v2 that got no answer
// and whose id VPP was to choose (the step-by-step build's). VPP serves a
// connection's messages in order, so the listing, sent after the create,
// shows the socket if the create made it. A socket that cannot be looked
// for or deleted is logged.
func removeSocketNamed(ctx context.Context, cl *Client, filename string) error {
	err := deleteUnusedSockets(ctx, cl, filename)
	if err != nil {
		cl.log.Error("a memif_socket_filename_add_del_v2 got no answer and the socket it may have made cannot be removed: left in VPP",
			"socket", filename, "err", err)
	}
	return err
}

// deleteUnusedSockets deletes VPP's memif sockets named filename that no
// memif uses: a socket a memif uses is that memif's. It lists every socket
// and every memif: for a socket whose id VPP chose, which only the
// filename finds (deleteSocketOf deletes one whose id is known).
func deleteUnusedSockets(ctx context.Context, cl *Client, filename string) error {
	socks, err := cl.ListMemifSockets(ctx)
	if err != nil {
		return err
	}
	memifs, err := cl.ListMemifs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range socks {
		if s.Filename == filename && !slices.ContainsFunc(memifs, func(m Memif) bool { return m.SocketID == s.ID }) {
			if err := cl.DeleteMemifSocket(ctx, s.ID); err != nil && !IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// deleteSocketOf deletes socket id with del (deleteMemifSocketCall(id)
// with the refusals that mean nothing to do) if it is named filename. The
// id may be another socket's now (VPP restarted: it gives ids again, and
// so does socketIDs), so the filename is checked in VPP's list of sockets;
// the memifs are not listed: VPP refuses to delete a socket a memif uses.
func deleteSocketOf(ctx context.Context, cl *Client, filename string, id uint32, del pipelined) error {
	socks, err := cl.ListMemifSockets(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(socks, MemifSocket{ID: id, Filename: filename}) {
		return nil
	}
	return cl.pipeline(ctx, del)
}

// deleteChosenMemifSocketCall is deleteMemifSocketCall for a socket whose
// id vwire chose (socketIDs), which may not exist (its create got no
// answer): VPP 25.10 refuses the delete of an unknown id with "invalid
// argument" (as it does ids 0 and ^0, never chosen), so that, like "no
// such entry", means nothing to do.
func deleteChosenMemifSocketCall(id uint32) pipelined {
	call := deleteMemifSocketCall(id)
	call.none = func(err error) bool {
		var e api.VPPApiError
		return IsNotFound(err) || errors.As(err, &e) && e == api.INVALID_ARGUMENT
	}
	return call
}
