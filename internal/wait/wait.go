// Package wait holds the one way the project waits for a while: until the
// time is up or the context ends, whichever is first.
package wait

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx ends; it reports whether the whole
// time passed (false: ctx ended first).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
