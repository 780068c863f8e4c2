// Package maintenance holds the services only the leader runs, for every
// client sharing the database (River's included):
//
//   - Scheduler: makes due scheduled and retryable jobs available.
//   - Rescuer: moves jobs stuck in running (their client died) on.
//   - Cleaner: deletes finalized jobs past their retention.
//   - QueueCleaner: deletes queues nobody has reported for a long time.
//   - PendingListCleaner: merges the job table's GIN pending lists before
//     a fetch, insert or completion grows one past gin_pending_list_limit
//     and merges it itself (drivers that implement
//     driver.PendingListCleaner).
//
// The PeriodicJobEnqueuer belongs to one service: a client wires it to the
// leadership of its domain (client.Config.Domain), or to the database's
// leadership in the default domain; the Maintainer does not care which
// LeaderSource it follows.
//
// Each is a startstop service that runs one pass at start and then at its
// interval (the reindexer and the PeriodicJobEnqueuer at the times of their
// schedules); a Maintainer starts them all when its client becomes leader
// and stops them when it stops being leader. They share one small base
// (lifecycle, name, schema, logger, clock). Every constructor validates its
// config: a zero value means the documented default, a bad value is an
// error wrapping ErrInvalidConfig, never replaced by a default.
//
// The package depends on driver and millracetype only: what it needs from
// the client (worker timeouts, the retry policy) comes in through function
// fields of the configs.
package maintenance
