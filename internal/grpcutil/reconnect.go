package grpcutil

import (
	"context"
	"time"

	"google.golang.org/grpc/connectivity"
)

// Reconnected returns a channel that receives a value each time the
// connection is READY again after it was lost. A peer that restarted (a
// manager) has forgotten what this side told it: registrations must be
// made again at once, not at their next refresh. The connection is kept
// up meanwhile (an IDLE one is reconnected). The channel is never closed;
// watching ends with ctx.
func (c *Conn) Reconnected(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		ready, lost := false, false
		for ctx.Err() == nil {
			cc := c.current()
			st := cc.GetState()
			switch st {
			case connectivity.Ready:
				if lost {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
				ready, lost = true, false
			case connectivity.Idle:
				lost = lost || ready
				cc.Connect()
			case connectivity.Shutdown:
				// Closed, or replaced by a redial (SVID rotation): look
				// again shortly.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			default:
				lost = lost || ready
			}
			cc.WaitForStateChange(ctx, st)
		}
	}()
	return ch
}
