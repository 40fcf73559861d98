// Package registration keeps a NetworkServiceEndpoint registered: it
// registers, refreshes at a third of the lifetime, retries with backoff
// when the registry (or the manager in front of it) is away, and
// unregisters when its context ends.
package registration

import (
	"context"
	"log/slog"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Keep registers nse with lifetime and keeps it registered until ctx ends,
// then unregisters it (bounded by a few seconds). first receives the result
// of the first attempt (nil on success), so callers can wait for it; it may
// be nil. A value on again (may be nil) registers at once: the connection
// to a manager came back, and the manager may have restarted without it.
// Keep returns when ctx ends.
func Keep(ctx context.Context, c regapi.NetworkServiceEndpointRegistryClient, nse *regapi.NetworkServiceEndpoint, lifetime time.Duration, log *slog.Logger, first chan<- error, again <-chan struct{}) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		reg := proto.Clone(nse).(*regapi.NetworkServiceEndpoint)
		reg.ExpirationTime = timestamppb.New(time.Now().Add(lifetime))
		rctx, cancel := context.WithTimeout(ctx, lifetime/3)
		_, err := c.Register(rctx, reg)
		cancel()
		if attempt == 0 && first != nil {
			first <- err
		}
		wait := lifetime / 3
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("registration failed; retrying", "name", nse.GetName(), "err", err, "in", backoff)
			}
			wait, backoff = backoff, min(backoff*2, lifetime/3)
		} else {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			if _, err := c.Unregister(uctx, nse); err != nil {
				log.Info("unregister", "name", nse.GetName(), "err", err)
			}
			cancel()
			return
		case <-time.After(wait):
		case <-again:
			log.Debug("connection back: registering again", "name", nse.GetName())
			backoff = 100 * time.Millisecond
		}
	}
}
