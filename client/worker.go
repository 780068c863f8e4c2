package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// Job is a job handed to a worker: the stored row and its decoded args.
type Job[T JobArgs] struct {
	*millracetype.JobRow
	// Args are the decoded args.
	Args T
}

// Worker works jobs of one args type.
type Worker[T JobArgs] interface {
	// Work runs the job. Returning nil completes it; an error retries it
	// (or discards it once out of attempts); JobCancel and JobSnooze
	// cancel or snooze it. ctx carries the job's timeout and is cancelled
	// when the job is cancelled or the client stops with StopAndCancel.
	Work(ctx context.Context, job *Job[T]) error
}

// WorkerWithTimeout is implemented by workers that choose their jobs'
// timeouts: a positive duration, or -1 for none; 0 means Config.JobTimeout.
type WorkerWithTimeout[T JobArgs] interface {
	Timeout(job *Job[T]) time.Duration
}

// WorkerWithNextRetry is implemented by workers that choose when a failed
// job runs again; a zero or past time means the client's RetryPolicy.
type WorkerWithNextRetry[T JobArgs] interface {
	NextRetry(job *Job[T]) time.Time
}

// WorkerDefaults can be embedded in a worker to get the default Timeout and
// NextRetry.
type WorkerDefaults[T JobArgs] struct{}

// Timeout returns 0: use Config.JobTimeout.
func (WorkerDefaults[T]) Timeout(*Job[T]) time.Duration { return 0 }

// NextRetry returns the zero time: use the client's RetryPolicy.
func (WorkerDefaults[T]) NextRetry(*Job[T]) time.Time { return time.Time{} }

// WorkFunc makes a Worker of a function.
func WorkFunc[T JobArgs](fn func(ctx context.Context, job *Job[T]) error) Worker[T] {
	return &funcWorker[T]{fn: fn}
}

type funcWorker[T JobArgs] struct {
	WorkerDefaults[T]
	fn func(ctx context.Context, job *Job[T]) error
}

func (w *funcWorker[T]) Work(ctx context.Context, job *Job[T]) error { return w.fn(ctx, job) }

// Workers is the set of workers a client runs, one per kind. Make it with
// NewWorkers and fill it with AddWorker.
type Workers struct {
	mu     sync.Mutex
	byKind map[string]*workerInfo
	err    error // the first AddWorker error, reported by New
	// lookups is a copy of byKind made at each registration, for lookup:
	// every job looks its kind up, and reads it without a lock.
	lookups atomic.Pointer[map[string]*workerInfo]
}

// NewWorkers returns an empty set of workers.
func NewWorkers() *Workers { return &Workers{byKind: map[string]*workerInfo{}} }

// workerInfo is what the client needs of a worker, without its type.
type workerInfo struct {
	kind string
	// unit decodes a row for this worker.
	unit func(row *millracetype.JobRow) (workUnit, error)
	// ephemeral: the kind's jobs are deleted once completed
	// (JobArgsWithEphemeral).
	ephemeral bool
	// argsType is the worker's args type, for checking the args keys a
	// concurrency limit partitions by.
	argsType reflect.Type
}

// workUnit is one decoded job ready to run, its type erased for the
// executor.
type workUnit = jobexec.Unit

var kindRE = regexp.MustCompile(`\A[\w][\w\-\[\]<>\/.·:+]+\z`)

// ErrDuplicateKind is returned (wrapped) when two workers claim one kind.
var ErrDuplicateKind = errors.New("a worker for this kind is already registered")

// AddWorker registers a worker for its args type's kind. It never panics:
// an invalid worker or a duplicate kind is remembered and reported by
// client.New (use AddWorkerSafely to get the error at once).
func AddWorker[T JobArgs](workers *Workers, worker Worker[T]) {
	if err := AddWorkerSafely(workers, worker); err != nil && workers != nil {
		workers.mu.Lock()
		if workers.err == nil {
			workers.err = err
		}
		workers.mu.Unlock()
	}
}

// AddWorkerSafely registers a worker, returning an error for a nil worker,
// an invalid or empty kind, or a kind already registered.
func AddWorkerSafely[T JobArgs](workers *Workers, worker Worker[T]) error {
	var zero T
	return addWorker(workers, zero, worker)
}

// addWorker registers a worker for the kind of the given args value (the
// zero value for AddWorker, the caller's for AddWorkerArgs).
func addWorker[T JobArgs](workers *Workers, zero T, worker Worker[T]) error {
	if workers == nil {
		return errors.New("add worker: workers is nil (make it with client.NewWorkers)")
	}
	if worker == nil {
		return errors.New("add worker: worker is nil")
	}
	kind, err := kindOf(zero)
	if err != nil {
		return fmt.Errorf("add worker for %T: %w", zero, err)
	}
	info := &workerInfo{kind: kind, argsType: reflect.TypeOf(zero), unit: func(row *millracetype.JobRow) (_ workUnit, err error) {
		// One allocation holds the unit, the Job and its args, which are
		// decoded in place.
		u := &typedUnit[T]{worker: worker}
		u.jobValue.JobRow = row
		args := &u.jobValue.Args
		// An args type's own UnmarshalJSON may panic on bad input: that
		// is this job's decode error, not a crash of the client.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("decode args of job %d (kind %q) into %T: panic: %v", row.ID, row.Kind, *args, r)
			}
		}()
		if err := decodeArgs(row.Args, args); err != nil {
			return nil, fmt.Errorf("decode args of job %d (kind %q) into %T: %w", row.ID, row.Kind, *args, err)
		}
		setRowKind(args, row.Kind)
		u.job = &u.jobValue
		return u, nil
	}}
	// A kind's Hooks, too, must work on the zero value and be valid
	// (hooks.go).
	if _, err := argsHooks(zero); err != nil {
		return fmt.Errorf("add worker for %T: %w", zero, err)
	}
	// A kind's Ephemeral setting is read once, here (ephemeral.go).
	if info.ephemeral, err = argsEphemeral(zero); err != nil {
		return fmt.Errorf("add worker for %T: %w", zero, err)
	}
	// A kind's InsertOpts must be callable on the zero value; find out now
	// rather than at the first insert. Replace options there need the
	// kind's own unique options (an insert's could not always add them).
	if withOpts, ok := any(zero).(JobArgsWithInsertOpts); ok {
		opts, err := safeInsertOpts(withOpts)
		if err != nil {
			return fmt.Errorf("add worker for %T: %w", zero, err)
		}
		if err := checkReplace(opts.Replace, isZeroUnique(opts.UniqueOpts), opts.ScheduledAt, opts.Pending); err != nil {
			return fmt.Errorf("add worker for %T: InsertOpts: %w: %w", zero, ErrInvalidArgs, err)
		}
	}
	workers.mu.Lock()
	defer workers.mu.Unlock()
	if workers.byKind == nil {
		workers.byKind = map[string]*workerInfo{}
	}
	if _, dup := workers.byKind[kind]; dup {
		return fmt.Errorf("add worker for %T: kind %q: %w", zero, kind, ErrDuplicateKind)
	}
	workers.byKind[kind] = info
	lookups := maps.Clone(workers.byKind)
	workers.lookups.Store(&lookups)
	return nil
}

// kindOf calls Kind on an args value, turning a panic (a nil pointer
// receiver, say) into an error, and validates the result.
func kindOf(args JobArgs) (kind string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Kind() panicked: %v (args types should have value receivers)", r)
		}
	}()
	if args == nil {
		return "", errors.New("args is nil")
	}
	kind = args.Kind()
	if kind == "" {
		return "", errors.New("Kind() returned an empty string")
	}
	if len(kind) > 127 || !kindRE.MatchString(kind) {
		return "", fmt.Errorf("kind %q must match %s and be at most 127 characters", kind, kindRE)
	}
	return kind, nil
}

func safeInsertOpts(args JobArgsWithInsertOpts) (opts InsertOpts, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("InsertOpts() panicked: %v", r)
		}
	}()
	return args.InsertOpts(), nil
}

func (w *Workers) lookup(kind string) *workerInfo {
	if m := w.lookups.Load(); m != nil {
		return (*m)[kind]
	}
	return nil
}

func (w *Workers) kinds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	kinds := make([]string, 0, len(w.byKind))
	for k := range w.byKind {
		kinds = append(kinds, k)
	}
	return kinds
}

type typedUnit[T JobArgs] struct {
	worker Worker[T]
	job    *Job[T] // &jobValue
	// jobValue is the job handed to the worker, allocated with the unit.
	jobValue Job[T]
}

func (u *typedUnit[T]) Work(ctx context.Context) error { return u.worker.Work(ctx, u.job) }

func (u *typedUnit[T]) Timeout() time.Duration {
	if w, ok := u.worker.(WorkerWithTimeout[T]); ok {
		return w.Timeout(u.job)
	}
	return 0
}

func (u *typedUnit[T]) NextRetry() time.Time {
	if w, ok := u.worker.(WorkerWithNextRetry[T]); ok {
		return w.NextRetry(u.job)
	}
	return time.Time{}
}
