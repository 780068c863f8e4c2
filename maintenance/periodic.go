package maintenance

import (
	"context"
	"time"
)

// periodic is the base of the services that run one pass at start and
// then every interval (plus up to 10% jitter) until stopped: the
// scheduler, the rescuer and the cleaners. A failed pass is logged and the
// next one runs at the usual time.
type periodic struct {
	serviceBase

	interval time.Duration
	pass     func(ctx context.Context) error
}

// RunNow asks for a pass at once instead of at the next interval (tests,
// and operators who do not want to wait). It does not block; requests made
// while a pass runs fold into one more pass.
func (p *periodic) RunNow() { p.wakeUp() }

// Start starts the loop: a pass at once, then one every interval.
func (p *periodic) Start(ctx context.Context) error {
	return p.startEvery(ctx, p.interval, p.pass)
}
