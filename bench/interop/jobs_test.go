package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

// interopArgs is a job's args in both systems: one Go type, one kind.
type interopArgs struct {
	Name   string     `json:"name"`
	Count  int        `json:"count"`
	Labels []string   `json:"labels,omitempty"`
	Inner  innerArgs  `json:"inner"`
	Mode   string     `json:"mode,omitempty"` // "", fail_once, panic_once, snooze_once, block
	When   *time.Time `json:"when,omitempty"`
}

type innerArgs struct {
	A string  `json:"a"`
	B float64 `json:"b"`
}

func (interopArgs) Kind() string { return "interop_job" }

// jobCase is one job of the exchange, with what must hold once it is done.
type jobCase struct {
	name        string
	args        interopArgs
	priority    int
	maxAttempts int
	tags        []string
	metadata    string
	scheduledIn time.Duration
	unique      bool
	via         string // "" (Insert), "many" (InsertMany) or "fast" (InsertManyFast, COPY)
	wantAttempt int
	wantErrors  []string // messages of the errors recorded, in order
	wantSnoozes int
}

func jobCases() []jobCase {
	return []jobCase{
		{name: "plain", args: interopArgs{Name: "plain", Count: 1, Labels: []string{"x", "y"}, Inner: innerArgs{A: "<&> ü", B: 1.5}},
			priority: 2, maxAttempts: 7, tags: []string{"tag_one", "tag-two"}, metadata: `{"team":"billing","n":3,"nested":{"k":[1,2]}}`,
			wantAttempt: 1},
		{name: "plain via InsertMany", args: interopArgs{Name: "plain many", Count: 2, Inner: innerArgs{A: "many"}},
			priority: 3, maxAttempts: 9, tags: []string{"batch_tag"}, metadata: `{"via":"many"}`, via: "many", wantAttempt: 1},
		{name: "plain via InsertManyFast", args: interopArgs{Name: "plain fast", Count: 3, Labels: []string{"z"}},
			priority: 4, maxAttempts: 3, tags: []string{"copy_tag", "second-tag"}, metadata: `{"via":"fast","list":[1,"a"]}`, via: "fast", wantAttempt: 1},
		{name: "scheduled via InsertManyFast", args: interopArgs{Name: "scheduled fast"}, scheduledIn: 1500 * time.Millisecond,
			via: "fast", wantAttempt: 1},
		{name: "scheduled soon", args: interopArgs{Name: "scheduled soon"}, scheduledIn: 1500 * time.Millisecond, wantAttempt: 1},
		{name: "scheduled later", args: interopArgs{Name: "scheduled later"}, scheduledIn: 6 * time.Second, wantAttempt: 1},
		{name: "unique", args: interopArgs{Name: "unique", Count: 42}, unique: true, wantAttempt: 1},
		{name: "fails once", args: interopArgs{Name: "fails once", Mode: "fail_once"}, wantAttempt: 2,
			wantErrors: []string{"interop: the first attempt fails"}},
		{name: "panics once", args: interopArgs{Name: "panics once", Mode: "panic_once"}, wantAttempt: 2,
			wantErrors: []string{"interop panic"}},
		{name: "snoozes once", args: interopArgs{Name: "snoozes once", Mode: "snooze_once"}, wantAttempt: 1, wantSnoozes: 1},
	}
}

// seenJob is a job as a worker saw it, whichever system ran it.
type seenJob struct {
	args        interopArgs
	kind, queue string
	attempt     int
	priority    int
	maxAttempts int
	tags        []string
	metadata    []byte
	startedAt   time.Time
}

// harness is the worker logic both systems run, and what it saw.
type harness struct {
	system string
	mu     sync.Mutex
	runs   map[int64][]seenJob
}

func newHarness(system string) *harness { return &harness{system: system, runs: map[int64][]seenJob{}} }

// work runs one attempt: it fails, panics or snoozes on the first run when
// asked to, and records an output naming the system that ran it.
func (h *harness) work(ctx context.Context, id int64, seen seenJob, recordOutput func(context.Context, any) error,
	snooze func(time.Duration) error) error {
	h.mu.Lock()
	h.runs[id] = append(h.runs[id], seen)
	first := len(h.runs[id]) == 1
	h.mu.Unlock()
	if first {
		switch seen.args.Mode {
		case "fail_once":
			return errors.New("interop: the first attempt fails")
		case "panic_once":
			panic("interop panic")
		case "snooze_once":
			return snooze(200 * time.Millisecond)
		}
	}
	return recordOutput(ctx, map[string]string{"by": h.system, "name": seen.args.Name})
}

func (h *harness) seen(id int64) []seenJob {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.runs[id])
}

type millraceWorker struct {
	client.WorkerDefaults[interopArgs]
	h *harness
}

func (w *millraceWorker) Work(ctx context.Context, job *client.Job[interopArgs]) error {
	return w.h.work(ctx, job.ID, seenJob{args: job.Args, kind: job.Kind, queue: job.Queue, attempt: job.Attempt,
		priority: job.Priority, maxAttempts: job.MaxAttempts, tags: job.Tags, metadata: job.Metadata, startedAt: time.Now()},
		client.RecordOutput, client.JobSnooze)
}

type riverWorker struct {
	river.WorkerDefaults[interopArgs]
	h *harness
}

func (w *riverWorker) Work(ctx context.Context, job *river.Job[interopArgs]) error {
	return w.h.work(ctx, job.ID, seenJob{args: job.Args, kind: job.Kind, queue: job.Queue, attempt: job.Attempt,
		priority: job.Priority, maxAttempts: job.MaxAttempts, tags: job.Tags, metadata: job.Metadata, startedAt: time.Now()},
		river.RecordOutput, river.JobSnooze)
}

// inserted is a case's job after its insert.
type inserted struct {
	c           jobCase
	id          int64
	scheduledAt time.Time
}

func riverInsertCase(ctx context.Context, rc *river.Client[pgx.Tx], c jobCase) (int64, bool, error) {
	opts := &river.InsertOpts{Priority: c.priority, MaxAttempts: c.maxAttempts, Tags: c.tags}
	if c.metadata != "" {
		opts.Metadata = []byte(c.metadata)
	}
	if c.scheduledIn > 0 {
		opts.ScheduledAt = time.Now().Add(c.scheduledIn)
	}
	if c.unique {
		opts.UniqueOpts = river.UniqueOpts{ByArgs: true}
	}
	switch c.via {
	case "many":
		res, err := rc.InsertMany(ctx, []river.InsertManyParams{{Args: c.args, InsertOpts: opts}})
		if err != nil {
			return 0, false, err
		}
		return res[0].Job.ID, res[0].UniqueSkippedAsDuplicate, nil
	case "fast":
		if _, err := rc.InsertManyFast(ctx, []river.InsertManyParams{{Args: c.args, InsertOpts: opts}}); err != nil {
			return 0, false, err
		}
		return -1, false, nil
	}
	res, err := rc.Insert(ctx, c.args, opts)
	if err != nil {
		return 0, false, err
	}
	return res.Job.ID, res.UniqueSkippedAsDuplicate, nil
}

func millraceInsertCase(ctx context.Context, mc *client.Client[pgx.Tx], c jobCase) (int64, bool, error) {
	opts := &client.InsertOpts{Priority: c.priority, MaxAttempts: c.maxAttempts, Tags: c.tags}
	if c.metadata != "" {
		opts.Metadata = []byte(c.metadata)
	}
	if c.scheduledIn > 0 {
		opts.ScheduledAt = time.Now().Add(c.scheduledIn)
	}
	if c.unique {
		opts.UniqueOpts = client.UniqueOpts{ByArgs: true}
	}
	switch c.via {
	case "many":
		res, err := mc.InsertMany(ctx, []client.InsertManyParams{{Args: c.args, InsertOpts: opts}})
		if err != nil {
			return 0, false, err
		}
		return res[0].Job.ID, res[0].UniqueSkippedAsDuplicate, nil
	case "fast":
		if _, err := mc.InsertManyFast(ctx, []client.InsertManyParams{{Args: c.args, InsertOpts: opts}}); err != nil {
			return 0, false, err
		}
		return -1, false, nil
	}
	res, err := mc.Insert(ctx, c.args, opts)
	if err != nil {
		return 0, false, err
	}
	return res.Job.ID, res.UniqueSkippedAsDuplicate, nil
}

// TestRiverInsertsMillraceWorks: River inserts every kind of job, a
// millrace client works them; the worker sees what River wrote and River
// reads back what millrace wrote.
func TestRiverInsertsMillraceWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, schema := setup(t, true)
	rc := newRiverClient(t, schema, nil)
	h := newHarness("millrace")
	workers := client.NewWorkers()
	client.AddWorker(workers, &millraceWorker{h: h})
	jobs := insertCases(t, pool, schema, func(c jobCase) (int64, bool, error) { return riverInsertCase(ctx, rc, c) })
	mc := newMillraceClient(t, schema, &client.Config{
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}}, Workers: workers,
		FetchPollInterval: 200 * time.Millisecond})
	checkExchange(t, jobs, h, mc.ID(), func(id int64) (*rivertype.JobRow, *millracetype.JobRow, error) {
		r, err := rc.JobGet(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		m, err := mc.JobGet(ctx, id)
		return r, m, err
	})
}

// TestMillraceInsertsRiverWorks: the other way round.
func TestMillraceInsertsRiverWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, schema := setup(t, false)
	mc := newMillraceClient(t, schema, nil)
	h := newHarness("river")
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverWorker{h: h})
	jobs := insertCases(t, pool, schema, func(c jobCase) (int64, bool, error) { return millraceInsertCase(ctx, mc, c) })
	rc := newRiverClient(t, schema, &river.Config{
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 10}}, Workers: workers,
		FetchPollInterval: 200 * time.Millisecond})
	checkExchange(t, jobs, h, rc.ID(), func(id int64) (*rivertype.JobRow, *millracetype.JobRow, error) {
		r, err := rc.JobGet(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		m, err := mc.JobGet(ctx, id)
		return r, m, err
	})
}

// insertCases inserts every case (the unique one twice: the second insert
// must come back as the first job, a duplicate). A job inserted with COPY
// is found by its name.
func insertCases(t *testing.T, pool *pgxpool.Pool, schema string, insert func(jobCase) (int64, bool, error)) []inserted {
	t.Helper()
	var jobs []inserted
	for _, c := range jobCases() {
		before := time.Now()
		id, dup, err := insert(c)
		if err != nil {
			t.Fatalf("insert %s: %v", c.name, err)
		}
		if id == -1 {
			err := pool.QueryRow(context.Background(), "SELECT id FROM "+jobTable(schema)+" WHERE args->>'name' = $1", c.args.Name).Scan(&id)
			if err != nil {
				t.Fatalf("find job %s: %v", c.name, err)
			}
		}
		if dup {
			t.Errorf("insert %s: reported a duplicate on the first insert", c.name)
		}
		if c.unique {
			id2, dup2, err := insert(c)
			if err != nil {
				t.Fatalf("insert %s again: %v", c.name, err)
			}
			if !dup2 || id2 != id {
				t.Errorf("insert %s again: job %d duplicate=%v, want job %d as a duplicate", c.name, id2, dup2, id)
			}
		}
		jobs = append(jobs, inserted{c: c, id: id, scheduledAt: before.Add(c.scheduledIn)})
	}
	return jobs
}

// checkExchange waits for every job to complete, then checks what the
// worker saw and what both systems read back.
func checkExchange(t *testing.T, jobs []inserted, h *harness, workerID string,
	get func(id int64) (*rivertype.JobRow, *millracetype.JobRow, error)) {
	t.Helper()
	var lastErr error
	done := eventually(30*time.Second, func() bool {
		for _, j := range jobs {
			r, _, err := get(j.id)
			if err != nil {
				lastErr = err
				return false
			}
			if r.State != rivertype.JobStateCompleted {
				lastErr = fmt.Errorf("job %s is %s", j.c.name, r.State)
				return false
			}
		}
		return true
	})
	if !done {
		t.Fatalf("not every job completed within 30 s: %v", lastErr)
	}
	for _, j := range jobs {
		t.Run(j.c.name, func(t *testing.T) {
			c := j.c
			runs := h.seen(j.id)
			if want := 1 + len(c.wantErrors) + c.wantSnoozes; len(runs) != want {
				t.Fatalf("worked %d times, want %d", len(runs), want)
			}
			first := runs[0]
			if !reflect.DeepEqual(first.args, c.args) {
				t.Errorf("worker decoded args %+v, want %+v", first.args, c.args)
			}
			wantPriority, wantMax := cmpOr(c.priority, 1), cmpOr(c.maxAttempts, 25)
			if first.kind != "interop_job" || first.queue != "default" || first.priority != wantPriority || first.maxAttempts != wantMax {
				t.Errorf("worker saw kind %q queue %q priority %d max_attempts %d, want interop_job default %d %d",
					first.kind, first.queue, first.priority, first.maxAttempts, wantPriority, wantMax)
			}
			if first.attempt != 1 {
				t.Errorf("first run saw attempt %d, want 1", first.attempt)
			}
			if !slices.Equal(first.tags, c.tags) && !(len(first.tags) == 0 && len(c.tags) == 0) {
				t.Errorf("worker saw tags %q, want %q", first.tags, c.tags)
			}
			if c.metadata != "" && !jsonContains(t, first.metadata, c.metadata) {
				t.Errorf("worker saw metadata %s, want it to hold %s", first.metadata, c.metadata)
			}
			if c.scheduledIn > 0 && first.startedAt.Before(j.scheduledAt.Add(-50*time.Millisecond)) {
				t.Errorf("worked at %s, before it was due at %s", first.startedAt.Format(time.RFC3339Nano), j.scheduledAt.Format(time.RFC3339Nano))
			}

			r, m, err := get(j.id)
			if err != nil {
				t.Fatal(err)
			}
			if r.Attempt != c.wantAttempt {
				t.Errorf("River reads attempt %d, want %d", r.Attempt, c.wantAttempt)
			}
			if r.FinalizedAt == nil {
				t.Errorf("River reads no finalized_at on a completed job")
			}
			if len(r.AttemptedBy) == 0 || r.AttemptedBy[len(r.AttemptedBy)-1] != workerID {
				t.Errorf("River reads attempted_by %q, want it to end with %q", r.AttemptedBy, workerID)
			}
			if len(r.Errors) != len(c.wantErrors) {
				t.Errorf("River reads %d errors %+v, want %d", len(r.Errors), r.Errors, len(c.wantErrors))
			}
			for i, e := range r.Errors {
				if i >= len(c.wantErrors) {
					break
				}
				if e.Error != c.wantErrors[i] || e.Attempt != i+1 {
					t.Errorf("River reads error %d as attempt %d %q, want attempt %d %q", i, e.Attempt, e.Error, i+1, c.wantErrors[i])
				}
				if d := e.At.Sub(runs[i].startedAt); d < -time.Second || d > time.Second {
					t.Errorf("River reads error %d at %s; the attempt began at %s", i, e.At, runs[i].startedAt)
				}
				if wantTrace := c.args.Mode == "panic_once"; wantTrace != (e.Trace != "") {
					t.Errorf("River reads error %d with trace %q; want a trace: %v", i, e.Trace, wantTrace)
				}
				if c.args.Mode == "panic_once" && !strings.Contains(e.Trace, "interop") {
					t.Errorf("River reads a panic trace that does not show the panicking function:\n%s", e.Trace)
				}
			}
			var meta map[string]any
			if err := json.Unmarshal(r.Metadata, &meta); err != nil {
				t.Fatalf("River reads metadata %s: %v", r.Metadata, err)
			}
			if c.wantSnoozes > 0 {
				if n, _ := meta["snoozes"].(float64); int(n) != c.wantSnoozes {
					t.Errorf("River reads metadata snoozes %v, want %d (metadata %s)", meta["snoozes"], c.wantSnoozes, r.Metadata)
				}
			}
			if c.metadata != "" && !jsonContains(t, r.Metadata, c.metadata) {
				t.Errorf("River reads metadata %s, want it to hold %s", r.Metadata, c.metadata)
			}
			var out map[string]string
			if err := json.Unmarshal(r.Output(), &out); err != nil || out["by"] != h.system || out["name"] != c.args.Name {
				t.Errorf("River reads output %s (%v), want by %s name %q", r.Output(), err, h.system, c.args.Name)
			}
			compareRows(t, r, m)
		})
	}
}

func cmpOr(x, def int) int {
	if x == 0 {
		return def
	}
	return x
}

// jsonContains reports whether every top-level member of want is in got
// with an equal value.
func jsonContains(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("decode %s: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("decode %s: %v", want, err)
	}
	for k, v := range w {
		if !reflect.DeepEqual(g[k], v) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// compareRows checks that River and millrace read one row alike.
func compareRows(t *testing.T, r *rivertype.JobRow, m *millracetype.JobRow) {
	t.Helper()
	timeEq := func(a, b *time.Time) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.Equal(*b)
	}
	diffs := []string{}
	add := func(ok bool, field string, rv, mv any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: River %v, millrace %v", field, rv, mv))
		}
	}
	add(r.ID == m.ID, "id", r.ID, m.ID)
	add(jsonEqual(r.EncodedArgs, m.Args), "args", string(r.EncodedArgs), string(m.Args))
	add(r.Attempt == m.Attempt, "attempt", r.Attempt, m.Attempt)
	add(timeEq(r.AttemptedAt, m.AttemptedAt), "attempted_at", r.AttemptedAt, m.AttemptedAt)
	add(slices.Equal(r.AttemptedBy, m.AttemptedBy), "attempted_by", r.AttemptedBy, m.AttemptedBy)
	add(r.CreatedAt.Equal(m.CreatedAt), "created_at", r.CreatedAt, m.CreatedAt)
	add(timeEq(r.FinalizedAt, m.FinalizedAt), "finalized_at", r.FinalizedAt, m.FinalizedAt)
	add(r.Kind == m.Kind, "kind", r.Kind, m.Kind)
	add(r.MaxAttempts == m.MaxAttempts, "max_attempts", r.MaxAttempts, m.MaxAttempts)
	add(jsonEqual(r.Metadata, m.Metadata), "metadata", string(r.Metadata), string(m.Metadata))
	add(r.Priority == m.Priority, "priority", r.Priority, m.Priority)
	add(r.Queue == m.Queue, "queue", r.Queue, m.Queue)
	add(r.ScheduledAt.Equal(m.ScheduledAt), "scheduled_at", r.ScheduledAt, m.ScheduledAt)
	add(string(r.State) == string(m.State), "state", r.State, m.State)
	add(slices.Equal(r.Tags, m.Tags), "tags", r.Tags, m.Tags)
	add(bytes.Equal(r.UniqueKey, m.UniqueKey), "unique_key", r.UniqueKey, m.UniqueKey)
	add(slices.Equal(riverStates(r.UniqueStates), millraceStates(m.UniqueStates)), "unique_states",
		riverStates(r.UniqueStates), millraceStates(m.UniqueStates))
	add(len(r.Errors) == len(m.Errors), "errors", len(r.Errors), len(m.Errors))
	for i := range min(len(r.Errors), len(m.Errors)) {
		re, me := r.Errors[i], m.Errors[i]
		add(re.At.Equal(me.At) && re.Attempt == me.Attempt && re.Error == me.Error && re.Trace == me.Trace,
			fmt.Sprintf("errors[%d]", i), re, me)
	}
	if len(diffs) > 0 {
		t.Errorf("River and millrace read job %d differently:\n  %s", r.ID, strings.Join(diffs, "\n  "))
	}
}

func riverStates(states []rivertype.JobState) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	sort.Strings(out)
	return out
}

func millraceStates(mask byte) []string {
	var out []string
	for _, s := range millracetype.UniqueStatesFromMask(mask) {
		out = append(out, string(s))
	}
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}
