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
	stopGracefully(g, gs)
	return nil
}
