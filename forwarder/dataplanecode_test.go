package forwarder

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A dataplane's refusal that carries a code of its own (a full node:
// ResourceExhausted) reaches the caller with it; any other failure is
// Internal.
func TestDataplaneCode(t *testing.T) {
	full := status.Error(codes.ResourceExhausted, "memif: the room reserved in VPP's memif pool is taken")
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("%w: 2048 of 2048 memifs held by other vWires", full), codes.ResourceExhausted},
		{full, codes.ResourceExhausted},
		{errors.New("interfaces [917 1672]: list: broken pipe"), codes.Internal},
		{fmt.Errorf("build: %w", context.DeadlineExceeded), codes.Internal},
	} {
		if got := dataplaneCode(c.err); got != c.want {
			t.Errorf("dataplaneCode(%q) = %v, want %v", c.err, got, c.want)
		}
	}
}
