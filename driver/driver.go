// Package driver defines the only door through which millrace talks to a
// database: a Driver hands out Executors (on its pool or inside a caller's
// transaction) and Listeners (LISTEN/NOTIFY on one dedicated connection).
//
// Every query the runtime needs is a method here, designed for batches:
// insert many rows in one statement or one COPY, fetch N jobs with SKIP
// LOCKED, and move many jobs in one statement. Every method takes the schema
// to work in; an empty schema means unqualified names (the connection's
// search_path).
//
// Implementations live in sub-packages (driver/pgxv5 on a pgx pool,
// driver/databasesql on a *sql.DB of pgx's stdlib, both running the
// statements of driver/internal/pgexec, and driver/sqlite, a module of its
// own, on SQLite); the riverdrivertest package is the conformance suite
// each of them must pass. A driver whose database lacks something Postgres
// has says so: SupportsListener (LISTEN/NOTIFY), SingleWriter (row
// locks), MigrationProvider (its own SQL for the migration lines). One
// optional interface saves round trips where a driver can: an ExecutorTx
// that is a LimitLockReader takes a limited fetch's lock and makes its
// reads in one.
package driver

import (
	"context"
	"errors"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// Notification topics, exactly as River names them. On the wire the channel
// is "<schema>.<topic>".
const (
	// TopicInsert wakes producers when jobs are inserted available.
	TopicInsert = "river_insert"
	// TopicControl carries cancel, pause, resume and metadata_changed actions.
	TopicControl = "river_control"
	// TopicLeadership carries leader resignations and resign requests.
	TopicLeadership = "river_leadership"
	// TopicDomainLeadership carries the resignations and resign requests of
	// domain leaders (table millrace_leader): millrace's own topic, which
	// River never listens to. Payloads name the domain:
	// {"domain":"a","leader_id":"...","action":"resigned"}. It is no longer
	// than TopicLeadership, so its channel fits Postgres' 63 bytes for
	// every schema name schemaname accepts.
	TopicDomainLeadership = "millrace_leader"
)

// ErrClosed is returned by a Listener used after Close or before Connect.
var ErrClosed = errors.New("listener is not connected")

// Driver is a database driver. TTx is the driver's native transaction type
// (pgx.Tx for pgxv5, *sql.Tx for databasesql), so users can insert jobs
// inside their own transactions.
type Driver[TTx any] interface {
	// GetExecutor returns an Executor that runs each call on the pool.
	GetExecutor() Executor
	// UnwrapExecutor returns an Executor that runs every call inside tx. The
	// caller keeps ownership of tx: Commit and Rollback on the result are
	// savepoint-free no-ops that must not be used to end tx.
	UnwrapExecutor(tx TTx) ExecutorTx
	// UnwrapTx returns the native transaction behind an ExecutorTx made by
	// this driver's Begin or UnwrapExecutor.
	UnwrapTx(tx ExecutorTx) (TTx, error)
	// GetListener returns a new, unconnected Listener on a dedicated
	// connection, for the given schema (see Listener). It returns an error if
	// the driver cannot listen (SupportsListener is false).
	GetListener(schema string) (Listener, error)
	// SupportsListener reports whether GetListener can work: false for a
	// driver without LISTEN/NOTIFY, in which case clients poll.
	SupportsListener() bool
	// PoolIsSet reports whether the driver has a pool (a driver made for
	// transactions only cannot run a client that works jobs).
	PoolIsSet() bool
}

// Executor runs queries, on the pool or inside a transaction.
type Executor interface {
	// Begin starts a transaction (a savepoint when already inside one).
	Begin(ctx context.Context) (ExecutorTx, error)
	// Exec runs raw SQL with arguments, discarding results.
	Exec(ctx context.Context, sql string, args ...any) error

	// PGAdvisoryXactLock takes a transaction-level advisory lock.
	PGAdvisoryXactLock(ctx context.Context, key int64) error
	// TableExists reports whether a table exists in the schema.
	TableExists(ctx context.Context, params *TableExistsParams) (bool, error)
	// ColumnExists reports whether a column exists on a table in the schema.
	ColumnExists(ctx context.Context, params *ColumnExistsParams) (bool, error)
	// SchemaExists reports whether a schema exists.
	SchemaExists(ctx context.Context, schema string) (bool, error)
	// IndexExists reports whether an index exists in the schema.
	IndexExists(ctx context.Context, params *IndexParams) (bool, error)
	// IndexReindex rebuilds an index without blocking writes (REINDEX
	// INDEX CONCURRENTLY); it cannot run inside a transaction.
	IndexReindex(ctx context.Context, params *IndexParams) error

	// MigrationGetAll lists the applied versions of a migration line,
	// ascending. It reads both shapes of river_migration (before River's
	// version 5 the table had no line column; its rows are line "main") and
	// returns nothing when the table does not exist.
	MigrationGetAll(ctx context.Context, params *MigrationParams) ([]*Migration, error)
	// MigrationInsertMany records versions as applied.
	MigrationInsertMany(ctx context.Context, params *MigrationInsertManyParams) ([]*Migration, error)
	// MigrationDeleteMany removes the record of versions (migrating down).
	MigrationDeleteMany(ctx context.Context, params *MigrationInsertManyParams) error

	// JobInsertMany inserts jobs in one statement and returns one result per
	// input, in input order. A job whose unique key collides with a live job
	// (or with an earlier job of the same batch) inserts nothing and returns
	// the existing row flagged as a duplicate, or, for a job with
	// ReplaceArgs or ReplaceScheduledAt and an existing row that has not
	// started, updates that row and returns it flagged as replaced; within
	// a batch, a later job of a key replaces the earlier one's values the
	// same way. One statement either way. An insert notification is sent,
	// in the same statement, for each queue listed in NotifyQueues.
	JobInsertMany(ctx context.Context, params *JobInsertManyParams) ([]*JobInsertResult, error)
	// JobInsertCopy inserts jobs with COPY and returns how many it inserted.
	// A unique-key conflict fails the whole call; jobs with ReplaceArgs or
	// ReplaceScheduledAt are refused. Notifications as for JobInsertMany.
	JobInsertCopy(ctx context.Context, params *JobInsertManyParams) (int, error)
	// JobInsertFull inserts one job with every column given, for tests and
	// tools (attempt, errors, finalized_at ...).
	JobInsertFull(ctx context.Context, params *JobInsertFullParams) (*millracetype.JobRow, error)

	// JobGetAvailable locks up to Max available jobs of a queue that are due
	// (scheduled_at <= now() of the database), in order priority,
	// scheduled_at, id, skipping rows locked by others, and marks them
	// running: attempt + 1, attempted_at = now(), the client appended to
	// attempted_by (keeping the last 100). Rows come back in fetch order.
	JobGetAvailable(ctx context.Context, params *JobGetAvailableParams) ([]*millracetype.JobRow, error)
	// JobReturnUnstarted undoes the fetch of jobs that never started (a
	// producer's buffered jobs, returned at stop, pause or when they waited
	// too long): each job still running the attempt given for it under
	// ClientID (the last entry of attempted_by) goes back to available with
	// attempt - 1 and that entry removed from attempted_by (attempted_at
	// NULL when no attempt is left; scheduled_at unchanged, so it keeps its
	// place in the queue), or to cancelled (finalized now) when a cancel was
	// attempted meanwhile (metadata cancel_attempted_at). Other jobs are left
	// alone. It returns the rows it changed and, when some became
	// available, sends an insert notification for NotifyQueue in the same
	// statement.
	JobReturnUnstarted(ctx context.Context, params *JobReturnUnstartedParams) ([]*millracetype.JobRow, error)
	// JobSetStateIfRunningMany records the outcomes of many jobs in one
	// statement; see JobSetState for the rules. It returns the rows it
	// changed, and those it deleted (JobSetState.Delete) as completed.
	JobSetStateIfRunningMany(ctx context.Context, params *JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error)
	// JobGetByID returns one job, or an error wrapping
	// millracetype.ErrNotFound.
	JobGetByID(ctx context.Context, params *JobGetByIDParams) (*millracetype.JobRow, error)
	// JobGetByIDMany returns the jobs that exist among IDs, ordered by id.
	JobGetByIDMany(ctx context.Context, params *JobGetByIDManyParams) ([]*millracetype.JobRow, error)
	// JobList lists jobs matching filters, ordered, with keyset pagination.
	JobList(ctx context.Context, params *JobListParams) ([]*millracetype.JobRow, error)
	// JobCancel cancels a job from outside: see JobCancelParams.
	JobCancel(ctx context.Context, params *JobCancelParams) (*millracetype.JobRow, error)
	// JobRetry makes a job available again now: see JobRetryParams.
	JobRetry(ctx context.Context, params *JobRetryParams) (*millracetype.JobRow, error)
	// JobDelete deletes a job that is not running and returns it; a running
	// job gives an error wrapping millracetype.ErrJobRunning, a missing one
	// millracetype.ErrNotFound.
	JobDelete(ctx context.Context, params *JobDeleteParams) (*millracetype.JobRow, error)
	// JobSchedule makes due retryable and scheduled jobs available (the
	// scheduler's query): see JobScheduleParams.
	JobSchedule(ctx context.Context, params *JobScheduleParams) ([]*JobScheduleResult, error)
	// JobGetStuck lists running jobs attempted before StuckHorizon, by id,
	// after AfterID: see JobGetStuckParams.
	JobGetStuck(ctx context.Context, params *JobGetStuckParams) ([]*millracetype.JobRow, error)
	// JobRescueMany moves stuck jobs on (the rescuer's query): see
	// JobRescueManyParams.
	JobRescueMany(ctx context.Context, params *JobRescueManyParams) (int, error)
	// JobGetRunningBy lists running jobs whose current attempt belongs to
	// given clients, by id: see JobGetRunningByParams.
	JobGetRunningBy(ctx context.Context, params *JobGetRunningByParams) ([]*millracetype.JobRow, error)

	// Client liveness (the millrace line's millrace_client table; see
	// client_liveness.go).

	// ClientRegister inserts or replaces a client's row and returns its
	// lease.
	ClientRegister(ctx context.Context, params *ClientRegisterParams) (*ClientRegisterResult, error)
	// ClientHeartbeat refreshes a lease that is still alive and tells
	// whether any row is dead, in one statement.
	ClientHeartbeat(ctx context.Context, params *ClientHeartbeatParams) (*ClientHeartbeatResult, error)
	// ClientLockDead locks dead rows (FOR UPDATE SKIP LOCKED: rows another
	// transaction works on are skipped) and returns them, oldest
	// heartbeat first. Call it in a transaction.
	ClientLockDead(ctx context.Context, params *ClientLockDeadParams) ([]*DeadClient, error)
	// ClientDelete deletes one incarnation's row and reports whether it
	// existed.
	ClientDelete(ctx context.Context, params *ClientDeleteParams) (bool, error)
	// ClientLiveSince returns the earliest started_at among the live rows
	// of a domain, by the database's clock: a client of the domain has
	// been running without a break since then. ok is false when the
	// domain has no live row.
	ClientLiveSince(ctx context.Context, params *ClientLiveSinceParams) (since time.Time, ok bool, err error)

	// JobDeleteBefore deletes finalized jobs past their retention (the
	// cleaner's query) and returns how many it deleted.
	JobDeleteBefore(ctx context.Context, params *JobDeleteBeforeParams) (int, error)

	// LeaderAttemptElect tries to become leader: in one transaction it
	// deletes an expired leader row, then inserts its own unless a row
	// remains. It returns the new term when elected, else nil. The leader
	// methods work on river_leader (the database's leader) when the
	// params' Domain is empty, and on the domain's row of millrace_leader
	// (migration line millrace) otherwise.
	LeaderAttemptElect(ctx context.Context, params *LeaderElectParams) (*millracetype.Leader, error)
	// LeaderAttemptReelect extends the current term if it is still ours and
	// not expired; nil means leadership was lost.
	LeaderAttemptReelect(ctx context.Context, params *LeaderReelectParams) (*millracetype.Leader, error)
	// LeaderResign deletes our term's row and, in the same statement,
	// notifies a "resigned" leadership action (on TopicLeadership, or on
	// TopicDomainLeadership with the domain for a domain's term). It
	// reports whether a row was deleted.
	LeaderResign(ctx context.Context, params *LeaderResignParams) (bool, error)
	// LeaderGetElected returns the current leader, or an error wrapping
	// millracetype.ErrNotFound when there is none (expired rows count as
	// none).
	LeaderGetElected(ctx context.Context, schema string) (*millracetype.Leader, error)
	// LeaderListDomains returns the live terms of millrace_leader (one per
	// domain that has a leader), by domain. It fails if the table does not
	// exist (migration line millrace below version 2).
	LeaderListDomains(ctx context.Context, schema string) ([]*millracetype.Leader, error)

	// QueueCreateOrSetUpdatedAt upserts a queue row: inserted with the given
	// metadata and paused state, or its updated_at refreshed.
	QueueCreateOrSetUpdatedAt(ctx context.Context, params *QueueCreateParams) (*millracetype.Queue, error)
	// QueueGet returns a queue or an error wrapping millracetype.ErrNotFound.
	QueueGet(ctx context.Context, params *QueueGetParams) (*millracetype.Queue, error)
	// QueueList lists queues by name.
	QueueList(ctx context.Context, params *QueueListParams) ([]*millracetype.Queue, error)
	// QueuePause pauses a queue ("*" for all) and sends the pause control
	// notification in the same statement. An unknown queue gives an error
	// wrapping millracetype.ErrNotFound.
	QueuePause(ctx context.Context, params *QueuePauseParams) error
	// QueueResume is QueuePause's inverse.
	QueueResume(ctx context.Context, params *QueuePauseParams) error
	// QueueDeleteExpired deletes queues not updated since the horizon and
	// returns their names.
	QueueDeleteExpired(ctx context.Context, params *QueueDeleteExpiredParams) ([]string, error)

	// NotifyMany sends payloads on a topic of the schema with pg_notify.
	NotifyMany(ctx context.Context, params *NotifyManyParams) error

	// JobDeleteMany deletes one batch of jobs (see JobDeleteManyParams)
	// in one statement and returns them as they were, in the list order.
	// When IDs is not empty and some of them name no job, it changes
	// nothing and returns an error wrapping millracetype.ErrNotFound that
	// names them. Running jobs are never deleted.
	JobDeleteMany(ctx context.Context, params *JobDeleteManyParams) ([]*millracetype.JobRow, error)
	// JobCancelMany cancels one batch of jobs (see JobCancelManyParams) in
	// one statement and returns the changed rows in the list order. Unknown
	// IDs as for JobDeleteMany.
	JobCancelMany(ctx context.Context, params *JobCancelManyParams) ([]*millracetype.JobRow, error)
	// JobRetryMany retries one batch of jobs (see JobRetryManyParams) in
	// one statement and returns the changed rows in the list order. Unknown
	// IDs as for JobDeleteMany.
	JobRetryMany(ctx context.Context, params *JobRetryManyParams) ([]*millracetype.JobRow, error)

	// JobUpdate changes one job from outside its run (or from its worker,
	// in the worker's transaction): see JobUpdateParams.
	JobUpdate(ctx context.Context, params *JobUpdateParams) (*millracetype.JobRow, error)
	// JobMarkRunning marks one job running as a fetch would (attempt + 1,
	// attempted_at = now(), the client appended to attempted_by), whatever
	// its state but running (a finalized job loses its finalized_at), for
	// a test harness that works a chosen job: see JobMarkRunningParams.
	JobMarkRunning(ctx context.Context, params *JobMarkRunningParams) (*millracetype.JobRow, error)

	// Durable periodic jobs (table millrace_periodic of migration line
	// millrace; see periodic.go for the params).

	// PeriodicJobGetMany returns the rows of the given IDs that exist,
	// ordered by ID, with the database's now().
	PeriodicJobGetMany(ctx context.Context, params *PeriodicJobGetManyParams) (*PeriodicJobGetManyResult, error)
	// PeriodicJobInsertMany inserts the rows whose ID has none yet, leaves
	// existing rows as they are, and returns how many it inserted.
	PeriodicJobInsertMany(ctx context.Context, params *PeriodicJobInsertManyParams) (int, error)
	// PeriodicJobAdvanceMany sets next_run_at, next_from (and last_run_at
	// when given) of each row whose next_run_at still equals Expected,
	// updated_at to now(), in one statement that locks the rows in ID
	// order; it returns the IDs it changed, ordered. A row changed by a
	// concurrent transaction is compared again once that one commits.
	PeriodicJobAdvanceMany(ctx context.Context, params *PeriodicJobAdvanceManyParams) ([]string, error)
	// PeriodicJobDeleteMany deletes the rows PeriodicJobDeleteManyParams
	// names and returns their IDs, ordered.
	PeriodicJobDeleteMany(ctx context.Context, params *PeriodicJobDeleteManyParams) ([]string, error)

	// Concurrency limits (table millrace_limit of migration line
	// millrace, and the reads of a limited fetch; see limit.go).

	// LimitGetMany returns limit rows ordered by queue and kind.
	LimitGetMany(ctx context.Context, params *LimitGetManyParams) ([]*LimitRow, error)
	// LimitSet inserts or replaces the row of a queue and kind and, in the
	// same statement, sends the control notification
	// {"action":"limits_changed","queue":<queue>}, and deletes the
	// queue's row of millrace_limit_bound (fetches under other limits
	// may not have kept it). It returns the row.
	LimitSet(ctx context.Context, params *LimitSetParams) (*LimitRow, error)
	// LimitDelete deletes the row of a queue and kind, sending the same
	// notification when there was one, and the queue's bound row as
	// LimitSet does; it reports whether there was a limit row.
	LimitDelete(ctx context.Context, params *LimitDeleteParams) (bool, error)
	// LimitBoundGet returns a queue's running-jobs bound (table
	// millrace_limit_bound); ok is false when it has none.
	LimitBoundGet(ctx context.Context, params *LimitBoundParams) (bound int, ok bool, err error)
	// LimitBoundSet stores a queue's running-jobs bound.
	LimitBoundSet(ctx context.Context, params *LimitBoundParams) error
	// JobLimitScan counts a queue's running jobs by kind and args values
	// and reads its first available jobs, in one statement: see
	// JobLimitScanParams. It locks nothing; a limited fetch calls it in a
	// transaction after taking the queue's advisory lock.
	JobLimitScan(ctx context.Context, params *JobLimitScanParams) (*JobLimitScanResult, error)
	// JobGetAvailableByID is JobGetAvailable for chosen jobs: those of IDs
	// still available and due, not locked by others, are marked running as
	// a fetch marks them and returned in fetch order.
	JobGetAvailableByID(ctx context.Context, params *JobGetAvailableByIDParams) ([]*millracetype.JobRow, error)

	// Rate limits and timed pauses (tables millrace_rate and
	// millrace_pause of migration line millrace; see rate.go).

	// RateStateRead returns the database's clock and, at it, the queue's
	// current window counts and pauses. A rate-limited fetch calls it in a
	// transaction after taking the queue's advisory lock.
	RateStateRead(ctx context.Context, params *RateStateParams) (*RateState, error)
	// RateCountAdd adds to window counts and deletes the queue's rows of
	// ended windows.
	RateCountAdd(ctx context.Context, params *RateCountAddParams) error
	// JobRateScan reads candidates for a rate-limited fetch, in rounds
	// over the groups of equal kind and part: the first of every group in
	// fetch order (priority, scheduled_at, id), then the second of every
	// group, and so on. It locks nothing.
	JobRateScan(ctx context.Context, params *JobRateScanParams) ([]*JobRateCandidate, error)
	// PauseSet inserts or replaces a timed pause and returns it as stored.
	PauseSet(ctx context.Context, params *PauseSetParams) (*millracetype.Pause, error)
	// PauseGetMany lists pauses ordered by queue, kind, args.
	PauseGetMany(ctx context.Context, params *PauseGetManyParams) ([]*millracetype.Pause, error)
	// PauseDelete deletes a pause and reports whether there was one.
	PauseDelete(ctx context.Context, params *PauseDeleteParams) (bool, error)

	// Sequences (tables millrace_sequence and millrace_sequence_job of
	// migration line millrace; see sequence.go).

	// SequenceAppend gives the jobs (just inserted pending, in the same
	// transaction when the executor is one) the next positions of their
	// sequences, in the order given, then promotes those sequences as
	// SequencePromote does; all in one transaction (a savepoint in the
	// executor's own). It locks the sequences' rows, in key order, until
	// that transaction ends: inserts into one sequence are serialized, so
	// positions follow the order in which the inserts commit.
	SequenceAppend(ctx context.Context, params *SequenceAppendParams) (*SequencePromoteResult, error)
	// SequencePromote moves on the selected sequences whose head is
	// finalized (completed; discarded or cancelled without "block" in its
	// sequence metadata) or gone: the pending job of the lowest position
	// after the head becomes the head, available (scheduled when its
	// scheduled_at is more than 5 s ahead: as a client inserts a job, the
	// fetch waiting for a time closer than that), with an insert
	// notification for its
	// queue; a sequence with no pending job left is deleted. It locks the
	// sequences' rows, then reads and writes in a second statement, so it
	// sees what the transactions that held them committed.
	SequencePromote(ctx context.Context, params *SequencePromoteParams) (*SequencePromoteResult, error)
	// SequenceGetMany lists sequences by queue and key.
	SequenceGetMany(ctx context.Context, params *SequenceGetManyParams) ([]*SequenceRow, error)

	// Fairness within a queue (table millrace_fair_partition of
	// migration line millrace; see fair.go).

	// FairPartitionList reads a fair queue's partitions in order, from
	// a cursor: see FairPartitionListParams.
	FairPartitionList(ctx context.Context, params *FairPartitionListParams) ([]*FairPartition, error)
	// FairPartitionDiscover registers (inserts when missing) the
	// partitions of the queue's newest available jobs and of chosen jobs,
	// and returns the rows it added, those of the newest jobs first.
	FairPartitionDiscover(ctx context.Context, params *FairPartitionDiscoverParams) ([]*FairPartition, error)
	// JobFairLock locks (FOR UPDATE SKIP LOCKED) available due jobs of a
	// queue, each share's first jobs in fetch order, then jobs in plain
	// fetch order up to Max, and returns them without changing them
	// (JobGetAvailableByID then marks them running). Each share's read is
	// planned with its values (plan_cache_mode force_custom_plan, set
	// locally), so that a small partition is read through River's GIN
	// index on args and a large one in queue order. It must be called in
	// a transaction: the locks last until its end.
	JobFairLock(ctx context.Context, params *JobFairLockParams) ([]*FairLocked, error)
	// FairPartitionUpdate records a fair fetch's findings and deletes the
	// partitions empty for longer than the grace period: see
	// FairPartitionUpdateParams. It returns how many rows it deleted.
	FairPartitionUpdate(ctx context.Context, params *FairPartitionUpdateParams) (int, error)

	// Runtime queue management (see queue_admin.go for the params).

	// QueueUpdate changes a queue's settings: its metadata when
	// MetadataDoUpdate is set (then, in the same statement, a
	// metadata_changed control notification), and always updated_at. A
	// missing queue gives an error wrapping millracetype.ErrNotFound and
	// changes nothing.
	QueueUpdate(ctx context.Context, params *QueueUpdateParams) (*millracetype.Queue, error)
	// QueueGetWithCounts is QueueGet plus the counts of the queue's jobs in
	// every state that is not final, read in one statement.
	QueueGetWithCounts(ctx context.Context, params *QueueGetParams) (*millracetype.QueueWithCounts, error)
	// QueueListWithCounts is QueueList plus each queue's counts, in one
	// statement.
	QueueListWithCounts(ctx context.Context, params *QueueListParams) ([]*millracetype.QueueWithCounts, error)
}

// ExecutorTx is an Executor inside a transaction.
type ExecutorTx interface {
	Executor
	// Commit commits the transaction (releases the savepoint).
	Commit(ctx context.Context) error
	// Rollback rolls it back; after Commit it is a no-op.
	Rollback(ctx context.Context) error
}

// Listener receives notifications on one dedicated connection. Topics are
// given and returned without the schema prefix: the Listener adds
// "<schema>." when listening (the schema it was made for, or the
// connection's current_schema() when none was given) and strips it from
// what it receives.
type Listener interface {
	// Connect opens the dedicated connection.
	Connect(ctx context.Context) error
	// Close closes it; Close on a closed Listener is a no-op.
	Close(ctx context.Context) error
	// Listen subscribes to a topic.
	Listen(ctx context.Context, topic string) error
	// Unlisten unsubscribes from a topic.
	Unlisten(ctx context.Context, topic string) error
	// Ping checks the connection.
	Ping(ctx context.Context) error
	// WaitForNotification blocks until a notification arrives, the context
	// ends, or the connection fails.
	WaitForNotification(ctx context.Context) (*Notification, error)
}

// Notification is one received notification.
type Notification struct {
	// Topic is the topic without the schema prefix.
	Topic string
	// Payload is the notification's payload (JSON for River's topics).
	Payload string
}

// TableExistsParams names a table.
type TableExistsParams struct {
	Schema string
	Table  string
}

// ColumnExistsParams names a column.
type ColumnExistsParams struct {
	Schema string
	Table  string
	Column string
}

// IndexParams names an index.
type IndexParams struct {
	Schema string
	Index  string
}

// Migration is one applied migration version.
type Migration struct {
	// Line is the migration line ("main").
	Line string
	// Version is the version number.
	Version int
	// CreatedAt is when it was applied.
	CreatedAt time.Time
}

// MigrationParams selects a migration line.
type MigrationParams struct {
	Schema string
	Line   string
}

// MigrationInsertManyParams records or removes versions of a line.
type MigrationInsertManyParams struct {
	Schema   string
	Line     string
	Versions []int
}

// JobInsertParams is one job to insert.
type JobInsertParams struct {
	// Args is the encoded args (a JSON object).
	Args []byte
	// CreatedAt defaults to the database's now() when nil.
	CreatedAt *time.Time
	// Kind is the job kind.
	Kind string
	// MaxAttempts must be at least 1.
	MaxAttempts int
	// Metadata is a JSON object; nil means {}.
	Metadata []byte
	// Priority is 1..4.
	Priority int
	// Queue is the queue name.
	Queue string
	// ScheduledAt defaults to the database's now() when nil.
	ScheduledAt *time.Time
	// State is available, scheduled or pending.
	State millracetype.JobState
	// Tags; nil means none.
	Tags []string
	// UniqueKey is nil for a non-unique job.
	UniqueKey []byte
	// UniqueStates is the unique_states mask (0 = NULL).
	UniqueStates byte
	// ReplaceArgs and ReplaceScheduledAt, for a unique job only, change
	// what a conflict does when the existing job has not started (state
	// available, pending, retryable or scheduled): instead of leaving it
	// as it is, it takes this job's Args, and its ScheduledAt and State
	// (a pending job stays pending). A duplicate in another state is left
	// alone, as without them. JobInsertCopy refuses them.
	ReplaceArgs        bool
	ReplaceScheduledAt bool
}

// JobInsertManyParams is a batch of jobs to insert.
type JobInsertManyParams struct {
	Schema string
	Jobs   []*JobInsertParams
	// NotifyQueues lists queues to send an insert notification for, in the
	// same statement (the caller decides, e.g. to debounce).
	NotifyQueues []string
}

// JobInsertResult is the outcome of inserting one job.
type JobInsertResult struct {
	// Job is the inserted row, or the existing row for a duplicate.
	Job *millracetype.JobRow
	// UniqueSkippedAsDuplicate is true when nothing was inserted because a
	// live job with the same unique key exists, and that job was left as
	// it was.
	UniqueSkippedAsDuplicate bool
	// UniqueReplaced is true when nothing was inserted because a job with
	// the same unique key exists that had not started, and it took this
	// job's values as ReplaceArgs and ReplaceScheduledAt asked (Job is it,
	// updated). UniqueSkippedAsDuplicate is then false.
	UniqueReplaced bool
}

// JobInsertFullParams is a job with every column under the caller's control.
// Zero values take the column defaults where the schema has one.
type JobInsertFullParams struct {
	Schema       string
	Args         []byte
	Attempt      int
	AttemptedAt  *time.Time
	AttemptedBy  []string
	CreatedAt    *time.Time
	Errors       []millracetype.AttemptError
	FinalizedAt  *time.Time
	Kind         string
	MaxAttempts  int
	Metadata     []byte
	Priority     int
	Queue        string
	ScheduledAt  *time.Time
	State        millracetype.JobState
	Tags         []string
	UniqueKey    []byte
	UniqueStates byte
}

// JobGetAvailableParams selects jobs to fetch.
type JobGetAvailableParams struct {
	Schema string
	// Queue to fetch from.
	Queue string
	// Max is the most rows to lock (the producer's free slots).
	Max int
	// ClientID is appended to attempted_by.
	ClientID string
	// Now replaces the database's now() as the due horizon and
	// attempted_at when set (tests with a shifted clock).
	Now *time.Time
	// Kinds, when not empty, limits the fetch to jobs of these kinds (the
	// kinds the client has workers for), leaving the others for clients
	// that have workers for them.
	Kinds []string
	// After, when set, fetches only jobs ordered after it (by priority,
	// scheduled_at, id: the fetch order): a producer draining a deep queue
	// continues after the last job it took instead of walking again, from
	// the front of the index range, the entries of every job already
	// taken (dead until a vacuum removes them).
	After *JobFetchKey
}

// JobReturnUnstartedParams names fetched jobs that never started.
type JobReturnUnstartedParams struct {
	Schema string
	// ClientID is the client that fetched them (the last of attempted_by).
	ClientID string
	// IDs and Attempts are the jobs and the attempts their fetch gave
	// them, pairwise (the same length).
	IDs      []int64
	Attempts []int
	// NotifyQueue, when set, is the queue an insert notification is sent
	// for when any job became available.
	NotifyQueue string
}

// JobFetchKey is a job's place in the fetch order.
type JobFetchKey struct {
	Priority    int
	ScheduledAt time.Time
	ID          int64
}

// JobSetState is the outcome of one job. Only a row still running is moved
// (and, when Attempt is set, running that attempt); for any other row only
// MetadataUpdates are merged (a late completion after a rescue or a cancel
// changes nothing else).
//
// If the row's metadata has cancel_attempted_at and State is available,
// retryable or scheduled (a retryable error, a snooze or a soft stop), the
// job becomes cancelled instead, with finalized_at = now() and attempt and
// scheduled_at unchanged.
type JobSetState struct {
	// ID of the job.
	ID int64
	// State is the new state.
	State millracetype.JobState
	// FinalizedAt is required for completed, cancelled and discarded.
	FinalizedAt *time.Time
	// ScheduledAt, when set, replaces scheduled_at.
	ScheduledAt *time.Time
	// Error, when set, is appended to errors.
	Error *millracetype.AttemptError
	// AttemptDecrement gives the attempt back (snooze, soft stop).
	AttemptDecrement bool
	// SnoozeIncrement adds one to metadata "snoozes".
	SnoozeIncrement bool
	// MetadataUpdates is a JSON object merged top-level into metadata.
	MetadataUpdates []byte
	// Attempt, when not 0, is the attempt this outcome is for (the job's
	// Attempt as fetched): the row is moved only while it still runs that
	// attempt. An attempt that was rescued, and whose job was fetched
	// again since, must not overwrite the new run's row when its outcome
	// arrives late. 0 matches any running attempt.
	Attempt int
	// OnlyIfRunning, when set, writes nothing at all unless the row is
	// still running (the attempt given): MetadataUpdates are not merged
	// into a row that moved on either. Without it, MetadataUpdates are
	// merged into a row that moved on during the same attempt (cancelled,
	// rescued, finalized meanwhile: River records a late output so), never
	// into a row that has run another attempt since. The outcome of a job its worker
	// completed in its own transaction is sent this way: if that
	// transaction committed, the row stays exactly as it left it; if it
	// rolled back, the outcome applies as usual.
	OnlyIfRunning bool
	// Sequenced is not written: it tells the completer that the job
	// belongs to a sequence (see IsSequenced), so that once a final
	// outcome is written the sequence may move on (SequencePromote).
	Sequenced bool

	// Delete, valid only with State completed, deletes the row instead of
	// writing it completed (an ephemeral job), in the same statement as
	// the other outcomes: a row still running (the attempt given) is
	// deleted, metadata updates and all; any other row (rescued,
	// cancelled, finalized meanwhile) is treated as for any outcome whose
	// row moved on and is never deleted. When rows are returned, a deleted
	// row comes back as the completion would have left it: state
	// completed, FinalizedAt, MetadataUpdates merged.
	Delete bool
}

// JobSetStateIfRunningManyParams is a batch of outcomes.
type JobSetStateIfRunningManyParams struct {
	Schema string
	Jobs   []*JobSetState
	// NoRows skips returning the changed rows (the call returns nil): the
	// statement then neither sends nor decodes them, which is most of its
	// cost on the client. For callers that do not look at the rows.
	NoRows bool
	// Applied, when not nil, receives how many outcomes were written
	// (rows changed, or deleted): an outcome whose row moved on (rescued
	// and fetched again, cancelled, deleted) is not counted. It is -1
	// when the driver cannot tell: a batch with NoRows that mixes deletes
	// with other outcomes (or that merges metadata into the row of a
	// delete; see riverdrivertest's EphemeralAllDeletes for a batch of
	// deletes alone, which every driver counts).
	Applied *int
}

// JobGetByIDParams names a job.
type JobGetByIDParams struct {
	Schema string
	ID     int64
}

// JobGetByIDManyParams names jobs.
type JobGetByIDManyParams struct {
	Schema string
	IDs    []int64
}

// JobListOrderBy is a column JobList can order by.
type JobListOrderBy string

// The orderings JobList supports; ties are broken by id.
const (
	JobListOrderByID          JobListOrderBy = "id"
	JobListOrderByScheduledAt JobListOrderBy = "scheduled_at"
	JobListOrderByCreatedAt   JobListOrderBy = "created_at"
	JobListOrderByAttemptedAt JobListOrderBy = "attempted_at"
	JobListOrderByFinalizedAt JobListOrderBy = "finalized_at"
)

// JobListParams filters, orders and pages a job listing. Empty filters match
// everything.
type JobListParams struct {
	Schema     string
	IDs        []int64
	Kinds      []string
	Queues     []string
	States     []millracetype.JobState
	Priorities []int
	// MetadataContains is a JSON object the metadata must contain (@>).
	MetadataContains []byte
	// OrderBy defaults to id.
	OrderBy JobListOrderBy
	// Desc orders descending.
	Desc bool
	// AfterID and AfterValue continue after the last row of a previous page
	// (AfterValue is that row's OrderBy value; ignored when ordering by id).
	// Rows whose OrderBy value is NULL are not listed when ordering by a
	// nullable column.
	AfterID    *int64
	AfterValue *time.Time
	// Limit is required, 1..10000.
	Limit int

	// TagsAny keeps jobs that have at least one of these tags, TagsAll
	// jobs that have all of them (exact, case-sensitive matches).
	TagsAny []string
	TagsAll []string
	// CreatedAt, ScheduledAt, AttemptedAt and FinalizedAt keep jobs whose
	// column falls in the range (see TimeRange).
	CreatedAt   TimeRange
	ScheduledAt TimeRange
	AttemptedAt TimeRange
	FinalizedAt TimeRange
}

// JobCancelParams cancels a job from outside. For a job that is not
// finalized, metadata cancel_attempted_at is set to CancelAttemptedAt (RFC
// 3339 with nanoseconds) and a cancel control notification is sent; a job
// that is not running also becomes cancelled with finalized_at = now(). A
// finalized job is returned unchanged.
type JobCancelParams struct {
	Schema            string
	ID                int64
	CancelAttemptedAt time.Time
}

// JobRetryParams makes a job available now: scheduled_at = Now (or now()),
// finalized_at NULL, cancel_attempted_at removed from metadata, attempt and
// errors kept, max_attempts + 1 only when attempt = max_attempts. A running
// job and an available job already due are returned untouched.
type JobRetryParams struct {
	Schema string
	ID     int64
	Now    *time.Time
}

// JobDeleteParams names a job to delete.
type JobDeleteParams struct {
	Schema string
	ID     int64
}

// JobScheduleParams selects retryable and scheduled jobs whose scheduled_at
// is at or before Horizon, ordered priority, scheduled_at, id, at most Max.
// Each becomes available (keeping its scheduled_at, so one due a little
// later waits for it in the fetch filter); one whose unique key collides
// with a live job or an earlier job of the batch becomes discarded instead
// (finalized_at = Now, metadata unique_key_conflict =
// "scheduler_discarded").
type JobScheduleParams struct {
	Schema  string
	Max     int
	Now     time.Time
	Horizon time.Time
}

// JobScheduleResult is one job the scheduler moved.
type JobScheduleResult struct {
	Job *millracetype.JobRow
	// ConflictDiscarded is true when the job was discarded for a unique-key
	// conflict.
	ConflictDiscarded bool
}

// JobGetStuckParams selects running jobs attempted before StuckHorizon:
// the first Max of them by id, among those with an id above AfterID (a
// page after the previous page's last job; 0 for the first page).
//
// SkipLiveClients, when set, leaves out jobs whose client (the last
// element of attempted_by) has a live row in millrace_client: a client
// that proves it is alive is never rescued, however long its job runs.
// Jobs of clients without a row (River clients, older millrace) are
// selected as before. Unset, only river_job is read.
type JobGetStuckParams struct {
	Schema          string
	StuckHorizon    time.Time
	Max             int
	AfterID         int64
	SkipLiveClients bool
}

// JobRescue is the rescuer's verdict on one stuck job.
type JobRescue struct {
	ID          int64
	State       millracetype.JobState
	ScheduledAt time.Time
	FinalizedAt *time.Time
	Error       millracetype.AttemptError
	// Attempt, when not 0, is the attempt the verdict was made for: the
	// row is moved only while it still runs that attempt.
	Attempt int
}

// JobRescueManyParams moves stuck jobs that are still running: each gets its
// state, scheduled_at and finalized_at, its error appended and metadata
// river:rescue_count incremented. A row another transaction has locked is
// skipped, not waited for (a rescue must not stall behind a transaction
// that a partitioned client left open); the next pass finds it again.
type JobRescueManyParams struct {
	Schema string
	Jobs   []*JobRescue
	// StuckHorizon, when set, is the horizon the jobs were found stuck
	// with (JobGetStuckParams.StuckHorizon): a job attempted since then
	// (it finished and was fetched again after JobGetStuck read it) is
	// left alone.
	StuckHorizon *time.Time
}

// JobDeleteBeforeParams deletes finalized jobs finalized before each state's
// horizon (nil keeps that state), at most Max rows, lowest ids first.
type JobDeleteBeforeParams struct {
	Schema                     string
	CompletedFinalizedAtBefore *time.Time
	CancelledFinalizedAtBefore *time.Time
	DiscardedFinalizedAtBefore *time.Time
	Max                        int
}

// LeaderElectParams asks to become leader for TTL.
type LeaderElectParams struct {
	Schema string
	// Domain, when not empty, is the domain whose leader to become
	// (millrace_leader); empty means the database's leader (river_leader).
	Domain   string
	LeaderID string
	TTL      time.Duration
}

// LeaderReelectParams extends the term that began at ElectedAt.
type LeaderReelectParams struct {
	Schema string
	// Domain is as in LeaderElectParams.
	Domain    string
	LeaderID  string
	ElectedAt time.Time
	TTL       time.Duration
}

// LeaderResignParams ends the term that began at ElectedAt.
type LeaderResignParams struct {
	Schema string
	// Domain is as in LeaderElectParams.
	Domain    string
	LeaderID  string
	ElectedAt time.Time
}

// QueueCreateParams upserts a queue.
type QueueCreateParams struct {
	Schema string
	Name   string
	// Metadata for a new row (nil = {}).
	Metadata []byte
	// Now is updated_at (and created_at for a new row); nil = now().
	Now *time.Time
}

// QueueGetParams names a queue.
type QueueGetParams struct {
	Schema string
	Name   string
}

// QueueListParams limits a queue listing.
type QueueListParams struct {
	Schema string
	Limit  int
}

// QueuePauseParams names a queue to pause or resume; "*" means every queue.
type QueuePauseParams struct {
	Schema string
	Name   string
}

// QueueDeleteExpiredParams deletes queues last updated before the horizon.
type QueueDeleteExpiredParams struct {
	Schema           string
	UpdatedAtHorizon time.Time
	Max              int
}

// NotifyManyParams sends payloads on one topic.
type NotifyManyParams struct {
	Schema   string
	Topic    string
	Payloads []string
}
