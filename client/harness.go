package client

import (
	"context"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/clientbridge"
	"github.com/millrace/millrace/millracetype"
)

// The bridge to millracetest's worker harness (internal/clientbridge).
func init() {
	clientbridge.WorkJob = bridgeWorkJob
	clientbridge.SetMaintenanceInterval = bridgeMaintenanceInterval
}

func bridgeMaintenanceInterval(cfg any, d time.Duration) error {
	c, ok := cfg.(*Config)
	if !ok || c == nil {
		return fmt.Errorf("clientbridge: %T is not a non-nil *client.Config", cfg)
	}
	if d < 0 {
		return fmt.Errorf("%w: maintenance interval %v is negative", ErrInvalidConfig, d)
	}
	c.maintenanceInterval = d
	return nil
}

// harnessWorker is what every *Client[TTx] is to the bridge.
type harnessWorker interface {
	harnessWork(ctx context.Context, row *millracetype.JobRow) (*driver.JobSetState, EventKind)
}

func bridgeWorkJob(ctx context.Context, c any, row *millracetype.JobRow) (*driver.JobSetState, string, error) {
	w, ok := c.(harnessWorker)
	if !ok {
		return nil, "", fmt.Errorf("clientbridge: %T is not a *client.Client", c)
	}
	if row == nil {
		return nil, "", fmt.Errorf("%w: nil job row", ErrInvalidArgs)
	}
	outcome, kind := w.harnessWork(ctx, row)
	return outcome, string(kind), nil
}

// harnessWork runs one job as a producer's worker would, without handing
// the outcome to the completer.
func (c *Client[TTx]) harnessWork(ctx context.Context, row *millracetype.JobRow) (*driver.JobSetState, EventKind) {
	outcome, kind := c.exec.Execute(ctx, row, c.config.clock())
	return outcome, eventKind(kind)
}
