package backoff

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, want := range steps {
		want *= time.Millisecond
		got := b.Next()
		if got < want*8/10 || got > want*12/10 {
			t.Fatalf("step %d: %s, want %s ±20%%", i, got, want)
		}
	}
	b.Reset()
	if got := b.Next(); got > 120*time.Millisecond {
		t.Fatalf("after Reset: %s", got)
	}
	var zero Backoff
	if got := zero.Next(); got < 80*time.Millisecond || got > 120*time.Millisecond {
		t.Fatalf("zero value: %s", got)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("full sleep reported cancelled")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("Sleep ignored a cancelled context")
	}
	if Sleep(ctx, 0) {
		t.Fatal("zero sleep on a cancelled context reported success")
	}
}
