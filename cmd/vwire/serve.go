package main

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
)

// gracePeriod bounds how long a stopping server waits for in-flight calls.
const gracePeriod = 5 * time.Second

// serveUntilDone serves until ctx ends (SIGINT/SIGTERM), then stops
// gracefully: no new calls, in-flight ones get gracePeriod to finish.
func serveUntilDone(ctx context.Context, g *globals, gs *grpc.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.log.Info("stopping", "grace", gracePeriod)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		gs.Stop()
	}
	return nil
}
