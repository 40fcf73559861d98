package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually tries again.
const PollInterval = 100 * time.Millisecond

// permanentError ends a Poll early: waiting longer cannot help.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Poll and Eventually stop at once.
func Permanent(err error) error { return permanentError{err} }

// Poll calls cond every PollInterval until it returns nil, returns an error
// wrapped by Permanent, or timeout has passed; it returns cond's last error.
// Timeouts bound a wait, they never assert speed: callers pick generous
// ones.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		var perm permanentError
		if err == nil || errors.As(err, &perm) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still after %v: %w", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}

// Eventually is Poll that fails the test, saying what it waited for, when
// cond does not succeed in time.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}
