package client

import (
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/millrace/millrace/internal/completer"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// EventKind is what happened.
type EventKind string

// The kinds of event.
const (
	EventKindJobCompleted EventKind = "job_completed"
	EventKindJobFailed    EventKind = "job_failed" // an error or panic; retried or discarded
	EventKindJobCancelled EventKind = "job_cancelled"
	EventKindJobSnoozed   EventKind = "job_snoozed"
	// EventKindJobInterrupted: a stopping client interrupted the job
	// (StopAndCancel, or Config.SoftStopTimeout passed) and it returned an
	// error: the job went back to available without using an attempt. Job
	// is the row as written (state available).
	EventKindJobInterrupted EventKind = "job_interrupted"
	EventKindQueuePaused    EventKind = "queue_paused"
	EventKindQueueResumed   EventKind = "queue_resumed"
)

// Event is one thing that happened in this client.
type Event struct {
	Kind EventKind
	// Job is the job's row after its outcome was written (job events); for
	// an ephemeral job, deleted on completion, the row as the completion
	// would have left it.
	Job *millracetype.JobRow
	// Stats has timings (job events).
	Stats *JobStatistics
	// Queue is the queue (queue events).
	Queue string
	// QueueMetadata is the queue's new metadata
	// (EventKindQueueMetadataChanged).
	QueueMetadata json.RawMessage
}

// JobStatistics are a job's timings: QueueWaitDuration is from when the
// job was due to when it was fetched, RunDuration how long Work took.
type JobStatistics = jobexec.JobStatistics

type subscription struct {
	kinds   []EventKind
	ch      chan *Event
	dropped atomic.Int64
}

type eventHub struct {
	mu   sync.Mutex
	subs map[*subscription]struct{}
	// n is len(subs), read without the lock on the hot path: with no
	// subscriber the completer does not read written rows back.
	n atomic.Int64
}

// hasSubscribers reports whether anyone subscribes to events.
func (h *eventHub) hasSubscribers() bool { return h.n.Load() > 0 }

// Subscribe returns a channel of this client's events of the given kinds
// (all kinds when none are given) and a function that ends the
// subscription and closes the channel.
//
// The channel is buffered (Config.SubscribeBufferSize, default 1000). A
// subscriber that falls behind never slows workers: when its buffer is
// full, new events for it are dropped (and counted in a warning log line);
// other subscribers are not affected.
func (c *Client[TTx]) Subscribe(kinds ...EventKind) (<-chan *Event, func()) {
	sub := &subscription{kinds: slices.Clone(kinds), ch: make(chan *Event, c.config.SubscribeBufferSize)}
	c.events.mu.Lock()
	if c.events.subs == nil {
		c.events.subs = map[*subscription]struct{}{}
	}
	c.events.subs[sub] = struct{}{}
	c.events.n.Store(int64(len(c.events.subs)))
	c.events.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			c.events.mu.Lock()
			delete(c.events.subs, sub)
			c.events.n.Store(int64(len(c.events.subs)))
			c.events.mu.Unlock()
			close(sub.ch)
		})
	}
}

func (c *Client[TTx]) emit(ev *Event) {
	c.events.mu.Lock()
	defer c.events.mu.Unlock()
	for sub := range c.events.subs {
		if len(sub.kinds) > 0 && !slices.Contains(sub.kinds, ev.Kind) {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			if n := sub.dropped.Add(1); n == 1 || n%1000 == 0 {
				c.config.Logger.Warn("millrace: a subscriber is not keeping up; dropping its events", "dropped", n)
			}
		}
	}
}

// onWritten turns written outcomes into events.
func (c *Client[TTx]) onWritten(results []completer.Result) {
	c.events.mu.Lock()
	empty := len(c.events.subs) == 0
	c.events.mu.Unlock()
	if empty {
		return
	}
	for _, r := range results {
		meta, _ := r.Meta.(*jobexec.Done)
		if meta == nil {
			continue
		}
		job, kind := r.Job, eventKind(meta.Kind)
		if job == nil && meta.CompletedInTx != nil {
			// The worker's own transaction completed the job and committed:
			// the outcome changed nothing.
			job, kind = meta.CompletedInTx, EventKindJobCompleted
		}
		if kind == "" || job == nil {
			continue
		}
		if job.State == millracetype.JobStateCancelled {
			kind = EventKindJobCancelled // the cancel override applied
		}
		c.emit(&Event{Kind: kind, Job: job, Stats: &meta.Stats})
	}
}
