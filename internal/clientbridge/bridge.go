// Package clientbridge lets millracetest run one job through a client's
// own executor (its workers, hooks, middleware, timeout, panic recovery and
// job context) without package client exporting that to applications.
// Package client sets WorkJob when it is initialized; nothing else may set
// it.
package clientbridge

import (
	"context"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// WorkJob runs row, which must be marked running already, through
// client's executor (client is a *client.Client of any transaction type)
// and returns the outcome to write and how the attempt ended (the event
// kind's name). It writes nothing.
var WorkJob func(ctx context.Context, client any, row *millracetype.JobRow) (outcome *driver.JobSetState, eventKind string, err error)

// SetMaintenanceInterval makes the maintenance services (scheduler,
// rescuer, cleaners) of clients made from cfg (a *client.Config) pass every
// d rather than at their defaults, so that ShutdownUnderLoad can see the
// stuck-job rescuer act within a round. Package client sets it.
var SetMaintenanceInterval func(cfg any, d time.Duration) error
