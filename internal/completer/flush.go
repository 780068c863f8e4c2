package completer

import (
	"context"
	"fmt"
)

// Flush waits until every outcome handed to Complete before the call has
// been written (or given up on at Stop), or until ctx ends. Outcomes
// queued after the call do not hold it up, so it returns even while other
// work keeps completing. Outcomes are written in the order they were
// queued, which is what makes the count enough.
func (c *Completer) Flush(ctx context.Context) error {
	c.mu.Lock()
	target := c.queued
	c.mu.Unlock()
	for {
		c.mu.Lock()
		done, progress := c.done, c.progress
		c.mu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return fmt.Errorf("flush job outcomes: %w", context.Cause(ctx))
		}
	}
}

// advance records n more outcomes written and wakes Flush callers.
func (c *Completer) advance(n int) {
	c.mu.Lock()
	c.done += uint64(n)
	close(c.progress)
	c.progress = make(chan struct{})
	c.mu.Unlock()
}
