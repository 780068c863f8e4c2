// Package producer runs one queue for a client: it fetches jobs up to its
// free worker slots, hands each to the client's work function in its own
// goroutine, and honours pause, resume and cancel from any client.
//
// # When it fetches
//
// A fetch locks at most as many jobs as there are free slots, so the
// producer never holds a job it cannot start. It fetches:
//   - when an insert notification for its queue arrives (at once), and once
//     more FetchCooldown later, to pick up jobs inserted while the inserting
//     client's notifications were being debounced;
//   - after a fetch that filled every slot it asked for (more are probably
//     waiting), once it has returned, as soon as half of MaxWorkers (at
//     least one) are free again, or, when fewer are free, FetchCooldown
//     after the first of them freed up; so a busy queue is drained back
//     to back without waiting for notifications, in fetches big enough
//     that a statement's fixed cost is shared by many jobs (fetches of a
//     few jobs each cost Postgres and the client several times as much
//     per job), while a queue of slow jobs still refills a freed slot
//     within FetchCooldown;
//   - every FetchPollInterval (plus up to 10% jitter), the fallback when
//     notifications are off or lost;
//   - when the notifier's connection goes down or comes back (notifications
//     may have been missed), at once; the control state (pause, cancels of
//     running jobs) is read at once too, and from then on every 2 s while
//     the connection is down;
//   - when the fetch strategy held jobs back (FetchResult.Limited), as soon
//     as one of the producer's jobs finishes, and when its NextFetch hint
//     is due (see "Fetch strategies" below).
//
// Fetches run in two long-lived fetcher goroutines, so while one fetch's
// statement runs the loop keeps counting finished jobs. A draining queue
// fetches one batch at a time (the jobs of the previous batch are worked
// meanwhile): two draining fetches at once contend for the same index
// pages and row locks, and cost the server more per job. The second
// fetcher serves a fetch asked for (a notification, a poll) while a
// draining one runs, so jobs someone waits for do not queue behind it.
// The slots asked for are reserved, so running jobs plus reserved slots
// never exceed MaxWorkers. While a queue drains, a fetch continues after
// the last job taken (see fetchRequest.after) instead of walking again the
// index entries of every job already taken.
//
// Jobs run in worker goroutines that live until the producer stops (at
// most MaxWorkers of them), not in a goroutine per job. Fetched jobs are
// ready in fetch order; the loop hands them to idle workers, and a worker
// that finishes a job takes the next ready one itself, so a busy queue's
// jobs pass from worker to worker without the loop. A worker wakes the
// loop only when its finish may make a fetch due (the queue drains and
// slots freed up, or the strategy waits for a job to finish), so the loop
// wakes a few times per fetch, not twice per job.
//
// A failed fetch is logged and retried after a backoff; it never stops the
// producer.
//
// # Fetch strategies
//
// The loop above decides when to fetch and how many slots are free; which
// jobs to lock is a FetchStrategy's (Config.Fetch). DefaultFetch is one
// statement that locks up to the free slots in fetch order; LimitFetch
// adds concurrency limits. Other policies are strategies of their own or
// decorators that wrap another strategy (DefaultFetch in the end), and
// they plug in through four things without a change to the loop: the
// request's Max, which a strategy may lower; FetchResult.Limited and
// NextFetch, which tell the loop that jobs were held back and when to ask
// again; JobFinishedObserver, through which a strategy hears of each of
// its jobs finishing; and LimitsObserver, through which it hears of a
// limits_changed control notification for the queue. A strategy that
// returns all it was asked for and implements no hook costs the loop
// nothing: the request is reused and the jobs are handed over as the
// driver returned them.
//
// LimitFetch (concurrency limits: at most N jobs of the queue, or of a
// kind, or of each partition by kind or args values, running across all
// clients or on this one) is DefaultFetch while no limit applies. A local
// limit counts the jobs it handed out and has not heard finish: it lowers
// Max to the room left and sets Limited when it held jobs back; the loop
// fetches again when a job finishes. A limit across all clients counts
// running jobs in the database, in a transaction holding an advisory lock
// on the queue so no two clients overshoot, and sets Limited with a
// NextFetch, since other clients' jobs finish unseen.
//
// RateFetch (rate limits: at most N jobs started per interval, per queue,
// kind or partition, across all clients; and timed pauses) is a decorator:
// in a transaction holding an advisory lock on the queue it reads the
// window counts and pauses from the database, lowers Max for the strategy
// it wraps (or, with partitions, chooses the jobs itself), adds what was
// taken to the counts, and returns with Limited set and NextFetch at the
// end of the window or pause that held jobs back.
//
// FairFetch (fairness: the partitions of a queue, by kind or args values,
// take turns) is the innermost strategy of a fair queue, in place of
// DefaultFetch under LimitFetch and RateFetch: it reads the partitions
// from the database, takes a share of Max from each in one transaction
// and the rest in fetch order, and allows no buffer.
//
// # The fetch buffer
//
// With Config.FetchBuffer set, a fetch may take more jobs than there are
// free workers: the rest wait in a local buffer, in fetch order, and start
// as workers free up, so that a busy queue of short jobs is fetched in
// statements of hundreds of jobs rather than of the few slots that freed
// up since the last fetch (the statement's fixed cost is then shared by
// many jobs). A buffered job is running in the table from its fetch on,
// as it is for the moment between fetch and start without a buffer; if
// the process dies, the heartbeat rescue returns it like any running job.
//
// The buffer is sized from the jobs' observed run times so that a job
// waits in it about bufferTargetWait: MaxWorkers x bufferTargetWait /
// (mean run time), at most FetchBuffer; a queue of long jobs gets no
// buffer, nor does one whose fetch strategy does not allow it
// (BufferAllower: flow control that counts starts or keeps an order) or
// whose jobs have not run yet. Buffered jobs that never start go back to
// available without using an attempt (driver.Executor.JobReturnUnstarted;
// a job whose cancel was attempted meanwhile is cancelled instead) when
// the producer stops, when the queue is paused, and when the oldest has
// waited bufferMaxWait (its jobs ran longer than they used to): buffering
// then stays off for bufferOffAfterStale. A remote cancel of a buffered
// job is applied when it starts (its context starts cancelled), as for a
// job cancelled between fetch and start without a buffer.
//
// Sequences and fairness between partitions (by kind, or by an arg) are
// strategies with statements of their own that choose among the available
// jobs, returning them within Max like the default.
//
// # Stopping
//
// Stop stops fetching and returns once every job it started has finished
// (their outcomes handed to the work function's own recording). To
// interrupt running jobs, cancel the WorkCtx given in the Config first.
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// ErrJobCancelledRemotely is the cause of a job's context when the job was
// cancelled with JobCancel (from this client or any other).
var ErrJobCancelledRemotely = errors.New("job cancelled remotely")

// Defaults for Config. FetchCooldown and FetchPollInterval have none here:
// the client passes its own Config's, whose defaults are
// client.DefaultFetchCooldown and client.DefaultFetchPollInterval.
const (
	DefaultQueueReportInterval = 10 * time.Minute
	// DefaultControlPollInterval is how often queue settings and cancels of
	// running jobs are read from the database while notifications work; a
	// lost notification is caught within it.
	DefaultControlPollInterval = time.Minute
	// DefaultControlPollIntervalNoListen is the same without notifications.
	DefaultControlPollIntervalNoListen = 2 * time.Second
)

// Config configures a Producer.
type Config struct {
	// Queue is the queue's name.
	Queue string
	// MaxWorkers is how many jobs may run at once (1 or more).
	MaxWorkers int
	// Schema is where the tables are.
	Schema string
	// ClientID is recorded in attempted_by.
	ClientID string
	// Kinds, when not empty, are the only kinds fetched: the ones the
	// client has workers for. Jobs of other kinds are left for clients
	// that can work them.
	Kinds []string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Notifier, when set, delivers insert and control notifications; nil
	// means poll only.
	Notifier *notifier.Notifier
	// FetchCooldown: see the package doc: the delay of the fetch after a
	// notification's, and how long a draining queue's free slots wait for
	// more to free up. Required (positive).
	FetchCooldown time.Duration
	// FetchPollInterval: see the package doc. Required (positive).
	FetchPollInterval time.Duration
	// ControlPollInterval overrides the intervals of reading queue settings
	// and running jobs' cancels (default 1 min with notifications, 2 s
	// without).
	ControlPollInterval time.Duration
	// WorkCtx is the parent of every job's context: cancelling it (with a
	// cause) interrupts all running jobs. Default: a context never
	// cancelled.
	WorkCtx context.Context
	// Work runs one fetched job to the end, including recording its
	// outcome. Its ctx is cancelled, with cause ErrJobCancelledRemotely,
	// when the job is cancelled from outside, and with WorkCtx's cause when
	// WorkCtx ends. Required.
	Work func(ctx context.Context, job *millracetype.JobRow)
	// WorkBound, when set, is called instead of Work: it makes the job's
	// context itself, below parent (WorkCtx), and hands its cancel
	// function to bind (so that it can make the context once it knows
	// the job's timeout, see jobexec.Executor.WorkBound). The context
	// must end as Work's does.
	WorkBound func(parent context.Context, job *millracetype.JobRow, bind *Cancel)
	// OnPaused is called with true or false when the queue's paused state
	// changes (from the producer's goroutine).
	OnPaused func(paused bool)
	// OnMetadataChanged is called with the queue's new metadata when a
	// metadata_changed control notification (or the periodic read of the
	// queue row) shows that it changed (from the producer's goroutine).
	OnMetadataChanged func(metadata json.RawMessage)
	// Fetch is how jobs are taken (see "Fetch strategies" in the package
	// doc). Default: DefaultFetch.
	Fetch FetchStrategy
	// FetchBuffer is the most jobs the producer may hold fetched beyond
	// its free workers (see "The fetch buffer" in the package doc). 0: no
	// buffer.
	FetchBuffer int
}

// Timing of the fetch buffer (see the package doc).
const (
	// bufferTargetWait is how long a job should wait in the buffer, from
	// which its size follows.
	bufferTargetWait = 5 * time.Millisecond
	// bufferMaxWait: buffered jobs that waited this long go back to the
	// table, and buffering stops for bufferOffAfterStale.
	bufferMaxWait       = 500 * time.Millisecond
	bufferOffAfterStale = 10 * time.Second
	// bufferReturnTimeout bounds the statement returning buffered jobs.
	bufferReturnTimeout = 10 * time.Second
	// runSample: one job in runSample has its run time measured (two
	// clock reads), enough for a mean.
	runSample = 8
)

// Producer runs one queue; see the package doc.
type Producer struct {
	startstop.BaseStartStop

	exec driver.Executor
	cfg  Config
	// finished is cfg.Fetch as a JobFinishedObserver, or nil.
	finished JobFinishedObserver
	// allowBuffer is cfg.Fetch as a BufferAllower, or nil (no buffer).
	allowBuffer BufferAllower

	// bufferOff ends buffering until then (only the run loop's goroutine
	// touches it).
	bufferOff time.Time
	// staleAfter is bufferMaxWait (tests change it before Start).
	staleAfter time.Duration
	// tasks and spawns are the run loop's scratch for startReady.
	tasks, spawns []task

	// events from notifications, workers and tests, read by the run loop.
	inserted chan struct{}
	control  chan controlMessage
	// wake tells the run loop that jobs finished and a fetch may be due
	// (see wakeAt).
	wake chan struct{}
	// work hands a job to an idle worker goroutine (buffered for
	// MaxWorkers: a job is sent only to a worker counted idle, see
	// startReady). Worker goroutines live until the producer stops, so a
	// busy queue does not start (and grow the stack of) a goroutine per
	// job; a worker that finishes a job takes the next ready one itself.
	work    chan task
	workers sync.WaitGroup
	// onFetchRequest, set by tests before Start, sees each fetch request
	// in the order the loop makes them.
	onFetchRequest func(fetchRequest)
	// fetched receives the results of fetches running in their own
	// goroutines (see run).
	fetched chan fetchResult
	// listenerChanged is signalled when the notifier's connection goes
	// down or comes back.
	listenerChanged chan struct{}

	mu      sync.Mutex
	running map[int64]*Cancel // jobs handed to workers or ready
	paused  bool
	// busy counts jobs handed to workers and not finished; ready[head:]
	// are jobs fetched and not yet handed to a worker, oldest first (the
	// fetch buffer, and jobs an idle worker is about to take).
	busy  int
	ready []bufJob
	head  int
	// nWorkers counts the worker goroutines started, idle those waiting
	// on work.
	nWorkers, idle int
	// hold keeps workers from taking ready jobs themselves (the producer
	// stops, or the queue is being paused); the run loop still may.
	hold bool
	// A worker finishing a job signals wake when busy+readyLen() <=
	// wakeAt afterwards, or at every finish with wakeOnFinish; finishes
	// counts the jobs finished.
	wakeAt       int
	wakeOnFinish bool
	finishes     uint64
	// meanRun is the moving mean of the jobs' run times (0: none seen
	// yet); one dispatched job in runSample (sampled counts them) has its
	// run time measured for it.
	meanRun time.Duration
	sampled uint
	// spare are Cancels of finished jobs, for jobs to come.
	spare    []*Cancel
	metadata json.RawMessage // the queue's metadata as last seen
}

// task is one fetched job and its cancel, for a worker goroutine.
type task struct {
	cancel *Cancel
	job    *millracetype.JobRow
}

// bufJob is a buffered job and when it was buffered.
type bufJob struct {
	task
	at time.Time
}

// Cancel cancels one running job's context with a cause. The context is
// made when the job starts to run (by the producer, or by Config.WorkBound
// once it knows the job's timeout), so a cancel may come before there is
// a context to cancel: it is then applied when Bind hands the context's
// cancel function over.
//
// A producer reuses its Cancels: once a job has finished, its Cancel may
// serve another job, so a cancel that found it before names the job it
// means (cancelJob).
type Cancel struct {
	mu     sync.Mutex
	id     int64 // the job's ID
	cancel Canceller
	cause  error // the first cancel's cause, once cancelled
	// started is when the job was handed to a worker, zero when its run
	// time is not measured (set under Producer.mu, read by the worker
	// running the job).
	started time.Time
}

// Canceller cancels a job's context with a cause (a
// context.CancelCauseFunc's job, as an interface so that the one who makes
// the context needs no closure to hear of the cancel).
type Canceller = interface{ CancelCause(cause error) }

// cancelFunc is a context.CancelCauseFunc as a Canceller.
type cancelFunc context.CancelCauseFunc

func (f cancelFunc) CancelCause(cause error) { f(cause) }

// Bind hands over what cancels the job's context; a cancel asked for
// before is applied at once. (jobexec.CancelBinder)
func (c *Cancel) Bind(cancel Canceller) {
	c.mu.Lock()
	c.cancel = cancel
	cause := c.cause
	c.mu.Unlock()
	if cause != nil {
		cancel.CancelCause(cause)
	}
}

// Cancel cancels the job's context with cause, or records it for Bind.
func (c *Cancel) Cancel(cause error) {
	c.cancelJob(c.id, cause, false)
}

// cancelJob is Cancel if c still serves job id; reset makes it ready to
// serve another job after.
func (c *Cancel) cancelJob(id int64, cause error, reset bool) {
	c.mu.Lock()
	if c.id != id {
		c.mu.Unlock()
		return
	}
	cancel := c.cancel
	if c.cause == nil {
		c.cause = cause
	}
	if reset {
		c.id, c.cancel, c.cause = 0, nil, nil
	}
	c.mu.Unlock()
	if cancel != nil {
		cancel.CancelCause(cause)
	}
}

type controlMessage struct {
	Action   string          `json:"action"`
	JobID    int64           `json:"job_id"`
	Metadata json.RawMessage `json:"metadata"`
	Queue    string          `json:"queue"`
}

// New returns a producer for one queue; Start runs it.
func New(exec driver.Executor, cfg *Config) (*Producer, error) {
	c := *cfg
	if c.Queue == "" {
		return nil, errors.New("producer: queue name is empty")
	}
	if c.MaxWorkers < 1 {
		return nil, fmt.Errorf("producer: queue %q: MaxWorkers %d must be at least 1", c.Queue, c.MaxWorkers)
	}
	if c.Work == nil && c.WorkBound == nil {
		return nil, errors.New("producer: Work is nil")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.FetchCooldown <= 0 || c.FetchPollInterval <= 0 {
		return nil, fmt.Errorf("producer: queue %q: FetchCooldown %v and FetchPollInterval %v must be positive", c.Queue, c.FetchCooldown, c.FetchPollInterval)
	}
	if c.WorkCtx == nil {
		c.WorkCtx = context.Background()
	}
	if c.Fetch == nil {
		c.Fetch = DefaultFetch{}
	}
	if c.FetchBuffer < 0 {
		return nil, fmt.Errorf("producer: queue %q: FetchBuffer %d must not be negative", c.Queue, c.FetchBuffer)
	}
	finished, _ := c.Fetch.(JobFinishedObserver)
	allowBuffer, _ := c.Fetch.(BufferAllower)
	return &Producer{
		exec:            exec,
		cfg:             c,
		finished:        finished,
		allowBuffer:     allowBuffer,
		staleAfter:      bufferMaxWait,
		inserted:        make(chan struct{}, 1),
		control:         make(chan controlMessage, 64),
		wake:            make(chan struct{}, 1),
		work:            make(chan task, c.MaxWorkers),
		wakeAt:          -1,
		fetched:         make(chan fetchResult, maxFetchesInFlight),
		listenerChanged: make(chan struct{}, 1),
		running:         map[int64]*Cancel{},
	}, nil
}

// Start registers the queue (river_queue), reads whether it is paused,
// subscribes to notifications, and starts fetching.
func (p *Producer) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := p.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	queue, err := p.exec.QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: p.cfg.Schema, Name: p.cfg.Queue})
	if err != nil {
		p.StartFailed(stopped)
		return fmt.Errorf("producer %q: register queue: %w", p.cfg.Queue, err)
	}
	p.setPaused(queue.PausedAt != nil)
	p.mu.Lock()
	p.metadata = compactJSON(queue.Metadata)
	p.mu.Unlock()

	var subs []*notifier.Subscription
	stopStatus := func() {}
	unsubscribe := func() {
		stopStatus()
		for _, s := range subs {
			s.Unlisten(context.WithoutCancel(ctx))
		}
	}
	if n := p.cfg.Notifier; n != nil {
		stopStatus = n.OnStatus(func(bool) {
			select {
			case p.listenerChanged <- struct{}{}:
			default:
			}
		})
		for topic, fn := range map[string]func(string, string){
			driver.TopicInsert:  p.onInsert,
			driver.TopicControl: p.onControl,
		} {
			sub, err := n.Listen(ctx, topic, fn)
			if err != nil {
				unsubscribe()
				p.StartFailed(stopped)
				return fmt.Errorf("producer %q: listen to %s: %w", p.cfg.Queue, topic, err)
			}
			subs = append(subs, sub)
		}
	}
	go func() {
		defer stopped()
		defer unsubscribe()
		started()
		p.run(ctx)
	}()
	return nil
}

// Paused reports whether the queue is paused.
func (p *Producer) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Running returns how many jobs are running (handed to a worker; not
// those waiting in the fetch buffer).
func (p *Producer) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// CancelJob cancels a job if it runs here (used by the client for a cancel
// it issued itself, without waiting for the notification). It reports
// whether the job was running here.
func (p *Producer) CancelJob(id int64) bool {
	p.mu.Lock()
	cancel, ok := p.running[id]
	p.mu.Unlock()
	if ok {
		cancel.cancelJob(id, ErrJobCancelledRemotely, false)
	}
	return ok
}

// Runs reports whether job id runs here (fetched and not yet finished,
// including a job waiting in the fetch buffer).
func (p *Producer) Runs(id int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.running[id]
	return ok
}

// CancelAll cancels every job running here with cause and returns how
// many there were. Fetching goes on.
func (p *Producer) CancelAll(cause error) int {
	p.mu.Lock()
	type running struct {
		id     int64
		cancel *Cancel
	}
	cancels := make([]running, 0, len(p.running))
	for id, cancel := range p.running {
		cancels = append(cancels, running{id, cancel})
	}
	p.mu.Unlock()
	for _, r := range cancels {
		r.cancel.cancelJob(r.id, cause, false)
	}
	return len(cancels)
}

// Poke asks for a fetch as if an insert notification had arrived.
func (p *Producer) Poke() {
	select {
	case p.inserted <- struct{}{}:
	default:
	}
}

// SetPaused applies a pause or resume of this queue at once, as the control
// notification would (used by the client for its own QueuePause).
func (p *Producer) SetPaused(paused bool) {
	action := "resume"
	if paused {
		action = "pause"
	}
	select {
	case p.control <- controlMessage{Action: action, Queue: p.cfg.Queue}:
	default:
	}
}

func (p *Producer) onInsert(_, payload string) {
	var msg struct {
		Queue string `json:"queue"`
	}
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		p.cfg.Logger.Warn("producer: ignoring malformed insert notification", "payload", payload, "error", err)
		return
	}
	if msg.Queue == p.cfg.Queue {
		p.Poke()
	}
}

func (p *Producer) onControl(_, payload string) {
	var msg controlMessage
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		p.cfg.Logger.Warn("producer: ignoring malformed control notification", "payload", payload, "error", err)
		return
	}
	switch msg.Action {
	case "cancel":
		// A cancel names its own queue only; the job ID is what matters.
		if msg.Queue == p.cfg.Queue {
			p.CancelJob(msg.JobID)
		}
	case driver.ControlActionLimitsChanged:
		if msg.Queue == p.cfg.Queue {
			if o, ok := p.cfg.Fetch.(LimitsObserver); ok {
				o.LimitsChanged()
				p.Poke() // a lower limit holds back, a higher one frees, at the next fetch
			}
		}
	case "pause", "resume", "metadata_changed":
		if msg.Queue == p.cfg.Queue || msg.Queue == "*" {
			select {
			case p.control <- msg:
			default:
				// The loop is far behind; the periodic read of the queue row
				// catches up.
			}
		}
	}
}

func (p *Producer) setPaused(paused bool) {
	p.mu.Lock()
	changed := p.paused != paused
	p.paused = paused
	p.mu.Unlock()
	if changed && p.cfg.OnPaused != nil {
		p.cfg.OnPaused(paused)
	}
}

func (p *Producer) controlPollInterval() time.Duration {
	if p.cfg.ControlPollInterval > 0 {
		return p.cfg.ControlPollInterval
	}
	if p.cfg.Notifier == nil || !p.cfg.Notifier.Connected() {
		return DefaultControlPollIntervalNoListen
	}
	return DefaultControlPollInterval
}

// jitter adds up to 10% to d.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

func (p *Producer) run(ctx context.Context) {
	var (
		wantFetch = true  // fetch as soon as possible
		drainMode = false // the last fetch was full: fetch when enough slots free up
		failures  = 0
		trailing  *time.Timer
		trailingC <-chan time.Time
		retryC    <-chan time.Time
		// drainTimer runs while a draining queue has free slots, but fewer
		// than threshold: when it fires (drainDue), they are fetched
		// anyway.
		drainTimer   = time.NewTimer(time.Hour)
		drainArmed   = false
		drainDue     = false
		poll         = time.NewTimer(jitter(p.cfg.FetchPollInterval))
		controlPoll  = time.NewTimer(p.controlPollInterval())
		reportTicker = time.NewTicker(DefaultQueueReportInterval)
		// fetchOnFinish: the last fetch was held back by the strategy's
		// own limit (FetchResult.Limited), so a job finishing asks for a
		// fetch. hintTimer runs for a FetchResult.NextFetch.
		fetchOnFinish = false
		hintTimer     = time.NewTimer(time.Hour)
		// bufTimer runs while jobs wait in the fetch buffer, due when
		// the oldest will have waited bufferMaxWait.
		bufTimer = time.NewTimer(time.Hour)
		bufArmed = false
	)
	bufTimer.Stop()
	defer bufTimer.Stop()
	// take starts a fetched job, or buffers it when no worker is free
	// (or jobs may not start now: paused, stopping); starting says
	// whether jobs may start.
	take := func(jobs []*millracetype.JobRow, starting bool) {
		if p.takeAll(jobs, starting) && !bufArmed {
			bufTimer.Reset(p.staleAfter)
			bufArmed = true
		}
	}
	drainTimer.Stop()
	defer drainTimer.Stop()
	hintTimer.Stop()
	defer hintTimer.Stop()
	defer poll.Stop()
	defer controlPoll.Stop()
	defer reportTicker.Stop()
	defer func() {
		if trailing != nil {
			trailing.Stop()
		}
	}()

	// Fetches run in maxFetchesInFlight fetcher goroutines, so the loop
	// keeps counting finished jobs while a fetch runs: on a busy queue one
	// fetch's statement runs while the previous one's jobs are worked,
	// and a fetch asked for need not wait for a draining one. The
	// fetchers live as long as the loop (a goroutine per fetch would grow
	// a new stack through the driver every time). reserved is the slots
	// asked for by fetches in flight.
	fetchReqs := make(chan fetchRequest)
	var fetchers sync.WaitGroup
	for range maxFetchesInFlight {
		fetchers.Go(func() {
			// One request per fetcher, filled in afresh for each of its
			// fetches (a decorating strategy may have changed it).
			req := new(FetchRequest)
			for r := range fetchReqs {
				*req = FetchRequest{Schema: p.cfg.Schema, Queue: p.cfg.Queue, ClientID: p.cfg.ClientID, Kinds: p.cfg.Kinds,
					Max: r.limit, After: r.after}
				res, err := p.fetch(ctx, req)
				p.fetched <- fetchResult{jobs: res.Jobs, limited: res.Limited, next: res.NextFetch, err: err,
					asked: r.limit, continued: r.after != nil}
			}
		})
	}
	defer func() {
		close(fetchReqs)
		fetchers.Wait()
	}()
	inFlight, reserved := 0, 0
	// finishesSeen is p.finishes when fetchOnFinish was set.
	var finishesSeen uint64
	// While the queue drains, fetches continue after the last job taken
	// (see fetchRequest.after); fromFront forces the next one to scan from
	// the front of the queue, and sinceFront counts continued fetches.
	var lastKey *driver.JobFetchKey
	fromFront, sinceFront := true, 0
	// handle takes one fetch's result: its jobs start, and the drain state
	// and cursor follow it.
	handle := func(r fetchResult) {
		inFlight--
		reserved -= r.asked
		if len(r.jobs) > r.asked {
			p.cfg.Logger.Error("producer: the fetch strategy returned more jobs than asked for; running them all",
				"queue", p.cfg.Queue, "asked", r.asked, "got", len(r.jobs))
		}
		take(r.jobs, p.canStart(ctx)) // locked: they start even if the strategy also failed
		if r.next > 0 {
			hintTimer.Reset(r.next)
		}
		if r.err != nil {
			failures++
			wait := min(p.cfg.FetchPollInterval, time.Duration(1<<min(failures, 10))*10*time.Millisecond)
			p.cfg.Logger.Warn("producer: fetch failed; retrying", "queue", p.cfg.Queue, "retry_in", wait, "error", r.err)
			retryC = time.After(wait)
			wantFetch = true // once the backoff is over
			return
		}
		failures = 0
		// A fetch held back by the strategy's limit says nothing about
		// how deep the queue is; the next one comes when a job finishes
		// (or at the strategy's NextFetch).
		drainMode = len(r.jobs) >= r.asked && !r.limited
		if fetchOnFinish = r.limited; fetchOnFinish {
			p.mu.Lock()
			finishesSeen = p.finishes
			p.mu.Unlock()
		}
		if n := len(r.jobs); n > 0 {
			last := r.jobs[n-1]
			lastKey = &driver.JobFetchKey{Priority: last.Priority, ScheduledAt: last.ScheduledAt, ID: last.ID}
		}
		if r.continued && !drainMode {
			// The continued scan came up short: jobs may wait ahead
			// of the cursor (inserted or come due since). Look from
			// the front, at once unless the strategy held jobs back.
			fromFront = true
			wantFetch = wantFetch || !r.limited
		}
	}
	// pause waits for the fetches in flight (their jobs were locked before
	// the pause took effect here and start), then pauses: from the paused
	// event on, this producer takes no job of the queue.
	pause := func() {
		p.setHold(true) // workers start no ready job meanwhile
		for inFlight > 0 {
			handle(<-p.fetched)
		}
		p.returnBuffered(ctx, "the queue was paused", true)
		p.setPaused(true)
		p.setHold(false)
	}
	for {
		// The producer holds its busy workers' jobs, the buffered ones
		// and the slots reserved by fetches in flight: at most its
		// workers plus the buffer's size for now.
		p.mu.Lock()
		held, meanRun := p.busy+p.readyLen(), p.meanRun
		p.mu.Unlock()
		capacity := p.cfg.MaxWorkers + p.bufferSize(meanRun)
		free := capacity - held - reserved
		threshold := max(1, capacity/2)
		// Nothing is fetched once the producer is stopping or the work
		// context has ended (StopAndCancel ends it before the producers
		// stop): a job would start with its context already cancelled,
		// and a job just interrupted, back to available, would be taken
		// again and run again while its first run was still being
		// counted.
		canFetch := retryC == nil && inFlight < maxFetchesInFlight && !p.Paused() && free > 0 &&
			ctx.Err() == nil && p.cfg.WorkCtx.Err() == nil
		// A draining queue fetches one batch at a time: its next fetch
		// waits for the one in flight. Two draining fetches at once
		// contend for the same index pages and row locks and cost the
		// server more per job than they gain (see maxFetchesInFlight).
		// The second fetcher serves only fetches asked for (wantFetch:
		// a notification, a poll), whose jobs someone may be waiting for.
		drainSlot := drainMode && inFlight == 0
		if canFetch && drainSlot && !wantFetch && free < threshold && !drainArmed && !drainDue {
			drainTimer.Reset(p.cfg.FetchCooldown)
			drainArmed = true
		}
		if canFetch && (wantFetch || (drainSlot && (free >= threshold || drainDue))) {
			if drainArmed {
				drainTimer.Stop()
				drainArmed = false
			}
			drainDue = false
			req := fetchRequest{limit: free}
			if wantFetch || fromFront || lastKey == nil || sinceFront >= fetchesBetweenFullScans {
				fromFront, sinceFront = false, 0
			} else {
				req.after = lastKey
				sinceFront++
			}
			inFlight++
			reserved += free
			wantFetch = false
			if p.onFetchRequest != nil {
				p.onFetchRequest(req)
			}
			fetchReqs <- req
			free = 0
		}
		// Workers take ready jobs themselves and wake the loop only when
		// their finishing may make a fetch due: with fetchOnFinish, at
		// every finish; when a fetch is wanted but no slot is free, once
		// one is; while the queue drains, when a first slot frees up (to
		// start drainTimer) and when threshold slots are free, unless its
		// fetch is in flight (its return wakes the loop). (wakeAt is never
		// already reached here: free < k.)
		wakeAt := -1
		if (wantFetch || drainMode && inFlight == 0) && retryC == nil && inFlight < maxFetchesInFlight && !p.Paused() &&
			ctx.Err() == nil && p.cfg.WorkCtx.Err() == nil {
			k := 1
			if !wantFetch && drainArmed {
				k = threshold
			}
			if free < k {
				wakeAt = capacity - reserved - k
			}
		}
		p.mu.Lock()
		p.wakeAt, p.wakeOnFinish = wakeAt, fetchOnFinish
		due := wakeAt >= 0 && p.busy+p.readyLen() <= wakeAt || fetchOnFinish && p.finishes != finishesSeen
		p.mu.Unlock()
		if due {
			p.signal()
		}

		select {
		case <-ctx.Done():
			p.setHold(true)
			// Jobs a fetch in flight locks are running in the database:
			// start them, then wait for all.
			// (Their slots were reserved; those beyond the workers were
			// meant for the buffer, and go back to the table with it.
			// When the work context has ended, StopAndCancel, none would
			// run but to be interrupted: they all go back.)
			for ; inFlight > 0; inFlight-- {
				take((<-p.fetched).jobs, p.cfg.WorkCtx.Err() == nil)
			}
			p.returnBuffered(ctx, "the producer is stopping", false)
			p.drain()
			return
		case r := <-p.fetched:
			handle(r)
		case <-p.wake:
			// Jobs finished (workers took the ready ones themselves).
			if fetchOnFinish {
				p.mu.Lock()
				n := p.finishes
				p.mu.Unlock()
				if n != finishesSeen {
					fetchOnFinish, wantFetch = false, true
				}
			}
		case <-p.inserted:
			wantFetch = true
			if trailing == nil {
				trailing = time.NewTimer(p.cfg.FetchCooldown)
				trailingC = trailing.C
			}
		case <-trailingC:
			trailing, trailingC = nil, nil
			wantFetch = true
		case <-retryC:
			retryC = nil
		case <-drainTimer.C:
			drainArmed, drainDue = false, true
		case <-hintTimer.C:
			wantFetch = true
		case <-bufTimer.C:
			bufArmed = false
			oldest, waiting := p.oldestReady()
			if waiting == 0 {
				break
			}
			if wait := time.Since(oldest); wait < p.staleAfter {
				bufTimer.Reset(p.staleAfter - wait)
				bufArmed = true
				break
			}
			// The buffer's jobs wait longer than the run times it was
			// sized from promised: let other clients have them.
			p.cfg.Logger.Info("producer: buffered jobs waited too long; returning them and buffering no more for a while",
				"queue", p.cfg.Queue, "jobs", waiting, "waited", p.staleAfter, "buffering_off_for", bufferOffAfterStale)
			p.returnBuffered(ctx, "they waited too long", true)
			p.bufferOff = time.Now().Add(bufferOffAfterStale)
			p.mu.Lock()
			p.meanRun = 0
			p.mu.Unlock()
			if _, waiting := p.oldestReady(); waiting > 0 { // the return failed: try again later
				bufTimer.Reset(p.staleAfter)
				bufArmed = true
			}
		case <-poll.C:
			wantFetch = true
			poll.Reset(jitter(p.cfg.FetchPollInterval))
		case msg := <-p.control:
			switch msg.Action {
			case "pause":
				pause()
			case "resume":
				p.setPaused(false)
				p.startReady(p.canStart(ctx))
				wantFetch = true
			case "metadata_changed":
				p.setMetadata(msg.Metadata)
			}
		case <-p.listenerChanged:
			// The listener went down or came back: either way
			// notifications may have been missed. Fetch and read the
			// control state at once, then poll the control state at the
			// interval that fits (2 s without a listener, 1 min with one)
			// rather than finishing the interval of the old state.
			wantFetch = true
			p.pollControl(ctx, pause)
			controlPoll.Reset(p.controlPollInterval())
		case <-controlPoll.C:
			p.pollControl(ctx, pause)
			controlPoll.Reset(p.controlPollInterval())
		case <-reportTicker.C:
			if _, err := p.exec.QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: p.cfg.Schema, Name: p.cfg.Queue}); err != nil {
				p.cfg.Logger.Warn("producer: reporting queue failed", "queue", p.cfg.Queue, "error", err)
			}
		}
	}
}

// fetchTimeout bounds one fetch.
const fetchTimeout = 30 * time.Second

// maxFetchesInFlight bounds concurrent fetches of one producer: a
// draining fetch and one asked for (a draining queue has at most one of
// its own in flight; see drainSlot in run). More only make the statements
// contend for the same index pages.
const maxFetchesInFlight = 2

// fetchesBetweenFullScans: while a queue drains, at most this many fetches
// in a row continue after the last job taken before one scans the queue
// from the front again.
const fetchesBetweenFullScans = 8

// fetchRequest asks a fetcher for up to limit jobs.
type fetchRequest struct {
	limit int
	// after, when set, continues after the last job the previous fetch
	// took. Without a vacuum, the front of the queue's index range holds
	// an entry for every job taken so far, and a scan from the front walks
	// them all again on every fetch: draining a million jobs in fetches of
	// a few hundred that walk is most of the cost. A fetch asked for by a
	// notification, a poll or a resume, one after a continued fetch that
	// came up short, and every fetchesBetweenFullScans-th one scan from the
	// front, so a job inserted (or come due) ahead of the cursor waits for
	// at most that many fetches of a draining queue.
	after *driver.JobFetchKey
}

// fetchResult is what a fetcher hands back to the loop.
type fetchResult struct {
	jobs      []*millracetype.JobRow
	limited   bool          // FetchResult.Limited
	next      time.Duration // FetchResult.NextFetch
	err       error
	asked     int
	continued bool // the fetch continued after a cursor
}

// fetch asks the fetch strategy for up to req.Max jobs (locked, marked
// running).
//
// The fetch does not use the service context: a Stop arriving while the
// statement runs must not abandon jobs the database has already marked
// running. They are started like any others and drained by the stop.
//
// A fetch that failed after its answer arrived (the connection died before
// its transaction's end was confirmed) may have committed, or rolled back
// (its jobs are available again, maybe fetched elsewhere already): its
// jobs are started only once confirm has found them running this fetch.
func (p *Producer) fetch(ctx context.Context, req *FetchRequest) (FetchResult, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	res, err := p.cfg.Fetch.Fetch(fctx, p.exec, req)
	if err != nil && len(res.Jobs) > 0 {
		res.Jobs = p.confirm(res.Jobs, err)
	}
	return res, err
}

// confirmAttempts and confirmBackoff bound confirm's reads.
const (
	confirmAttempts = 5
	confirmBackoff  = 100 * time.Millisecond
)

// confirm returns those of jobs, returned by a fetch that failed, that the
// database has running as that fetch marked them (same attempt, attempted
// at the same instant, by this client). When the rows cannot be read, it
// returns none: jobs the fetch did commit are then running under this
// client without it, and its liveness orphan check rescues them.
func (p *Producer) confirm(jobs []*millracetype.JobRow, fetchErr error) []*millracetype.JobRow {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	wait := confirmBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		rows, err := p.exec.JobGetByIDMany(ctx, &driver.JobGetByIDManyParams{Schema: p.cfg.Schema, IDs: ids})
		cancel()
		if err == nil {
			now := make(map[int64]*millracetype.JobRow, len(rows))
			for _, r := range rows {
				now[r.ID] = r
			}
			var kept []*millracetype.JobRow
			for _, j := range jobs {
				if r := now[j.ID]; r != nil && r.State == millracetype.JobStateRunning && r.Attempt == j.Attempt &&
					r.AttemptedAt != nil && j.AttemptedAt != nil && r.AttemptedAt.Equal(*j.AttemptedAt) &&
					len(r.AttemptedBy) > 0 && r.AttemptedBy[len(r.AttemptedBy)-1] == p.cfg.ClientID {
					kept = append(kept, j)
				}
			}
			if len(kept) < len(jobs) {
				p.cfg.Logger.Warn("producer: a fetch failed after its answer arrived and did not commit; its jobs are not started",
					"queue", p.cfg.Queue, "jobs", len(jobs)-len(kept), "committed", len(kept), "error", fetchErr)
			}
			return kept
		}
		if attempt == confirmAttempts {
			p.cfg.Logger.Error("producer: cannot tell whether a failed fetch committed; its jobs are not started (if it did, the orphan check rescues them)",
				"queue", p.cfg.Queue, "jobs", len(jobs), "fetch_error", fetchErr, "error", err)
			return nil
		}
		time.Sleep(wait) // a backoff while the database is unreachable
		wait *= 2
	}
}

// newCancelLocked returns a Cancel for job id: a spare one, or a new one
// (p.mu is held).
func (p *Producer) newCancelLocked(id int64) *Cancel {
	var cancel *Cancel
	if n := len(p.spare); n > 0 {
		cancel, p.spare = p.spare[n-1], p.spare[:n-1]
	} else {
		cancel = new(Cancel)
	}
	cancel.mu.Lock()
	cancel.id = id
	cancel.mu.Unlock()
	return cancel
}

// popLocked takes the oldest ready job for a worker and counts it busy
// (p.mu is held; a job must be ready).
func (p *Producer) popLocked() task {
	b := &p.ready[p.head]
	t := b.task
	*b = bufJob{}
	if p.head++; p.head == len(p.ready) {
		p.ready, p.head = p.ready[:0], 0
	}
	p.busy++
	if p.cfg.FetchBuffer > 0 {
		if p.sampled++; p.sampled%runSample == 0 {
			t.cancel.started = time.Now()
		} else {
			t.cancel.started = time.Time{}
		}
	}
	return t
}

// startReady hands ready jobs, oldest first, to idle workers, and to new
// ones while fewer than MaxWorkers exist; starting says whether jobs may
// start now (the run loop's judgement: workers themselves start none
// while the producer holds them, see hold).
func (p *Producer) startReady(starting bool) {
	if !starting {
		return
	}
	tasks, spawns := p.tasks[:0], p.spawns[:0]
	p.mu.Lock()
	for p.readyLen() > 0 && p.busy < p.cfg.MaxWorkers {
		if p.idle > 0 {
			p.idle--
			tasks = append(tasks, p.popLocked())
		} else if p.nWorkers < p.cfg.MaxWorkers {
			p.nWorkers++
			spawns = append(spawns, p.popLocked())
		} else {
			break // unreachable: busy + idle == nWorkers
		}
	}
	p.mu.Unlock()
	for _, t := range tasks {
		p.work <- t // never blocks: one job for each worker counted idle
	}
	for _, t := range spawns {
		p.workers.Add(1)
		go p.worker(t)
	}
	clear(tasks)
	clear(spawns)
	p.tasks, p.spawns = tasks[:0], spawns[:0]
}

// worker runs t, then every job handed to it or ready when it finishes one,
// until drain closes p.work. There are at most MaxWorkers workers
// (nWorkers counts them).
func (p *Producer) worker(t task) {
	defer p.workers.Done()
	var reserve [workerStackReserve]byte
	p.workLoop(t, &reserve)
}

// workerStackReserve is stack a worker keeps in use while it waits for
// its next job. The garbage collector halves a goroutine's stack when
// less than a quarter of it is in use; an idle worker uses almost none,
// so without the reserve every collection shrank the workers' stacks and
// the next job (decoding its args is deep enough) grew them back, copying
// them each time: about a tenth of the client's CPU in a burn-down of
// no-op jobs. With 2 kB in use, an 8 kB stack is never shrunk. (Measured
// in bench burndown: 36.2 and 36.3 µs of client CPU per job before, 30.8
// and 32.3 after; a 4 kB reserve did no better.)
const workerStackReserve = 2048

// workLoop is the worker's loop, run in a frame below the reserve. It
// must not be inlined into worker, or the reserve could be dropped.
//
//go:noinline
func (p *Producer) workLoop(t task, reserve *[workerStackReserve]byte) {
	reserve[0] = 1 // the reserve is used, so it stays in worker's frame
	for {
		p.runTask(t)
		var ok bool
		if t, ok = p.next(t); !ok {
			return
		}
	}
}

// runTask runs t's job in the worker's goroutine: with WorkBound, which
// makes the job's context, else in a context made here.
func (p *Producer) runTask(t task) {
	if p.cfg.WorkBound != nil {
		p.cfg.WorkBound(p.cfg.WorkCtx, t.job, t.cancel)
		return
	}
	ctx, cancel := context.WithCancelCause(p.cfg.WorkCtx)
	t.cancel.Bind(cancelFunc(cancel))
	p.cfg.Work(ctx, t.job)
}

// next records that done's job has finished (in its worker's goroutine)
// and returns the worker's next job: the oldest ready one, unless jobs
// may not start now, else the one the run loop hands it once it is idle.
// It returns false when the producer has stopped.
func (p *Producer) next(done task) (task, bool) {
	var ran time.Duration
	if !done.cancel.started.IsZero() {
		ran = max(time.Since(done.cancel.started), 1)
	}
	// Release the context's resources; the Cancel serves another job.
	// (A cancel finding it still in running now is a no-op: see cancelJob.)
	done.cancel.cancelJob(done.job.ID, context.Canceled, true)
	if p.finished != nil {
		p.finished.JobFinished(done.job)
	}
	p.mu.Lock()
	p.busy--
	p.finishes++
	delete(p.running, done.job.ID)
	p.spare = append(p.spare, done.cancel)
	if ran > 0 {
		// The mean run time sizes the buffer: a moving mean over about
		// the last 16 jobs measured.
		if p.meanRun == 0 {
			p.meanRun = ran
		} else {
			p.meanRun = max(p.meanRun+(ran-p.meanRun)/16, 1)
		}
	}
	wake := p.wakeOnFinish || p.busy+p.readyLen() <= p.wakeAt
	if p.readyLen() > 0 && !p.hold && !p.paused && p.cfg.WorkCtx.Err() == nil {
		t := p.popLocked()
		p.mu.Unlock()
		if wake {
			p.signal()
		}
		return t, true
	}
	p.idle++
	p.mu.Unlock()
	if wake {
		p.signal()
	}
	t, ok := <-p.work
	return t, ok
}

// signal wakes the run loop (see wakeAt).
func (p *Producer) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // a wake is pending already
	}
}

// setHold sets p.hold.
func (p *Producer) setHold(hold bool) {
	p.mu.Lock()
	p.hold = hold
	p.mu.Unlock()
}

// drain waits for every running job while still honouring cancels; no job
// is ready any more.
func (p *Producer) drain() {
	for {
		p.mu.Lock()
		p.wakeAt, p.wakeOnFinish = 0, false
		busy := p.busy
		p.mu.Unlock()
		if busy == 0 {
			break
		}
		select {
		case <-p.wake:
		case <-p.control:
			// Pause and resume no longer matter; cancels arrive through
			// CancelJob directly.
		}
	}
	// Every job is done: the idle workers wait on p.work.
	close(p.work)
	p.workers.Wait()
}

// pollControl reads what a lost notification may have missed: the queue's
// paused state and cancels of jobs running here.
func (p *Producer) pollControl(ctx context.Context, pause func()) {
	queue, err := p.exec.QueueGet(ctx, &driver.QueueGetParams{Schema: p.cfg.Schema, Name: p.cfg.Queue})
	switch {
	case errors.Is(err, millracetype.ErrNotFound):
		// Deleted by the queue cleaner while idle: register it again.
		if _, err := p.exec.QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: p.cfg.Schema, Name: p.cfg.Queue}); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("producer: registering queue failed", "queue", p.cfg.Queue, "error", err)
		}
	case err != nil:
		if ctx.Err() == nil {
			p.cfg.Logger.Warn("producer: reading queue settings failed", "queue", p.cfg.Queue, "error", err)
		}
	default:
		if queue.PausedAt != nil {
			pause()
		} else {
			p.setPaused(false)
		}
		p.setMetadata(queue.Metadata)
	}

	p.mu.Lock()
	ids := make([]int64, 0, len(p.running))
	for id := range p.running {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	jobs, err := p.exec.JobGetByIDMany(ctx, &driver.JobGetByIDManyParams{Schema: p.cfg.Schema, IDs: ids})
	if err != nil {
		if ctx.Err() == nil {
			p.cfg.Logger.Warn("producer: reading running jobs failed", "queue", p.cfg.Queue, "error", err)
		}
		return
	}
	for _, job := range jobs {
		if millracetype.MetadataHasKey(job.Metadata, "cancel_attempted_at") {
			p.CancelJob(job.ID)
		}
	}
}

// Queue returns the producer's queue name.
func (p *Producer) Queue() string { return p.cfg.Queue }

// canStart reports whether a job may be handed to a worker now: not while
// the producer stops, the work context has ended, or the queue is paused.
func (p *Producer) canStart(ctx context.Context) bool {
	return ctx.Err() == nil && p.cfg.WorkCtx.Err() == nil && !p.Paused()
}

// bufferSize is how many jobs the fetch buffer may hold now, at the jobs'
// mean run time meanRun (see "The fetch buffer" in the package doc).
func (p *Producer) bufferSize(meanRun time.Duration) int {
	if p.cfg.FetchBuffer == 0 || p.allowBuffer == nil || meanRun <= 0 {
		return 0
	}
	if !p.bufferOff.IsZero() {
		if time.Now().Before(p.bufferOff) {
			return 0
		}
		p.bufferOff = time.Time{}
	}
	if !p.allowBuffer.BufferAllowed() {
		return 0
	}
	n := int64(p.cfg.MaxWorkers) * int64(bufferTargetWait) / int64(meanRun)
	return int(min(n, int64(p.cfg.FetchBuffer)))
}

// readyLen is how many jobs are ready (p.mu is held).
func (p *Producer) readyLen() int { return len(p.ready) - p.head }

// oldestReady returns when the oldest ready job was fetched and how many
// are ready.
func (p *Producer) oldestReady() (time.Time, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readyLen() == 0 {
		return time.Time{}, 0
	}
	return p.ready[p.head].at, p.readyLen()
}

// takeAll registers fetched jobs as ready (under one lock) and hands as
// many as workers are free to them when starting says jobs may start; the
// others wait in the buffer. It reports whether any wait.
func (p *Producer) takeAll(jobs []*millracetype.JobRow, starting bool) bool {
	if len(jobs) == 0 {
		return false
	}
	now := time.Now()
	p.mu.Lock()
	for _, job := range jobs {
		cancel := p.newCancelLocked(job.ID)
		p.running[job.ID] = cancel
		p.ready = append(p.ready, bufJob{task: task{cancel, job}, at: now})
	}
	p.mu.Unlock()
	p.startReady(starting)
	_, waiting := p.oldestReady()
	return waiting > 0
}

// returnBuffered gives the ready jobs back to the table
// (driver.Executor.JobReturnUnstarted) and forgets them. When the
// statement fails, keep leaves them ready (they start later, or are
// returned again); otherwise they are forgotten all the same, left running
// under this client, and the heartbeat rescue returns them once this
// client has stopped.
func (p *Producer) returnBuffered(ctx context.Context, why string, keep bool) {
	p.mu.Lock()
	jobs := slices.Clone(p.ready[p.head:])
	clear(p.ready)
	p.ready, p.head = p.ready[:0], 0
	p.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	ids := make([]int64, len(jobs))
	attempts := make([]int, len(jobs))
	for i, b := range jobs {
		ids[i], attempts[i] = b.job.ID, b.job.Attempt
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bufferReturnTimeout)
	returned, err := p.exec.JobReturnUnstarted(rctx, &driver.JobReturnUnstartedParams{Schema: p.cfg.Schema,
		ClientID: p.cfg.ClientID, IDs: ids, Attempts: attempts, NotifyQueue: p.cfg.Queue})
	cancel()
	switch {
	case err != nil && keep:
		p.cfg.Logger.Warn("producer: returning buffered jobs failed; keeping them", "queue", p.cfg.Queue,
			"jobs", len(jobs), "why", why, "error", err)
		// Only the run loop (here) adds ready jobs: they are still first.
		p.mu.Lock()
		p.ready = append(jobs, p.ready[p.head:]...)
		p.head = 0
		p.mu.Unlock()
		return
	case err != nil:
		p.cfg.Logger.Error("producer: returning buffered jobs failed; they stay running under this client until rescued",
			"queue", p.cfg.Queue, "jobs", len(jobs), "why", why, "error", err)
	default:
		p.cfg.Logger.Debug("producer: returned buffered jobs", "queue", p.cfg.Queue, "jobs", len(returned), "why", why,
			"moved_on", len(jobs)-len(returned))
	}
	p.mu.Lock()
	for _, b := range jobs {
		delete(p.running, b.job.ID)
	}
	p.mu.Unlock()
	for _, b := range jobs {
		b.cancel.cancelJob(b.job.ID, context.Canceled, true)
		if p.finished != nil {
			p.finished.JobFinished(b.job)
		}
	}
	p.mu.Lock()
	for _, b := range jobs {
		p.spare = append(p.spare, b.cancel)
	}
	p.mu.Unlock()
}
