package maintenance

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// periodic runs one pass at start and then every interval (plus up to 10%
// jitter) until stopped. A failed pass is logged and the next one runs at
// the usual time. Passes signals each completed pass (for tests).
type periodic struct {
	serviceBase

	once     sync.Once
	interval time.Duration
	pass     func(ctx context.Context) error
	passes   chan struct{} // optional, receives a value after each pass
	wake     chan struct{} // RunNow's requests
}

// RunNow asks for a pass at once instead of at the next interval (tests,
// and operators who do not want to wait). It does not block; requests made
// while a pass runs fold into one more pass.
func (p *periodic) RunNow() {
	p.init()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *periodic) init() {
	p.once.Do(func() { p.wake = make(chan struct{}, 1) })
}

// Start starts the loop.
func (p *periodic) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := p.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	p.init()
	go func() {
		defer stopped()
		started()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			case <-p.wake:
				timer.Stop()
			}
			if err := p.pass(ctx); err != nil && ctx.Err() == nil {
				p.logger.Warn("maintenance: pass failed; retrying at the next interval", "service", p.name, "error", err)
			}
			if p.passes != nil {
				select {
				case p.passes <- struct{}{}:
				default:
				}
			}
			timer.Reset(p.interval + time.Duration(rand.Int64N(int64(p.interval)/10+1)))
		}
	}()
	return nil
}
