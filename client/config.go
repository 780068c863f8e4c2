package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/millrace/millrace/internal/elector"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/internal/retry"
	"github.com/millrace/millrace/internal/schemaname"
	"github.com/millrace/millrace/millracetype"
)

// Config configures a Client. The zero value, with Queues and Workers set,
// is a working configuration; every field documents its default.
type Config struct {
	// ID names this client in attempted_by, leadership and logs. Default:
	// the host name (dots made underscores, at most 60 characters), '_',
	// and the start time as 2006_01_02T15_04_05_000000 in UTC. At most 100
	// characters.
	ID string

	// Logger receives the client's logs. Default: slog.Default().
	Logger *slog.Logger

	// Schema holds the job tables (migrated with the migrate package).
	// Default "": the connection's search_path.
	Schema string

	// Domain names the service this client belongs to, when several
	// services (with different code: workers, periodic jobs) share one
	// database and schema. The clients of each domain elect a leader of
	// their own (in table millrace_leader, migration line millrace version
	// 2 or later: Start returns ErrNotMigrated without it), which enqueues
	// the domain's periodic jobs; the database-wide maintenance (scheduler,
	// rescuer, cleaners, reindexer) still runs once per database, under
	// the database's leader, which a client of any domain (or River) may
	// be. 1 to 64 lower-case letters and digits, in words joined by '_' or
	// '-' ("billing", "svc-a"); anything else is a config error. Default
	// "": the default domain, whose periodic jobs run under the database's
	// leader, as in River. With several services on a database, give each
	// service a domain of its own: a client in the default domain runs its
	// periodic jobs only while it holds the database leadership, which a
	// client of another service may hold for as long as it lives.
	Domain string

	// Queues to work, by name, each with its worker count. None makes an
	// insert-only client. Client.Queues adds and removes queues later.
	Queues map[string]QueueConfig

	// Workers run jobs by kind. Required when Queues is set. The client
	// fetches only jobs of the kinds registered here when it starts; jobs
	// of other kinds are left for the clients (millrace or River) that
	// work them.
	Workers *Workers

	// FetchCooldown paces this client's insert notifications: at most two
	// per queue per FetchCooldown on average, in bursts of up to 4 (a
	// steady stream of inserts below that pace notifies for each; above
	// it, an insert that went without one is followed by one as soon as
	// the pace allows). After an insert notification a producer fetches
	// once more this long later to pick up jobs inserted while another
	// client's notifications were held back. Default 2 ms: jobs
	// inserted by another client start within milliseconds, while a burst
	// of inserts still sends about 1,000 notifications a second per queue.
	// (River's default is 100 ms, which puts up to 100 ms between an insert
	// and its start.) It is also how long a busy queue (its last fetch
	// took all it asked for) lets fewer than half its slots sit free
	// before it fetches for them: half the slots free make a fetch at once.
	FetchCooldown time.Duration

	// FetchPollInterval is how often a producer fetches when no
	// notification tells it to (plus up to 10% jitter). Default 1 s.
	FetchPollInterval time.Duration

	// JobTimeout bounds each job's run (its context's deadline; the
	// deadline surfaces as an ordinary error). -1 means no timeout. Default
	// 1 minute. A worker's Timeout overrides it. Jobs that start together
	// share one deadline, so a job's may be later than its start plus its
	// timeout by up to 1/64 of the timeout, at most 10 ms.
	JobTimeout time.Duration

	// MaxAttempts is the default attempts per job. Default 25.
	MaxAttempts int

	// RetryPolicy decides when a failed job runs again. Default:
	// DefaultRetryPolicy ((errors)^4 seconds with ±10% jitter).
	RetryPolicy RetryPolicy

	// ErrorHandler is told of every job error and panic and may change the
	// outcome. Default: none.
	ErrorHandler ErrorHandler

	// PollOnly disables LISTEN: producers poll every FetchPollInterval.
	// Insert notifications are still sent for other clients. Default
	// false. Behind PgBouncer in transaction mode, make the driver with
	// pgxv5.NewWithOptions and Options.Pooler instead (and a direct
	// listener connection, or Options.PollOnly, which has the same effect
	// as this): see driver/pgxv5's documentation.
	PollOnly bool

	// JobInsertMiddleware wraps every insert, outermost first.
	JobInsertMiddleware []JobInsertMiddleware

	// WorkerMiddleware wraps every job's Work, outermost first.
	WorkerMiddleware []WorkerMiddleware

	// SubscribeBufferSize is each Subscribe channel's buffer. Default 1000.
	SubscribeBufferSize int

	// RescueStuckJobsAfter: a job running longer than this (its client
	// presumably gone) is rescued by the leader: retried, or discarded when
	// out of attempts. Default 1 h plus JobTimeout when that is positive. A
	// job whose worker Timeout has not elapsed, or is -1, is left alone.
	RescueStuckJobsAfter time.Duration

	// HeartbeatInterval is how often a working client proves it is alive
	// (its row in the millrace line's table millrace_client, stamped with
	// the database's clock). Default 1 s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout: a client whose last heartbeat is older than this,
	// by the database's clock, is dead, and other clients rescue its
	// running jobs at once (retried, or discarded when out of attempts),
	// instead of after RescueStuckJobsAfter. A client's own heartbeat
	// that has not succeeded for this long (less half an interval) makes
	// it cancel its running jobs, since they are about to be rescued;
	// their late outcomes are dropped by the database if the jobs moved
	// on. Jobs of a live client are never rescued, however long they run.
	// The timeout is stored with the client's row, so clients configured
	// differently judge one another right. Default 5 s; at least twice
	// HeartbeatInterval.
	//
	// Jobs worked by clients that keep no heartbeat (River's clients,
	// older millrace versions) keep River's rule, RescueStuckJobsAfter.
	HeartbeatTimeout time.Duration

	// CompletedJobRetentionPeriod: completed jobs are deleted this long
	// after they finish. Default 24 h; -1 keeps them forever.
	CompletedJobRetentionPeriod time.Duration
	// CancelledJobRetentionPeriod: the same for cancelled jobs. Default
	// 24 h; -1 keeps them forever.
	CancelledJobRetentionPeriod time.Duration
	// DiscardedJobRetentionPeriod: the same for discarded jobs. Default 7
	// days; -1 keeps them forever.
	DiscardedJobRetentionPeriod time.Duration

	// ReindexerSchedule, when set, makes the leader rebuild the job table's
	// indexes (REINDEX INDEX CONCURRENTLY) on that schedule, e.g.
	// ParseCron("@daily"). Default: off. (River runs it daily by default;
	// millrace leaves the choice to the operator, since a rebuild adds load.)
	ReindexerSchedule PeriodicSchedule

	// SkipPendingListCleaner turns off the leader's merging of the job
	// table's GIN pending lists (maintenance.PendingListCleaner). By
	// default the leader merges them every 100 ms to 2 s, as fast as they
	// grow, so that no fetch, insert or completion grows one past
	// gin_pending_list_limit and merges it itself (hundreds of
	// milliseconds, every few seconds on a busy table). Postgres lets
	// only the indexes' owner merge them: when the client's role is not
	// the owner, the cleaner says so once in the log and stops; set this
	// to keep it from trying. Drivers without GIN indexes (SQLite) have
	// no cleaner.
	SkipPendingListCleaner bool

	// SoftStopTimeout bounds how long a stopping client lets running jobs
	// finish: once it has passed since the shutdown began (Stop, or the
	// Start context ending), the jobs still running are cancelled as
	// StopAndCancel would (their context's cause says so), and the stop
	// goes on waiting for them to return and for their outcomes to be
	// written. A job that returns an error because of it goes back to
	// available without using an attempt. Use it to fit a deployment's
	// termination grace period: SoftStopTimeout a few seconds shorter than
	// it, so the outcomes are written before the process is killed.
	// Default 0: no soft timeout (Stop waits for jobs as long as its
	// context allows). Must not be negative.
	SoftStopTimeout time.Duration

	// PeriodicJobs are enqueued on their schedules by whichever client
	// leads the domain (Domain; in the default domain, the database's
	// leader); more can be added with Client.PeriodicJobs.
	PeriodicJobs []*PeriodicJob

	// maintenanceInterval, when set, replaces the maintenance services'
	// intervals (tests).
	maintenanceInterval time.Duration
	// leaderTTL and electInterval replace the elector's defaults (tests).
	leaderTTL, electInterval time.Duration

	// clock replaces time.Now in tests (a client whose clock is off).
	clock func() time.Time

	// Hooks and middleware (see hooks.go).

	// Hooks are called at steps of every job's life, in this order at each
	// step, before the hooks of the job's kind (JobArgsWithHooks). Each
	// entry implements one or more of HookInsertBegin, HookWorkBegin,
	// HookWorkEnd and HookWorkMetrics; a nil entry or one implementing none
	// is a config error. Default: none.
	Hooks []Hook

	// plugins are the validated hooks, by step, and the kinds' hooks.
	plugins *plugins

	// Stuck jobs (see JobStuckHandler).

	// JobStuckHandler, when set, is called once for each job still running
	// JobStuckThreshold after its timeout elapsed (its worker ignores its
	// context). The client logs a warning either way. Default: none.
	JobStuckHandler JobStuckHandler
	// JobStuckThreshold is how long after its timeout a job that has not
	// returned counts as stuck. Default 10 s (River's).
	JobStuckThreshold time.Duration

	// Insert-only and worker-only clients (see also Queues: a client
	// without queues only inserts; its Start returns ErrNoQueues and it
	// runs no producer, no notifier and no leader election).

	// LeaderElectionDisabled keeps this client out of leader election (of
	// the database and of its Domain): it works its queues but never
	// leads, so it never runs the maintenance services (scheduler,
	// rescuer, cleaners, periodic jobs, reindexer).
	// Some other client on the same database and schema (millrace or River)
	// must be able to lead, or scheduled jobs and retries are never made
	// available and stuck jobs are never rescued. PeriodicJobs must be
	// empty. Default false, as in River.
	LeaderElectionDisabled bool

	// FetchUnknownKinds makes producers fetch every job of their queues,
	// also those of kinds this client has no worker for. Such a job gets
	// an error recorded ("job kind ... is not registered in client ...")
	// and is retried at the retry policy's time; the attempt is given back
	// and the job is never discarded for it, so a client that has the
	// worker can still run it later. Default false: producers fetch only
	// the kinds registered in Workers (as of Start or Queues().Add) and
	// leave other kinds untouched for the clients that work them. (River
	// fetches every kind by default, counts the attempt, and eventually
	// discards the job; its FetchOnlyKnownKinds is millrace's default.)
	FetchUnknownKinds bool
}

// QueueConfig configures one queue.
type QueueConfig struct {
	// MaxWorkers is how many of the queue's jobs run at once, 1..10000.
	MaxWorkers int

	// Limits bound how many of the queue's jobs run at once: in all
	// (across every client on the database), on this client, or per
	// partition (per kind, per value of chosen args keys), for the whole
	// queue or one kind of it; at most one limit per kind ("" for the
	// whole queue). A limit set at run time (Client.QueueLimitSet, the
	// CLI's limit command) replaces the configured one of its kind on
	// every client. See ConcurrencyLimit and "Concurrency limits" in the
	// README. Default: none.
	Limits []ConcurrencyLimit

	// Ephemeral deletes every job this client completes in the queue
	// instead of keeping it completed; failures, snoozes and cancels keep
	// their rows. See JobArgsWithEphemeral (the same per kind) for what is
	// kept and what is dropped. It is this client's setting: another
	// client working the same queue (or a River client) keeps or deletes
	// what it completes by its own. Default false.
	Ephemeral bool

	// RateLimits bound how many of the queue's jobs start per interval,
	// across every millrace client on the database whose queue has them:
	// per queue, per kind, or per partition (by kind, by values of args
	// keys). The counts live in the database (table millrace_rate), so they
	// are exact across processes and survive crashes. Every client working
	// the queue should declare the same limits; River clients working it
	// are outside the limits. See RateLimit and "Rate limits and timed
	// pauses" in the README. Default: none (the fetch pays nothing).
	RateLimits []RateLimit

	// FetchBuffer bounds how many jobs the queue may hold fetched beyond
	// its free workers, started as workers free up, so that a busy queue
	// of short jobs is fetched in large statements. Its size follows the
	// jobs' observed run times (about 5 ms of the workers' work; a queue
	// of long jobs gets none), and it is off while the queue has rate
	// limits, timed pauses, Fairness, or concurrency limits by kind or partition (a
	// Global or Local limit of the whole queue counts buffered jobs as
	// running: such a limit below MaxWorkers plus the buffer can be
	// reached by jobs that only wait in the buffer, and then binds, with
	// smaller fetches that count the running jobs; set it above both, or
	// lower FetchBuffer, to keep it from binding). A buffered job is
	// running in the table, as River's fetched jobs are: when the process
	// dies the heartbeat rescue returns it, and a Stop, a pause of the
	// queue or a wait of 500 ms returns it to available without using an
	// attempt. 0 (the default): DefaultFetchBuffer(MaxWorkers); -1: no
	// buffer; at most MaxFetchBuffer. See "The fetch buffer" in the README.
	FetchBuffer int

	// Fairness, when not nil, makes the queue's partitions (by kind, by
	// values of args keys) take turns at its workers, so that one tenant's
	// backlog does not starve another's jobs. It combines with Global and
	// Local concurrency limits and rate limits of the whole queue (a
	// limit or pause by kind or partition set at run time takes over the
	// fetch while it is in force); a fair queue keeps no fetch buffer. See
	// Fairness and "Fairness" in the README. Default nil: the queue's
	// usual order, and the fetch pays nothing.
	Fairness *Fairness

	// TimedPauses makes the queue's fetches honour timed pauses
	// (PauseUntil, JobPauseUntil) without rate limits (a queue with
	// RateLimits honours them anyway). Default false: a queue without
	// flow control does not read the pauses table.
	TimedPauses bool
}

// RetryPolicy decides when a job that just failed runs again.
type RetryPolicy interface {
	// NextRetry gets the job as it was fetched (its Errors do not yet
	// include this failure) and returns when to run it again. A zero or
	// past time means the default policy.
	NextRetry(job *millracetype.JobRow) time.Time
}

// DefaultRetryPolicy retries after (number of errors including this one)^4
// seconds, with ±10% jitter, as River does.
type DefaultRetryPolicy struct{}

// NextRetry implements RetryPolicy.
func (DefaultRetryPolicy) NextRetry(job *millracetype.JobRow) time.Time {
	return retry.DefaultNextRetry(len(job.Errors)+1, time.Now())
}

// ErrorHandler is told of job errors and panics and may change the outcome.
// Its methods:
//
//   - HandleError(ctx context.Context, job *millracetype.JobRow, err error)
//     *ErrorHandlerResult is called when Work returns an error (not a
//     cancel or snooze). A nil result keeps the normal outcome.
//   - HandlePanic(ctx context.Context, job *millracetype.JobRow, panicVal
//     any, trace string) *ErrorHandlerResult is called when Work panics,
//     with the value and the stack.
type ErrorHandler = jobexec.ErrorHandler

// ErrorHandlerResult changes a failed job's outcome. Its field
// SetCancelled, when true, cancels the job instead of retrying it.
type ErrorHandlerResult = jobexec.ErrorHandlerResult

// JobInsertMiddleware wraps inserts: call next to insert (possibly after
// changing params); whatever it returns is returned to the caller.
type JobInsertMiddleware interface {
	InsertMany(ctx context.Context, params []*JobInsertParams, next func(ctx context.Context) ([]*InsertResult, error)) ([]*InsertResult, error)
}

// WorkerMiddleware wraps a job's Work: call next to run it.
//
// Its one method is Work(ctx context.Context, job *millracetype.JobRow,
// next func(ctx context.Context) error) error.
type WorkerMiddleware = jobexec.WorkerMiddleware

// JobInsertMiddlewareFunc makes a JobInsertMiddleware of a function.
type JobInsertMiddlewareFunc func(ctx context.Context, params []*JobInsertParams, next func(ctx context.Context) ([]*InsertResult, error)) ([]*InsertResult, error)

// InsertMany implements JobInsertMiddleware.
func (f JobInsertMiddlewareFunc) InsertMany(ctx context.Context, params []*JobInsertParams, next func(ctx context.Context) ([]*InsertResult, error)) ([]*InsertResult, error) {
	return f(ctx, params, next)
}

// WorkerMiddlewareFunc makes a WorkerMiddleware of a function.
type WorkerMiddlewareFunc func(ctx context.Context, job *millracetype.JobRow, next func(ctx context.Context) error) error

// Work implements WorkerMiddleware.
func (f WorkerMiddlewareFunc) Work(ctx context.Context, job *millracetype.JobRow, next func(ctx context.Context) error) error {
	return f(ctx, job, next)
}

// Defaults.
const (
	DefaultFetchCooldown       = 2 * time.Millisecond
	DefaultFetchPollInterval   = time.Second
	DefaultJobTimeout          = time.Minute
	DefaultSubscribeBufferSize = 1000
	// MaxQueueWorkers is the largest MaxWorkers of a queue.
	MaxQueueWorkers = 10000
)

var queueNameRE = regexp.MustCompile(`^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$`)

// validateQueueName checks a queue name with River's rule.
func validateQueueName(name string) error {
	if name == "" {
		return errors.New("queue name is empty")
	}
	if len(name) > 64 {
		return fmt.Errorf("queue name %q is longer than 64 characters", name)
	}
	if !queueNameRE.MatchString(name) {
		return fmt.Errorf("queue name %q must match %s", name, queueNameRE)
	}
	return nil
}

// withDefaults validates cfg and returns a copy with defaults filled in.
func (cfg *Config) withDefaults() (*Config, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	bad := func(format string, args ...any) (*Config, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ID == "" {
		c.ID = defaultClientID(time.Now())
	}
	if len(c.ID) > 100 {
		return bad("ID %q is longer than 100 characters", c.ID)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := schemaname.Validate(c.Schema); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := elector.ValidateDomain(c.Domain); err != nil {
		return bad("Domain: %v", err)
	}
	if c.FetchCooldown < 0 || c.FetchPollInterval < 0 {
		return bad("FetchCooldown and FetchPollInterval must not be negative")
	}
	if c.FetchCooldown == 0 {
		c.FetchCooldown = DefaultFetchCooldown
	}
	if c.FetchPollInterval == 0 {
		c.FetchPollInterval = DefaultFetchPollInterval
	}
	switch {
	case c.JobTimeout == 0:
		c.JobTimeout = DefaultJobTimeout
	case c.JobTimeout < -1:
		return bad("JobTimeout %s: must be positive, or -1 for none", c.JobTimeout)
	}
	switch {
	case c.MaxAttempts == 0:
		c.MaxAttempts = MaxAttemptsDefault
	case c.MaxAttempts < 0 || c.MaxAttempts > 32767:
		return bad("MaxAttempts %d out of range 1..32767", c.MaxAttempts)
	}
	if c.RetryPolicy == nil {
		c.RetryPolicy = DefaultRetryPolicy{}
	}
	if c.SoftStopTimeout < 0 {
		return bad("SoftStopTimeout %s must not be negative (0 means none)", c.SoftStopTimeout)
	}
	if c.SubscribeBufferSize < 0 {
		return bad("SubscribeBufferSize must not be negative")
	}
	if c.SubscribeBufferSize == 0 {
		c.SubscribeBufferSize = DefaultSubscribeBufferSize
	}
	if c.RescueStuckJobsAfter < 0 {
		return bad("RescueStuckJobsAfter %s must not be negative", c.RescueStuckJobsAfter)
	}
	if c.RescueStuckJobsAfter == 0 {
		c.RescueStuckJobsAfter = time.Hour + max(c.JobTimeout, 0)
	}
	if c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0 {
		return bad("HeartbeatInterval %s and HeartbeatTimeout %s must not be negative (0 means the default)", c.HeartbeatInterval, c.HeartbeatTimeout)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = liveness.DefaultInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = max(liveness.DefaultDeadAfter, 2*c.HeartbeatInterval)
	}
	if c.HeartbeatTimeout < 2*c.HeartbeatInterval {
		return bad("HeartbeatTimeout %s must be at least twice HeartbeatInterval %s", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	for name, r := range map[string]time.Duration{"CompletedJobRetentionPeriod": c.CompletedJobRetentionPeriod,
		"CancelledJobRetentionPeriod": c.CancelledJobRetentionPeriod, "DiscardedJobRetentionPeriod": c.DiscardedJobRetentionPeriod} {
		if r < -1 {
			return bad("%s %s: must be positive, 0 for the default, or -1 to keep jobs forever", name, r)
		}
	}
	queues := make(map[string]QueueConfig, len(c.Queues))
	for name, q := range c.Queues {
		q.Fairness = q.Fairness.clone()
		if err := q.validate(name, c.Workers); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		queues[name] = q
	}
	if c.LeaderElectionDisabled && len(c.PeriodicJobs) > 0 {
		return bad("PeriodicJobs need a client that can lead: LeaderElectionDisabled is set")
	}
	c.Queues = queues
	if len(c.Queues) > 0 && c.Workers == nil {
		return bad("Workers is required when Queues is set (make it with NewWorkers and AddWorker)")
	}
	if c.Workers != nil {
		c.Workers.mu.Lock()
		err := c.Workers.err
		c.Workers.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	plugins, err := newPlugins(&c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.plugins = plugins
	switch {
	case c.JobStuckThreshold == 0:
		c.JobStuckThreshold = DefaultJobStuckThreshold
	case c.JobStuckThreshold < 0:
		return bad("JobStuckThreshold %s must not be negative", c.JobStuckThreshold)
	}
	return &c, nil
}

// defaultClientID builds River's style of client ID.
func defaultClientID(now time.Time) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "millrace"
	}
	host = strings.ReplaceAll(host, ".", "_")
	if len(host) > 60 {
		host = host[:60]
	}
	return host + "_" + strings.ReplaceAll(now.UTC().Format("2006_01_02T15_04_05.000000"), ".", "_")
}
