package nsc

import (
	"context"
	"net/netip"
	"time"
)

// SetProbe replaces the datapath probe of the liveness check.
func (c *Client) SetProbe(p func(ctx context.Context, nsPath string, dst netip.Addr, id, seq int, timeout time.Duration) error) {
	c.probe = p
}
