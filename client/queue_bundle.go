package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// Errors of runtime queue management; test with errors.Is.
var (
	// ErrQueueAlreadyAdded is returned (wrapped) by QueueBundle.Add for a
	// queue the client already works.
	ErrQueueAlreadyAdded = errors.New("queue is already configured on this client")
	// ErrQueueNotFound is returned (wrapped) by QueueBundle.Remove for a
	// queue the client does not work. It wraps ErrNotFound.
	ErrQueueNotFound = fmt.Errorf("queue is not configured on this client: %w", ErrNotFound)
)

// QueueBundle adds and removes the queues a client works, before Start or
// while it runs. Get it with Client.Queues.
type QueueBundle[TTx any] struct {
	c *Client[TTx]
}

// Queues returns the client's queue bundle.
func (c *Client[TTx]) Queues() *QueueBundle[TTx] { return &QueueBundle[TTx]{c: c} }

// producerRun is what a producer added at run time needs of the current
// run: the context producers start with (it ends when the client stops)
// and the parent of every job's context (StopAndCancel cancels it).
type producerRun struct {
	ctx, workCtx context.Context
}

// Add adds a queue. Before Start it only changes the configuration the
// next Start uses (so a client made without queues can be given some).
// On a running client it also starts the queue's producer, which registers
// the queue and begins fetching before Add returns; the producer lives as
// long as the client's run (Stop stops and drains it with the others).
//
// Errors (nothing is changed when Add fails): an invalid name or
// MaxWorkers, or a client made without Workers or without a pool, wrap
// ErrInvalidConfig; a queue already configured wraps ErrQueueAlreadyAdded;
// a producer that cannot start (the database is unreachable, the client is
// stopping) returns its error.
func (b *QueueBundle[TTx]) Add(name string, cfg QueueConfig) error {
	c := b.c
	cfg.Fairness = cfg.Fairness.clone()
	if err := cfg.validate(name, c.config.Workers); err != nil {
		return fmt.Errorf("add queue: %w: %w", ErrInvalidConfig, err)
	}
	if c.config.Workers == nil {
		return fmt.Errorf("add queue %q: %w: the client has no Workers (set Config.Workers to work queues)", name, ErrInvalidConfig)
	}
	if !c.driver.PoolIsSet() {
		return fmt.Errorf("add queue %q: %w: a client that works queues needs a driver with a pool", name, ErrInvalidConfig)
	}
	c.queuesMu.Lock()
	defer c.queuesMu.Unlock()
	if _, dup := c.config.Queues[name]; dup {
		return fmt.Errorf("add queue %q: %w", name, ErrQueueAlreadyAdded)
	}
	if run := c.prodRun; run != nil && run.ctx.Err() == nil {
		c.mu.Lock()
		p, err := c.newProducer(c.driver.GetExecutor(), name, cfg, run.workCtx)
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("add queue %q: %w", name, err)
		}
		// Holding queuesMu while the producer starts keeps a concurrent
		// Stop from collecting the producers before this one is among
		// them.
		if err := p.Start(run.ctx); err != nil {
			return fmt.Errorf("add queue %q: %w", name, err)
		}
		c.mu.Lock()
		c.producers[name] = p
		c.mu.Unlock()
	}
	c.config.Queues[name] = cfg
	return nil
}

// Remove removes a queue. Before Start it only changes the configuration.
// On a running client it stops the queue's producer gracefully: nothing
// more is fetched, the jobs it runs finish, and Remove returns once their
// outcomes are written. The queue itself (its river_queue row, its jobs)
// stays for other clients.
//
// If ctx ends first, Remove returns ctx's error: the queue is already gone
// from the client's configuration and its producer keeps draining in the
// background. Call Remove again to wait for it, or Stop, which always
// waits for it. A queue that is neither configured nor draining gives an
// error wrapping ErrQueueNotFound. A job must not remove its own queue: the
// call would wait for the job itself until ctx ends.
func (b *QueueBundle[TTx]) Remove(ctx context.Context, name string) error {
	c := b.c
	c.queuesMu.Lock()
	var targets []*producer.Producer
	for _, p := range c.draining {
		if p.Queue() == name {
			targets = append(targets, p)
		}
	}
	_, configured := c.config.Queues[name]
	if !configured && len(targets) == 0 {
		c.queuesMu.Unlock()
		return fmt.Errorf("remove queue %q: %w", name, ErrQueueNotFound)
	}
	delete(c.config.Queues, name)
	c.mu.Lock()
	comp := c.completer
	if p := c.producers[name]; p != nil {
		delete(c.producers, name)
		c.draining = append(c.draining, p)
		targets = append(targets, p)
	}
	c.mu.Unlock()
	c.queuesMu.Unlock()

	for _, p := range targets {
		if err := startstop.StopWithin(ctx, p); err != nil {
			return fmt.Errorf("remove queue %q: %w", name, err)
		}
		c.queuesMu.Lock()
		c.draining = slices.DeleteFunc(c.draining, func(d *producer.Producer) bool { return d == p })
		c.queuesMu.Unlock()
	}
	if len(targets) > 0 && comp != nil {
		// The producer has handed its jobs' outcomes to the completer;
		// wait until they are written.
		if err := comp.Flush(ctx); err != nil {
			return fmt.Errorf("remove queue %q: %w", name, err)
		}
	}
	return nil
}

// Names returns the names of the queues the client is configured to work,
// sorted.
func (b *QueueBundle[TTx]) Names() []string {
	c := b.c
	c.queuesMu.Lock()
	defer c.queuesMu.Unlock()
	names := make([]string, 0, len(c.config.Queues))
	for name := range c.config.Queues {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// queueCount returns how many queues the client is configured to work.
func (c *Client[TTx]) queueCount() int {
	c.queuesMu.Lock()
	defer c.queuesMu.Unlock()
	return len(c.config.Queues)
}

// openProducers lets Add start producers in the run that just started.
// The caller holds queuesMu.
func (c *Client[TTx]) openProducers(runCtx context.Context) {
	c.mu.Lock()
	c.prodRun = &producerRun{ctx: runCtx, workCtx: c.workCtx}
	c.mu.Unlock()
}

// closeProducers ends the run's producer set and returns every producer to
// stop: the queues' ones and those still draining after a Remove. From
// then on Add and Remove only change the configuration.
func (c *Client[TTx]) closeProducers() []startstop.Service {
	c.queuesMu.Lock()
	defer c.queuesMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prodRun = nil
	var out []startstop.Service
	for _, p := range c.producers {
		out = append(out, p)
	}
	for _, p := range c.draining {
		out = append(out, p)
	}
	c.draining = nil
	return out
}

// newProducer makes the producer of one queue for the current run. The
// caller holds mu.
func (c *Client[TTx]) newProducer(exec driver.Executor, name string, q QueueConfig, workCtx context.Context) (*producer.Producer, error) {
	var kinds []string
	if !c.config.FetchUnknownKinds {
		// Only the kinds this client has workers for: another client
		// (millrace or River) sharing the database may work the others.
		kinds = c.config.Workers.kinds()
		slices.Sort(kinds)
	}
	return producer.New(exec, &producer.Config{
		Fetch: q.rateFetch(c.config.Schema, name, producer.NewLimitFetchOver(c.config.Schema, name, q.Limits, q.fairFetch(c.config.Schema, name))),
		Queue: name, MaxWorkers: q.MaxWorkers, FetchBuffer: q.fetchBuffer(), Schema: c.config.Schema, ClientID: c.config.ID, Kinds: kinds,
		Logger: c.config.Logger, Notifier: c.notifier, FetchCooldown: c.config.FetchCooldown,
		FetchPollInterval: c.config.FetchPollInterval, WorkCtx: ephemeralQueueContext(workCtx, q), Work: c.exec.Work,
		WorkBound: func(parent context.Context, job *millracetype.JobRow, bind *producer.Cancel) {
			c.exec.WorkBound(parent, job, bind)
		},
		OnPaused: func(paused bool) {
			kind := EventKindQueueResumed
			if paused {
				kind = EventKindQueuePaused
			}
			c.emit(&Event{Kind: kind, Queue: name})
		},
		OnMetadataChanged: func(metadata json.RawMessage) {
			c.emit(&Event{Kind: EventKindQueueMetadataChanged, Queue: name, QueueMetadata: metadata})
		},
	})
}

// validate checks a queue's name and settings.
func (q QueueConfig) validate(name string, workers *Workers) error {
	if err := validateQueueName(name); err != nil {
		return err
	}
	if q.MaxWorkers < 1 || q.MaxWorkers > MaxQueueWorkers {
		return fmt.Errorf("queue %q: MaxWorkers %d out of range 1..%d", name, q.MaxWorkers, MaxQueueWorkers)
	}
	if q.FetchBuffer < -1 || q.FetchBuffer > MaxFetchBuffer {
		return fmt.Errorf("queue %q: FetchBuffer %d out of range -1..%d (-1: no buffer, 0: the default)", name, q.FetchBuffer, MaxFetchBuffer)
	}
	kinds := map[string]bool{}
	for _, l := range q.Limits {
		if err := validateLimit(l, workers); err != nil {
			return fmt.Errorf("queue %q: %w", name, err)
		}
		if kinds[l.Kind] {
			return fmt.Errorf("queue %q: two limits of kind %q (at most one per kind, \"\" for the whole queue)", name, l.Kind)
		}
		kinds[l.Kind] = true
	}
	if err := validateRateLimits(name, q.RateLimits); err != nil {
		return err
	}
	if err := q.validateFairness(workers); err != nil {
		return fmt.Errorf("queue %q: %w", name, err)
	}
	return nil
}

// MaxFetchBuffer is the largest QueueConfig.FetchBuffer.
const MaxFetchBuffer = 10000

// DefaultFetchBuffer is the fetch buffer of a queue of maxWorkers workers
// whose QueueConfig.FetchBuffer is 0: nine times its workers, at most
// 1800. A draining queue fetches one batch at a time, when half of its
// workers and buffer are free; at this size a fetch of about 900 jobs
// returns while half is still free, so the next one goes out at once
// rather than after workers have emptied the buffer (the ephemeral
// burndown was bound by that wait: see bench/README.md).
func DefaultFetchBuffer(maxWorkers int) int {
	return max(0, min(9*maxWorkers, 1800))
}

// fetchBuffer is the producer's FetchBuffer for q.
func (q QueueConfig) fetchBuffer() int {
	switch {
	case q.FetchBuffer < 0:
		return 0
	case q.FetchBuffer == 0:
		return DefaultFetchBuffer(q.MaxWorkers)
	}
	return q.FetchBuffer
}
