package maintenance

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// startLoop starts the one loop every service runs its passes in, one at a
// time until the service stops: the first pass after first(), each
// following one after next() (called once the previous pass is done), or
// at once when wakeUp is called meanwhile.
func (b *serviceBase) startLoop(ctx context.Context, first, next func() time.Duration, pass func(ctx context.Context)) error {
	ctx, shouldStart, started, stopped := b.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	go func() {
		defer stopped()
		started()
		timer := time.NewTimer(max(first(), 0))
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			case <-b.wake:
				timer.Stop()
			}
			pass(ctx)
			if b.passes != nil {
				select {
				case b.passes <- struct{}{}:
				default:
				}
			}
			timer.Reset(max(next(), 0))
		}
	}()
	return nil
}

// startEvery runs pass at start and then every interval plus up to 10%
// jitter (so that services started together spread out). A failed pass
// is logged and the next one runs at the usual time.
func (b *serviceBase) startEvery(ctx context.Context, interval time.Duration, pass func(ctx context.Context) error) error {
	return b.startLoop(ctx,
		func() time.Duration { return 0 },
		func() time.Duration { return interval + time.Duration(rand.Int64N(int64(interval)/10+1)) },
		func(ctx context.Context) { b.logFailure(ctx, pass(ctx), "retrying at the next interval") })
}

// startOnSchedule runs pass at each time next gives after the clock's
// now, the first one included. A failed pass is logged and the next one
// runs at its scheduled time. next is the user's schedule: if it panics, or
// gives a time that is not after now (which would run passes back to back),
// the error is logged and no more passes are scheduled (wakeUp still runs
// one).
func (b *serviceBase) startOnSchedule(ctx context.Context, next func(time.Time) time.Time, pass func(ctx context.Context) error) error {
	untilNext := func() time.Duration {
		now := b.now()
		at, err := safeSchedule(next, now)
		if err != nil {
			b.logger.Error("maintenance: schedule failed; no more scheduled passes", "service", b.name, "error", err)
			return never
		}
		return at.Sub(now)
	}
	return b.startLoop(ctx, untilNext, untilNext,
		func(ctx context.Context) { b.logFailure(ctx, pass(ctx), "retrying at the next scheduled time") })
}

// never is a wait that outlasts any service.
const never = time.Duration(math.MaxInt64)

// safeSchedule calls a schedule, turning a panic, or a time not after now,
// into an error.
func safeSchedule(next func(time.Time) time.Time, now time.Time) (at time.Time, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("schedule panicked: %v", r)
		}
	}()
	at = next(now)
	if !at.After(now) {
		return at, fmt.Errorf("schedule gave %s, not after now (%s)", at.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	}
	return at, nil
}

// wakeUp asks the loop for a pass at once. It does not block; requests
// made while a pass runs fold into one more pass.
func (b *serviceBase) wakeUp() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// logFailure logs a pass's error, unless the service is stopping.
func (b *serviceBase) logFailure(ctx context.Context, err error, then string) {
	if err != nil && ctx.Err() == nil {
		b.logger.Warn("maintenance: pass failed; "+then, "service", b.name, "error", err)
	}
}
