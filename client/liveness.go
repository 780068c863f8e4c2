package client

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
)

// HeartbeatRescueMessage is the error recorded on a job rescued because its
// client stopped heartbeating.
const HeartbeatRescueMessage = "Job rescued: its client stopped heartbeating"

// clientMetadata is what a working client records about itself in its
// millrace_client row, for other clients and for operators.
type clientMetadata struct {
	Kinds  []string `json:"kinds"`
	Queues []string `json:"queues"`
	Host   string   `json:"host,omitempty"`
	PID    int      `json:"pid"`
}

// newLiveness makes this run's heartbeat service (internal/liveness).
func (c *Client[TTx]) newLiveness(exec driver.Executor) (*liveness.Service, error) {
	host, _ := os.Hostname()
	var kinds []string
	if c.config.Workers != nil {
		kinds = slices.Sorted(slices.Values(c.config.Workers.kinds()))
	}
	meta, err := json.Marshal(clientMetadata{Kinds: kinds, Queues: slices.Sorted(maps.Keys(c.config.Queues)),
		Host: host, PID: os.Getpid()})
	if err != nil {
		return nil, fmt.Errorf("start client %s: encode its metadata: %w", c.config.ID, err)
	}
	lv, err := liveness.New(exec, &liveness.Config{Schema: c.config.Schema, ClientID: c.config.ID, Metadata: meta,
		Interval: c.config.HeartbeatInterval, DeadAfter: c.config.HeartbeatTimeout, Logger: c.config.Logger,
		Rescue: c.heartbeatRescue, OnLost: c.leaseLost})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return lv, nil
}

// heartbeatRescue is the verdict on a running job whose client is dead:
// River's rescue rule, except that a job this client has no worker for
// is never discarded here (a client that works its kind will judge it).
func (c *Client[TTx]) heartbeatRescue(job *millracetype.JobRow) *driver.JobRescue {
	if job.Attempt >= job.MaxAttempts && (c.config.Workers == nil || c.config.Workers.lookup(job.Kind) == nil) {
		return nil
	}
	return maintenance.RescueVerdict(job, c.config.clock().UTC(), HeartbeatRescueMessage, c.safeNextRetry)
}

// leaseLost cancels every running job: the client's lease is dead, so its
// jobs are (or are about to be) rescued and run elsewhere.
func (c *Client[TTx]) leaseLost(cause error) {
	n := 0
	for _, p := range c.allProducers() {
		n += p.CancelAll(cause)
	}
	c.config.Logger.Error("millrace: this client lost its heartbeat lease; its running jobs are cancelled", "client_id", c.config.ID,
		"jobs", n, "cause", cause)
}
