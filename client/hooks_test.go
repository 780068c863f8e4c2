package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// stepHook implements every step and records each call as "step:name".
type stepHook struct {
	HookDefaults
	name string
	rec  *recorder
}

func (h *stepHook) InsertBegin(ctx context.Context, p *JobInsertParams) error {
	h.rec.add("insert:" + h.name)
	return nil
}

func (h *stepHook) WorkBegin(ctx context.Context, job *millracetype.JobRow) error {
	h.rec.add("begin:" + h.name)
	return nil
}

func (h *stepHook) WorkEnd(ctx context.Context, job *millracetype.JobRow, err error) error {
	h.rec.add("end:" + h.name)
	return err
}

// orderArgs gets hooks of its own; its recorder is package-level because
// Hooks is called on the zero value. Only TestHooksOrder uses it.
type orderArgs struct {
	N int `json:"n"`
}

var (
	orderRec        = &recorder{}
	orderHooksCalls atomic.Int32
)

func (orderArgs) Kind() string { return "hook_order" }

func (orderArgs) Hooks() []Hook {
	orderHooksCalls.Add(1)
	return []Hook{&stepHook{name: "kind", rec: orderRec}}
}

// orderWorker has middleware of its own.
type orderWorker struct {
	WorkerDefaults[orderArgs]
	rec *recorder
	mw  []WorkerMiddleware
}

func (w *orderWorker) Work(ctx context.Context, job *Job[orderArgs]) error {
	w.rec.add("work")
	return nil
}

func (w *orderWorker) Middleware(job *Job[orderArgs]) []WorkerMiddleware { return w.mw }

func wrapMiddleware(name string, rec *recorder) WorkerMiddleware {
	return WorkerMiddlewareFunc(func(ctx context.Context, job *millracetype.JobRow, next func(context.Context) error) error {
		rec.add(name + ">")
		err := next(ctx)
		rec.add(name + "<")
		return err
	})
}

// TestHooksOrder: at each step global hooks run in their order, then the
// kind's; insert hooks run inside insert middleware and see its changes;
// work hooks run inside the global and then the worker's middleware; a
// hook's changes to an insert are stored; a kind's Hooks is called once
// per client (plus once by AddWorker), not per job.
func TestHooksOrder(t *testing.T) {
	// Not parallel with itself: orderRec is shared by the kind's hooks.
	ctx := context.Background()
	db := testfixture.New(t)
	rec := orderRec
	rec.mu.Lock()
	rec.steps = nil // a previous run's (-count)
	rec.mu.Unlock()
	insertMW := JobInsertMiddlewareFunc(func(ctx context.Context, params []*JobInsertParams, next func(context.Context) ([]*InsertResult, error)) ([]*InsertResult, error) {
		rec.add("insert_mw>")
		for _, p := range params {
			p.Priority = 3
		}
		res, err := next(ctx)
		rec.add("insert_mw<")
		return res, err
	})
	var sawPriority, sawArgs atomic.Int32
	editor := HookInsertBeginFunc(func(ctx context.Context, p *JobInsertParams) error {
		sawPriority.Store(int32(p.Priority))
		if a, ok := p.Args.(orderArgs); ok {
			sawArgs.Store(int32(a.N))
		}
		p.Tags = append(p.Tags, "hooked")
		p.Metadata = []byte(`{"tenant": "acme"}`)
		return nil
	})
	endOnly := HookWorkEndFunc(func(ctx context.Context, job *millracetype.JobRow, err error) error {
		rec.add("end:end_only")
		return err
	})
	workers := NewWorkers()
	callsBefore := orderHooksCalls.Load()
	AddWorker(workers, &orderWorker{rec: rec, mw: []WorkerMiddleware{wrapMiddleware("own_a", rec), wrapMiddleware("own_b", rec)}})
	done := make(chan struct{}, 10)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers,
		Hooks:               []Hook{&stepHook{name: "g1", rec: rec}, editor, endOnly},
		JobInsertMiddleware: []JobInsertMiddleware{insertMW},
		WorkerMiddleware: []WorkerMiddleware{wrapMiddleware("global", rec),
			WorkerMiddlewareFunc(func(ctx context.Context, job *millracetype.JobRow, next func(context.Context) error) error {
				err := next(ctx)
				done <- struct{}{}
				return err
			})},
	})
	res, err := c.Insert(ctx, orderArgs{N: 41}, &InsertOpts{Tags: []string{"mine"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.get(), []string{"insert_mw>", "insert:g1", "insert:kind", "insert_mw<"}; !slices.Equal(got, want) {
		t.Errorf("insert steps %v, want %v", got, want)
	}
	if sawPriority.Load() != 3 || sawArgs.Load() != 41 {
		t.Errorf("insert hook saw priority %d and args N %d; want the middleware's 3 and 41", sawPriority.Load(), sawArgs.Load())
	}
	stored := db.Job(t, res.Job.ID)
	if !slices.Equal(stored.Tags, []string{"mine", "hooked"}) || !sameJSON(t, stored.Metadata, []byte(`{"tenant":"acme"}`)) || stored.Priority != 3 {
		t.Errorf("stored job: tags %v metadata %s priority %d", stored.Tags, stored.Metadata, stored.Priority)
	}

	rec.mu.Lock()
	rec.steps = nil
	rec.mu.Unlock()
	start(t, c)
	recv(t, done, "the job to be worked")
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	want := []string{"global>", "own_a>", "own_b>", "begin:g1", "begin:kind", "work", "end:g1", "end:end_only", "end:kind",
		"own_b<", "own_a<", "global<"}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("work steps %v, want %v", got, want)
	}

	// More jobs: Hooks is not called again.
	for i := range 3 {
		if _, err := c.Insert(ctx, orderArgs{N: i}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		recv(t, done, "the jobs to be worked")
	}
	if n := orderHooksCalls.Load() - callsBefore; n != 2 {
		t.Errorf("Hooks called %d times; want 2 (AddWorker, then once for the client)", n)
	}
}

var errRejected = errors.New("rejected by hook")

// TestInsertBeginHookRejects: a hook's error, a panic, or params a hook
// made invalid fail the whole insert with a wrapped, specific error, for
// every insert method, and write nothing.
func TestInsertBeginHookRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	hook := HookInsertBeginFunc(func(ctx context.Context, p *JobInsertParams) error {
		switch p.Args.(noopArgs).N {
		case 13:
			return errRejected
		case 66:
			panic("insert hook blew up")
		case 7:
			p.Queue = "Not A Queue"
		case 8:
			p.Priority = 9
		case 9:
			p.Metadata = []byte("not json")
		case 10:
			p.State = millracetype.JobStateCompleted
		case 11:
			p.Tags = append(p.Tags, "bad,tag")
		}
		p.Tags = append(p.Tags, "seen")
		return nil
	})
	c := newClient(t, db, &Config{Hooks: []Hook{hook}})
	total := func() int {
		n := 0
		for _, v := range db.CountByState(t) {
			n += v
		}
		return n
	}
	batch := func(bad int) []InsertManyParams {
		return []InsertManyParams{{Args: noopArgs{N: 1}}, {Args: noopArgs{N: bad}}, {Args: noopArgs{N: 2}}}
	}
	type inserter struct {
		name string
		fn   func(bad int) error
	}
	inserters := []inserter{
		{"Insert", func(bad int) error { _, err := c.Insert(ctx, noopArgs{N: bad}, nil); return err }},
		{"InsertMany", func(bad int) error { _, err := c.InsertMany(ctx, batch(bad)); return err }},
		{"InsertManyFast", func(bad int) error { _, err := c.InsertManyFast(ctx, batch(bad)); return err }},
		{"InsertManyTx", func(bad int) error {
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.InsertManyTx(ctx, tx, batch(bad))
			if cerr := tx.Commit(ctx); cerr != nil {
				t.Fatal(cerr)
			}
			return err
		}},
	}
	for _, ins := range inserters {
		for _, tc := range []struct {
			bad  int
			is   error
			text string
		}{
			{13, errRejected, "rejected by hook"},
			{66, ErrHookPanic, "insert hook blew up"},
			{7, ErrInvalidArgs, `queue name "Not A Queue"`},
			{8, ErrInvalidArgs, "priority 9"},
			{9, ErrInvalidArgs, "metadata"},
			{10, ErrInvalidArgs, `state "completed"`},
			{11, ErrInvalidArgs, `tag "bad,tag"`},
		} {
			err := ins.fn(tc.bad)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%s with job %d: %v; want %v mentioning %q", ins.name, tc.bad, err, tc.is, tc.text)
			}
			if ins.name != "Insert" && err != nil && !strings.Contains(err.Error(), "job 1:") {
				t.Errorf("%s with job %d: %v does not name the job", ins.name, tc.bad, err)
			}
			if n := total(); n != 0 {
				t.Fatalf("%s with job %d: %d jobs written", ins.name, tc.bad, n)
			}
		}
	}
	// A good batch goes through with the hook's change.
	res, err := c.InsertMany(ctx, batch(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !slices.Equal(db.Job(t, r.Job.ID).Tags, []string{"seen"}) {
			t.Errorf("job %d tags %v", r.Job.ID, db.Job(t, r.Job.ID).Tags)
		}
	}

	// A panicking insert middleware is an error too, not a crash.
	c2 := newClient(t, db, &Config{JobInsertMiddleware: []JobInsertMiddleware{JobInsertMiddlewareFunc(
		func(context.Context, []*JobInsertParams, func(context.Context) ([]*InsertResult, error)) ([]*InsertResult, error) {
			panic("middleware blew up")
		})}})
	if _, err := c2.Insert(ctx, noopArgs{}, nil); !errors.Is(err, ErrHookPanic) || !strings.Contains(err.Error(), "middleware blew up") {
		t.Errorf("panicking insert middleware: %v", err)
	}
	if n := total(); n != 3 {
		t.Errorf("%d jobs; want the 3 of the good batch", n)
	}
}

type hookModeArgs struct {
	Mode string `json:"mode"`
}

func (hookModeArgs) Kind() string { return "hook_mode" }

// TestWorkHooksOutcomes: a WorkBegin error or panic fails the attempt
// without running Work or the WorkEnd hooks; WorkEnd hooks see Work's error
// in turn and the last one's result decides the outcome.
func TestWorkHooksOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	rec := &recorder{}
	errWork := errors.New("work failed")
	begin := HookWorkBeginFunc(func(ctx context.Context, job *millracetype.JobRow) error {
		var a hookModeArgs
		if err := json.Unmarshal(job.Args, &a); err != nil {
			return err
		}
		switch a.Mode {
		case "begin_error":
			return errors.New("begin refused")
		case "begin_cancel":
			return JobCancel(errors.New("begin cancels"))
		case "begin_panic":
			panic("begin blew up")
		}
		return nil
	})
	mode := func(job *millracetype.JobRow) string {
		var a hookModeArgs
		_ = json.Unmarshal(job.Args, &a)
		return a.Mode
	}
	end1 := HookWorkEndFunc(func(ctx context.Context, job *millracetype.JobRow, err error) error {
		m := mode(job)
		rec.add("end1:" + m)
		switch m {
		case "end_rescue":
			if !errors.Is(err, errWork) {
				return errors.New("end1 did not see the work error")
			}
			return nil
		case "end_fail":
			if err != nil {
				return errors.New("end1 saw an error from a successful Work")
			}
			return errors.New("end says no")
		case "end_chain":
			return wrapErr{err}
		case "end_panic":
			panic("end blew up")
		}
		return err
	})
	end2 := HookWorkEndFunc(func(ctx context.Context, job *millracetype.JobRow, err error) error {
		m := mode(job)
		rec.add("end2:" + m)
		if m == "end_rescue" && err != nil {
			return errors.New("end2 did not get end1's nil")
		}
		if m == "end_chain" && (!errors.Is(err, errWork) || err.Error() != "wrapped: work failed") {
			return errors.New("end2 did not get end1's wrapped error")
		}
		return err
	})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[hookModeArgs]) error {
		rec.add("work:" + job.Args.Mode)
		switch job.Args.Mode {
		case "end_rescue", "end_chain":
			return errWork
		case "work_panic":
			panic("work blew up")
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(4), Workers: workers, Hooks: []Hook{begin, end1, end2}})
	start(t, c)
	for _, tc := range []struct {
		mode       string
		state      millracetype.JobState
		err        string // the recorded error, "" for none
		trace      bool
		worked     bool
		endsCalled bool
	}{
		{"ok", millracetype.JobStateCompleted, "", false, true, true},
		{"begin_error", millracetype.JobStateDiscarded, "begin refused", false, false, false},
		{"begin_cancel", millracetype.JobStateCancelled, "JobCancelError: begin cancels", false, false, false},
		{"begin_panic", millracetype.JobStateDiscarded, "begin blew up", true, false, false},
		{"end_rescue", millracetype.JobStateCompleted, "", false, true, true},
		{"end_fail", millracetype.JobStateDiscarded, "end says no", false, true, true},
		{"end_chain", millracetype.JobStateDiscarded, "wrapped: work failed", false, true, true},
		{"end_panic", millracetype.JobStateDiscarded, "end blew up", true, true, false},
		{"work_panic", millracetype.JobStateDiscarded, "work blew up", true, true, false},
	} {
		res, err := c.Insert(ctx, hookModeArgs{Mode: tc.mode}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		job := waitJob(t, db, res.Job.ID, "finalized", func(j *millracetype.JobRow) bool { return j.State.Finalized() })
		if job.State != tc.state {
			t.Errorf("%s: state %s, want %s (errors %v)", tc.mode, job.State, tc.state, job.Errors)
		}
		switch {
		case tc.err == "" && len(job.Errors) != 0:
			t.Errorf("%s: errors %v, want none", tc.mode, job.Errors)
		case tc.err != "" && (len(job.Errors) != 1 || job.Errors[0].Error != tc.err || (job.Errors[0].Trace != "") != tc.trace):
			t.Errorf("%s: errors %+v, want %q (trace %v)", tc.mode, job.Errors, tc.err, tc.trace)
		}
		steps := rec.get()
		if worked := slices.Contains(steps, "work:"+tc.mode); worked != tc.worked {
			t.Errorf("%s: Work ran %v, want %v", tc.mode, worked, tc.worked)
		}
		if ended := slices.Contains(steps, "end2:"+tc.mode); ended != tc.endsCalled {
			t.Errorf("%s: last WorkEnd ran %v, want %v", tc.mode, ended, tc.endsCalled)
		}
	}
}

type wrapErr struct{ err error }

func (e wrapErr) Error() string { return "wrapped: " + e.err.Error() }
func (e wrapErr) Unwrap() error { return e.err }

// Args types whose Hooks are invalid.
type nilHookArgs struct{}

func (nilHookArgs) Kind() string  { return "nil_hook" }
func (nilHookArgs) Hooks() []Hook { return []Hook{HookWorkBeginFunc(nil)} }

type panicHooksArgs struct{}

func (panicHooksArgs) Kind() string  { return "panic_hooks" }
func (panicHooksArgs) Hooks() []Hook { panic("no hooks today") }

type markerOnlyHook struct{ HookDefaults }

// TestHooksValidation: bad hooks and middleware are config errors (or, for
// an insert-only client, insert errors) caught before anything runs or is
// written.
func TestHooksValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	for _, tc := range []struct {
		name string
		cfg  *Config
		text string
	}{
		{"nil hook", &Config{Hooks: []Hook{&stepHook{}, nil}}, "Hooks[1] is nil"},
		{"typed nil hook", &Config{Hooks: []Hook{(*stepHook)(nil)}}, "Hooks[0] is nil"},
		{"nil hook func", &Config{Hooks: []Hook{HookWorkEndFunc(nil)}}, "Hooks[0] is nil"},
		{"hook with no step", &Config{Hooks: []Hook{markerOnlyHook{}}}, "implements none of"},
		{"nil insert middleware", &Config{JobInsertMiddleware: []JobInsertMiddleware{nil}}, "JobInsertMiddleware[0] is nil"},
		{"nil worker middleware", &Config{WorkerMiddleware: []WorkerMiddleware{WorkerMiddlewareFunc(nil)}}, "WorkerMiddleware[0] is nil"},
	} {
		cfg := tc.cfg
		cfg.Schema = db.Schema
		if _, err := New(db.Driver, cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v; want ErrInvalidConfig mentioning %q", tc.name, err, tc.text)
		}
	}

	// A kind's bad hooks: AddWorker reports them through New ...
	if err := AddWorkerSafely(NewWorkers(), WorkFunc(func(context.Context, *Job[nilHookArgs]) error { return nil })); err == nil ||
		!strings.Contains(err.Error(), "Hooks()[0] is nil") {
		t.Errorf("AddWorkerSafely with a nil hook: %v", err)
	}
	if err := AddWorkerSafely(NewWorkers(), WorkFunc(func(context.Context, *Job[panicHooksArgs]) error { return nil })); err == nil ||
		!strings.Contains(err.Error(), "Hooks() panicked: no hooks today") {
		t.Errorf("AddWorkerSafely with panicking Hooks: %v", err)
	}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[nilHookArgs]) error { return nil }))
	if _, err := New(db.Driver, &Config{Schema: db.Schema, Queues: oneQueue(1), Workers: workers}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a worker whose args have a nil hook: %v", err)
	}
	// ... and an insert of such args fails and writes nothing.
	c := newClient(t, db, nil)
	for _, args := range []JobArgs{nilHookArgs{}, panicHooksArgs{}} {
		if _, err := c.InsertMany(ctx, []InsertManyParams{{Args: noopArgs{}}, {Args: args}}); !errors.Is(err, ErrInvalidArgs) ||
			!strings.Contains(err.Error(), "job 1:") {
			t.Errorf("insert of %T: %v", args, err)
		}
	}
	if n := db.CountByState(t)[millracetype.JobStateAvailable]; n != 0 {
		t.Errorf("%d jobs written", n)
	}
}

// nilMiddlewareWorker returns a nil middleware: its jobs fail.
type nilMiddlewareWorker struct {
	WorkerDefaults[noopArgs]
}

func (*nilMiddlewareWorker) Work(context.Context, *Job[noopArgs]) error { return nil }
func (*nilMiddlewareWorker) Middleware(*Job[noopArgs]) []WorkerMiddleware {
	return []WorkerMiddleware{nil}
}

func TestWorkerMiddlewareNilEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, &nilMiddlewareWorker{})
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, &InsertOpts{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	job := waitState(t, db, res.Job.ID, millracetype.JobStateDiscarded)
	if len(job.Errors) != 1 || job.Errors[0].Error != `worker middleware 0 of kind "noop" is nil` {
		t.Errorf("errors %+v", job.Errors)
	}
}

type metricsModeArgs struct {
	Mode string `json:"mode"`
}

func (metricsModeArgs) Kind() string { return "metrics_mode" }

// metricsWorker retries and snoozes quickly, to keep the test short.
type metricsWorker struct {
	WorkerDefaults[metricsModeArgs]
	started chan<- int64
}

func (w *metricsWorker) Work(ctx context.Context, job *Job[metricsModeArgs]) error {
	switch job.Args.Mode {
	case "fail_once":
		if job.Attempt == 1 {
			return errors.New("first attempt fails")
		}
	case "snooze_once":
		if !strings.Contains(string(job.Metadata), `"snoozes"`) {
			return JobSnooze(10 * time.Millisecond)
		}
	case "discard":
		return errors.New("always fails")
	case "cancel":
		return JobCancel(errors.New("not wanted"))
	case "panic":
		panic("worker blew up")
	case "slow":
		time.Sleep(50 * time.Millisecond) // the job's work, so that the run time is measurable
	case "block":
		w.started <- job.ID
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (w *metricsWorker) NextRetry(*Job[metricsModeArgs]) time.Time {
	return time.Now().Add(10 * time.Millisecond)
}

// kindMetricsArgs has a metrics hook of its own; only TestMetricsHook uses
// it.
type kindMetricsArgs struct{}

var kindMetricsSeen = make(chan JobMetrics, 100)

func (kindMetricsArgs) Kind() string { return "kind_metrics" }
func (kindMetricsArgs) Hooks() []Hook {
	return []Hook{HookWorkMetricsFunc(func(ctx context.Context, m JobMetrics) { kindMetricsSeen <- m })}
}

// TestMetricsHook: every attempt is reported once with its outcome, the
// state written and the same timings as the events; a kind's own metrics
// hook sees only its kind; a panicking metrics hook hurts nothing.
func TestMetricsHook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	metrics := make(chan JobMetrics, 100)
	var panics atomic.Int32
	started := make(chan int64, 1)
	workers := NewWorkers()
	AddWorker(workers, &metricsWorker{started: started})
	AddWorker(workers, WorkFunc(func(context.Context, *Job[kindMetricsArgs]) error { return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(8), Workers: workers, Hooks: []Hook{
		HookWorkMetricsFunc(func(ctx context.Context, m JobMetrics) { panics.Add(1); panic("metrics hook blew up") }),
		HookWorkMetricsFunc(func(ctx context.Context, m JobMetrics) { metrics <- m }),
	}})
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)

	type attempt struct {
		outcome  JobOutcome
		state    millracetype.JobState
		panicked bool
	}
	want := map[string][]attempt{
		"ok":          {{JobOutcomeCompleted, millracetype.JobStateCompleted, false}},
		"fail_once":   {{JobOutcomeRetried, millracetype.JobStateAvailable, false}, {JobOutcomeCompleted, millracetype.JobStateCompleted, false}},
		"snooze_once": {{JobOutcomeSnoozed, millracetype.JobStateAvailable, false}, {JobOutcomeCompleted, millracetype.JobStateCompleted, false}},
		"discard":     {{JobOutcomeDiscarded, millracetype.JobStateDiscarded, false}},
		"cancel":      {{JobOutcomeCancelled, millracetype.JobStateCancelled, false}},
		"panic":       {{JobOutcomeDiscarded, millracetype.JobStateDiscarded, true}},
		"slow":        {{JobOutcomeCompleted, millracetype.JobStateCompleted, false}},
	}
	modeOf := map[int64]string{}
	var params []InsertManyParams
	modes := []string{"ok", "fail_once", "snooze_once", "discard", "cancel", "panic", "slow"}
	for _, m := range modes {
		params = append(params, InsertManyParams{Args: metricsModeArgs{Mode: m}, InsertOpts: &InsertOpts{MaxAttempts: len(want[m])}})
	}
	params = append(params, InsertManyParams{Args: kindMetricsArgs{}})
	res, err := c.InsertMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range modes {
		modeOf[res[i].Job.ID] = m
	}
	kindJob := res[len(res)-1].Job.ID

	// One metric per attempt: 9 for the modes, 1 for the kind's job.
	got := map[int64][]JobMetrics{}
	for range 10 {
		m := recv(t, metrics, "a metric")
		got[m.JobID] = append(got[m.JobID], m)
	}
	// And as many job events, with the same numbers.
	for range 10 {
		ev := waitEvent(t, events)
		found := false
		for _, m := range got[ev.Job.ID] {
			found = found || (m.RunDuration == ev.Stats.RunDuration && m.QueueWait == ev.Stats.QueueWaitDuration)
		}
		if !found {
			t.Errorf("event %s of job %d: stats %+v match no metric of %+v", ev.Kind, ev.Job.ID, ev.Stats, got[ev.Job.ID])
		}
	}
	for id, mode := range modeOf {
		ms := got[id]
		if len(ms) != len(want[mode]) {
			t.Errorf("%s: %d metrics %+v, want %d", mode, len(ms), ms, len(want[mode]))
			continue
		}
		for i, w := range want[mode] {
			m := ms[i]
			if m.Outcome != w.outcome || m.State != w.state || m.Panicked != w.panicked || m.Kind != "metrics_mode" ||
				m.Queue != QueueDefault || m.JobID != id {
				t.Errorf("%s attempt %d: %+v, want %+v", mode, i+1, m, w)
			}
			if m.RunDuration <= 0 || m.QueueWait < 0 {
				t.Errorf("%s attempt %d: timings %s %s", mode, i+1, m.RunDuration, m.QueueWait)
			}
		}
		// Attempts count from 1; a snooze gives its attempt back.
		wantAttempts := []int{1, 2}
		if mode == "snooze_once" {
			wantAttempts = []int{1, 1}
		}
		for i, m := range ms {
			if m.Attempt != wantAttempts[i] {
				t.Errorf("%s metric %d: attempt %d, want %d", mode, i, m.Attempt, wantAttempts[i])
			}
		}
	}
	if slow := got[res[6].Job.ID]; len(slow) == 1 && slow[0].RunDuration < 50*time.Millisecond {
		t.Errorf("slow job ran %s, less than its 50 ms of work", slow[0].RunDuration)
	}
	if m := recv(t, kindMetricsSeen, "the kind's metric"); m.JobID != kindJob || m.Outcome != JobOutcomeCompleted {
		t.Errorf("kind's metric %+v", m)
	}
	if len(kindMetricsSeen) != 0 {
		t.Errorf("the kind's metrics hook saw %d more (other kinds')", len(kindMetricsSeen))
	}
	if n := panics.Load(); n != 10 {
		t.Errorf("panicking hook called %d times, want 10", n)
	}

	// StopAndCancel: the interrupted job is reported going back to
	// available.
	blocked, err := c.Insert(ctx, metricsModeArgs{Mode: "block"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, started, "the blocking job to start"); id != blocked.Job.ID {
		t.Fatalf("started job %d, want %d", id, blocked.Job.ID)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.StopAndCancel(stopCtx); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, metrics, "the interrupted job's metric"); m.JobID != blocked.Job.ID || m.Outcome != JobOutcomeInterrupted ||
		m.State != millracetype.JobStateAvailable {
		t.Errorf("interrupted job's metric %+v", m)
	}
}

// TestPeriodicRunsThroughInsertHooks: periodic runs get the insert hooks; a
// run a hook rejects is skipped.
func TestPeriodicRunsThroughInsertHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	tags := make(chan []string, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[reportArgs]) error { tags <- job.Tags; return nil }))
	hook := HookInsertBeginFunc(func(ctx context.Context, p *JobInsertParams) error {
		if _, ok := p.Args.(blockedArgs); ok {
			return errRejected
		}
		p.Tags = append(p.Tags, "from_hook")
		return nil
	})
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Hooks: []Hook{hook}, PeriodicJobs: []*PeriodicJob{
		NewPeriodicJob(PeriodicInterval(time.Hour), func() (JobArgs, *InsertOpts) { return blockedArgs{}, nil }, &PeriodicJobOpts{RunOnStart: true}),
		NewPeriodicJob(PeriodicInterval(time.Hour), func() (JobArgs, *InsertOpts) { return reportArgs{}, nil }, &PeriodicJobOpts{RunOnStart: true}),
	}})
	start(t, c)
	if got := recv(t, tags, "the periodic job to run"); !slices.Equal(got, []string{"from_hook"}) {
		t.Errorf("periodic job tags %v", got)
	}
	// Both runs were built in the same pass; the rejected one was skipped.
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM "+db.Schema+".river_job WHERE kind = 'blocked'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rejected periodic runs inserted", n)
	}
}

// TestHooksNoAllocations: with no hooks or middleware, running a job
// through the chain and reporting metrics allocate nothing; hooks without
// middleware add no allocation either.
func TestHooksNoAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun refuses to run in parallel tests.
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	// Args with a string: turning their zero value into an interface would
	// allocate.
	AddWorker(workers, WorkFunc(func(context.Context, *Job[hookModeArgs]) error { return nil }))
	for _, tc := range []struct {
		name  string
		hooks []Hook
	}{
		{"none", nil},
		{"work hooks", []Hook{
			HookWorkBeginFunc(func(context.Context, *millracetype.JobRow) error { return nil }),
			HookWorkEndFunc(func(_ context.Context, _ *millracetype.JobRow, err error) error { return err }),
		}},
	} {
		c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Hooks: tc.hooks})
		row := &millracetype.JobRow{ID: 1, Kind: "hook_mode", Queue: QueueDefault, Attempt: 1, Args: []byte(`{"mode":"x"}`)}
		unit, err := workers.lookup("hook_mode").unit(row)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() {
			if err := c.exec.WorkThrough(ctx, row, unit); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: workThrough allocates %.0f times per job", tc.name, n)
		}
		outcome := &driver.JobSetState{ID: 1, State: millracetype.JobStateCompleted}
		if n := testing.AllocsPerRun(100, func() { c.exec.EmitMetrics(ctx, row, outcome, jobexec.KindCompleted, 0, 0) }); n != 0 {
			t.Errorf("%s: emitMetrics allocates %.0f times per job", tc.name, n)
		}
	}
}
