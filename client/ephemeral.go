package client

import (
	"context"
	"fmt"
)

// Ephemeral jobs (JobArgsWithEphemeral, QueueConfig.Ephemeral): a job that
// completes successfully is deleted instead of being kept as a completed
// row. The decision costs nothing per job: the kind's setting is read once
// at registration, the queue's is carried by the queue's work context.

// JobArgsWithEphemeral is implemented by args types whose jobs are
// ephemeral: a job that completes successfully is deleted instead of being
// kept as a completed row until the cleaner removes it. A DELETE costs
// Postgres a fraction of the completing UPDATE (no index written again,
// far less WAL), which pays off for many small jobs whose completed rows
// nobody reads. QueueConfig.Ephemeral does the same for every job a queue
// runs; a job is ephemeral when its kind or its queue says so.
//
// What is deleted, and what is kept:
//
//   - Only a successful completion deletes. An error (retried or
//     discarded), a snooze, a cancel and a StopAndCancel interruption keep
//     the row as for any job, so failures stay inspectable.
//   - The delete is written by the client's batched completer, in the same
//     statement as other outcomes, and only while the row still runs the
//     attempt that completed: a job rescued or cancelled meanwhile is kept
//     and treated as any late outcome.
//   - Events, metrics and hooks see a normal completion: the
//     EventKindJobCompleted event carries the row as the completion would
//     have left it (state completed, finalized_at set, metadata updates
//     merged), though it is no longer stored.
//   - The attempt's metadata updates (RecordOutput, MetadataSet) are
//     dropped with the row; only the event shows them.
//   - JobCompleteTx deletes the row in the worker's transaction and returns
//     the job as completed: the row is gone if the transaction commits; if
//     it rolls back, the job goes on as usual.
//   - A unique job's key is freed as soon as its row is deleted: the same
//     job can be inserted again at once, where a completed row (with the
//     default UniqueOpts.ByState) would make that insert a duplicate until
//     the cleaner removed it.
//   - A job cancelled from outside (JobCancel) whose worker completes it
//     anyway is completed, as for any job, and so deleted.
//
// Ephemeral is called once, when the worker is registered (AddWorker and
// its variants), on the value that gives the kind: the args type's zero
// value for AddWorker, the args given to AddWorkerArgs. The result is kept
// for the kind, so it must not depend on a job's args. A panic in it is a
// registration error, reported by New like any other.
//
// The setting is the working client's, and it travels with the args type's
// code: a client that only inserts the job needs nothing, and a River
// client working the kind (River has no ephemeral jobs) keeps the rows.
type JobArgsWithEphemeral interface {
	JobArgs
	// Ephemeral reports whether jobs of this kind are deleted once
	// completed.
	Ephemeral() bool
}

// argsEphemeral reads an args type's Ephemeral setting (false when it has
// none), turning a panic into an error.
func argsEphemeral(args JobArgs) (ephemeral bool, err error) {
	withEphemeral, ok := args.(JobArgsWithEphemeral)
	if !ok {
		return false, nil
	}
	defer func() {
		if r := recover(); r != nil {
			ephemeral, err = false, fmt.Errorf("args %T: Ephemeral() panicked: %v (args types should have value receivers)", args, r)
		}
	}()
	return withEphemeral.Ephemeral(), nil
}

// ephemeralQueueKey marks the work context of an ephemeral queue's
// producer (QueueConfig.Ephemeral): every job the producer starts inherits
// it, so telling whether a job's queue is ephemeral costs no lookup of the
// configuration and no allocation per job.
type ephemeralQueueKey struct{}

// ephemeralQueueContext returns the work context for a queue's producer.
func ephemeralQueueContext(workCtx context.Context, q QueueConfig) context.Context {
	if !q.Ephemeral {
		return workCtx
	}
	return context.WithValue(workCtx, ephemeralQueueKey{}, true)
}

// jobIsEphemeral reports whether a job that completes should be deleted:
// its kind says so (info may be nil) or ctx, the job's context, is one of
// an ephemeral queue's jobs.
func jobIsEphemeral(ctx context.Context, info *workerInfo) bool {
	if info != nil && info.ephemeral {
		return true
	}
	eph, _ := ctx.Value(ephemeralQueueKey{}).(bool)
	return eph
}
