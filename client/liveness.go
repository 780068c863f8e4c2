package client

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/elector"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
)

// HeartbeatRescueMessage starts the error recorded on a job rescued because
// its client stopped heartbeating; the rest names both clients:
// "Job rescued: its client stopped heartbeating (client a-1, rescued by b-2)".
const HeartbeatRescueMessage = "Job rescued: its client stopped heartbeating"

// OrphanRescueMessage is the error recorded on a job that the database had
// running under a live client that did not know it (the answer to the
// fetch that took it was lost with its connection).
const OrphanRescueMessage = "Job rescued: its client had lost track of it"

// heartbeatRescueMessage is the full message for a job of client dead
// rescued by client by.
func heartbeatRescueMessage(dead, by string) string {
	return HeartbeatRescueMessage + " (client " + dead + ", rescued by " + by + ")"
}

// clientMetadata is what a working client records about itself in its
// millrace_client row, for other clients and for operators.
type clientMetadata struct {
	Domain string   `json:"domain,omitempty"`
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
	meta, err := json.Marshal(clientMetadata{Domain: c.config.Domain, Kinds: kinds, Queues: slices.Sorted(maps.Keys(c.config.Queues)),
		Host: host, PID: os.Getpid()})
	if err != nil {
		return nil, fmt.Errorf("start client %s: encode its metadata: %w", c.config.ID, err)
	}
	lv, err := liveness.New(exec, &liveness.Config{Schema: c.config.Schema, ClientID: c.config.ID, Metadata: meta,
		Interval: c.config.HeartbeatInterval, DeadAfter: c.config.HeartbeatTimeout, Logger: c.config.Logger,
		Rescue: c.heartbeatRescue, OnLost: c.leaseLost, OnRegained: c.leaseRegained, Owns: c.owns, RescueOrphan: c.orphanRescue})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return lv, nil
}

// heartbeatRescue is the verdict on a running job whose client is dead:
// River's rescue rule, except that a job this client has no worker for
// is never discarded here (maintenance.RescueVerdict).
func (c *Client[TTx]) heartbeatRescue(job *millracetype.JobRow) *driver.JobRescue {
	known := c.config.Workers != nil && c.config.Workers.lookup(job.Kind) != nil
	dead := ""
	if n := len(job.AttemptedBy); n > 0 {
		dead = job.AttemptedBy[n-1]
	}
	return maintenance.RescueVerdict(job, c.config.clock().UTC(), heartbeatRescueMessage(dead, c.config.ID), c.safeNextRetry, known)
}

// orphanRescue is the verdict on a job the database has running under
// this client although it does not run it: River's rescue rule.
func (c *Client[TTx]) orphanRescue(job *millracetype.JobRow) *driver.JobRescue {
	known := c.config.Workers != nil && c.config.Workers.lookup(job.Kind) != nil
	return maintenance.RescueVerdict(job, c.config.clock().UTC(), OrphanRescueMessage, c.safeNextRetry, known)
}

// owns reports whether this client runs job id or holds its outcome. It
// looks where a job goes, in that order: a producer (also one draining
// after Queues().Remove), then the completer, which takes the outcome
// before the producer lets the job go; a job found in neither has left
// both, and its row is no longer running unless the client never had it.
func (c *Client[TTx]) owns(id int64) bool {
	for _, p := range c.allProducers() {
		if p.Runs(id) {
			return true
		}
	}
	c.queuesMu.Lock()
	draining := slices.Clone(c.draining)
	c.queuesMu.Unlock()
	for _, p := range draining {
		if p.Runs(id) {
			return true
		}
	}
	c.mu.Lock()
	comp := c.completer
	c.mu.Unlock()
	return comp != nil && comp.Holds(id)
}

// leaseLost cancels every running job: the client's lease is dead, so its
// jobs are (or are about to be) rescued and run elsewhere.
func (c *Client[TTx]) leaseLost(cause error) {
	// Out of leadership until the lease is back: the other clients are
	// about to have this one dead and resign its terms.
	for _, el := range c.runElectors() {
		el.Suspend()
	}
	n := 0
	for _, p := range c.allProducers() {
		n += p.CancelAll(cause)
	}
	c.config.Logger.Error("millrace: this client lost its heartbeat lease; its running jobs are cancelled and it leads nothing until the lease is back",
		"client_id", c.config.ID, "jobs", n, "cause", cause)
}

// leaseRegained is the liveness service's OnRegained: the client may lead
// again.
func (c *Client[TTx]) leaseRegained() {
	for _, el := range c.runElectors() {
		el.Resume()
	}
	c.config.Logger.Info("millrace: this client holds a heartbeat lease again", "client_id", c.config.ID)
}

// runElectors returns this run's electors (none when it opted out of
// leadership).
func (c *Client[TTx]) runElectors() []*elector.Elector {
	c.mu.Lock()
	defer c.mu.Unlock()
	var els []*elector.Elector
	for _, el := range []*elector.Elector{c.elector, c.domainElector} {
		if el != nil {
			els = append(els, el)
		}
	}
	return els
}
