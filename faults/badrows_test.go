package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// quickRetry retries failed jobs after 100 ms, so that jobs with few
// attempts reach their final state within the test.
type quickRetry struct{}

func (quickRetry) NextRetry(*millracetype.JobRow) time.Time {
	return time.Now().Add(100 * time.Millisecond)
}

// badRow is a row written with raw SQL next to the good jobs, and what must
// become of it.
type badRow struct {
	name string
	// values are the INSERT's columns and values, after "kind, args" (the
	// first two values are the kind and the args).
	columns string
	values  string
	args    []any
	// want is the final state.
	want millracetype.JobState
	// errs, if set, must each appear in the recorded errors.
	errs []string
	// check, if set, returns a problem with the final row or "".
	check func(r finalRow) string
	// early rows are written before the client starts (stuck running
	// rows, for the rescuer's pass when the client becomes leader).
	early bool
}

// finalRow is what the scenario reads back of a bad row at the end.
type finalRow struct {
	state       string
	attempt     int
	errors      []string
	attemptedBy []string
	metadata    string
}

func badRows() []badRow {
	const oddErrors = `ARRAY['{"at": 5}', '"text"', 'null', '[1, 2]', '{"attempt": "x", "error": {"a": 1}}', NULL]::jsonb[]`
	hundred := make([]string, 100)
	for i := range hundred {
		hundred[i] = fmt.Sprintf("old-client-%d", i)
	}
	stuck := func(name, metadata string, want millracetype.JobState) badRow {
		return badRow{name: name, columns: "state, attempt, attempted_at, attempted_by, metadata",
			values: "'running', 1, now() - interval '3 hours', '{dead-client}', $3::jsonb",
			args:   []any{kindJob, `{"n": %d, "ms": 1}`, metadata}, want: want, errs: []string{"Stuck job rescued by JobRescuer"}, early: true}
	}
	return []badRow{
		{name: "args of the wrong type", columns: "max_attempts", values: "2", args: []any{kindJob, `{"n": "not a number", "ms": 1}`},
			want: millracetype.JobStateDiscarded, errs: []string{"decode args of job", "into faults.jobArgs"},
			check: func(r finalRow) string { return wantErrors(r, 2) }},
		{name: "args not an object", columns: "max_attempts", values: "2", args: []any{kindJob, `[1, 2, 3]`},
			want: millracetype.JobStateDiscarded, errs: []string{"decode args of job"}, check: func(r finalRow) string { return wantErrors(r, 2) }},
		{name: "args JSON null", args: []any{kindJob, `null`}, want: millracetype.JobStateCompleted},
		{name: "a kind the first client has no worker for", columns: "max_attempts", values: "1", args: []any{kindUnknown, `{"n": %d}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string {
				if r.attempt != 1 || len(r.errors) != 0 || len(r.attemptedBy) != 1 || r.attemptedBy[0] != "bad-rows-z" {
					return fmt.Sprintf("attempt %d, errors %q, attempted by %q; want worked once, by the client that knows the kind", r.attempt, r.errors, r.attemptedBy)
				}
				return ""
			}},
		{name: "10 MB args", args: []any{kindJob, `{"n": %d, "ms": 1, "pad": "` + strings.Repeat("x", 10<<20) + `"}`},
			want: millracetype.JobStateCompleted},
		{name: "metadata an array", columns: "metadata", values: `'[1, 2]'`, args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string { return wantMetadata(r, `[1, 2]`) }},
		{name: "metadata a string", columns: "metadata", values: `'"text"'`, args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string { return wantMetadata(r, `"text"`) }},
		{name: "metadata JSON null", columns: "metadata", values: `'null'`, args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string { return wantMetadata(r, `null`) }},
		{name: "metadata a number", columns: "metadata", values: `'42'`, args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string { return wantMetadata(r, `42`) }},
		{name: "snoozing, metadata snoozes not a number", columns: "metadata", values: `'{"snoozes": "many"}'`,
			args: []any{kindJob, `{"n": %d, "ms": 1, "mode": "snooze"}`}, want: millracetype.JobStateCompleted,
			check: func(r finalRow) string { return wantMetadata(r, `{"snoozes": 1}`) }},
		{name: "errors of odd shapes", columns: "attempt, errors", values: "6, " + oddErrors, args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string { return wantErrors(r, 6) }},
		{name: "errors of odd shapes, failing", columns: "attempt, max_attempts, errors", values: "6, 7, " + oddErrors,
			args: []any{kindJob, `{"n": %d, "ms": 1, "mode": "fail"}`}, want: millracetype.JobStateDiscarded,
			errs: []string{"fault: this job always fails"}, check: func(r finalRow) string { return wantErrors(r, 7) }},
		{name: "max_attempts 1, attempt already 1", columns: "attempt, max_attempts", values: "1, 1", args: []any{kindJob, `{"n": %d, "ms": 1}`},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string {
				if r.attempt != 2 {
					return fmt.Sprintf("attempt %d, want 2", r.attempt)
				}
				return ""
			}},
		{name: "max_attempts 1, attempt already 1, failing", columns: "attempt, max_attempts", values: "1, 1",
			args: []any{kindJob, `{"n": %d, "ms": 1, "mode": "fail"}`}, want: millracetype.JobStateDiscarded,
			errs: []string{"fault: this job always fails"}, check: func(r finalRow) string { return wantErrors(r, 1) }},
		{name: "attempted_by already 100 long", columns: "attempted_by", values: "$3::text[]", args: []any{kindJob, `{"n": %d, "ms": 1}`, hundred},
			want: millracetype.JobStateCompleted, check: func(r finalRow) string {
				if len(r.attemptedBy) != 100 || r.attemptedBy[0] != "old-client-1" || !strings.HasPrefix(r.attemptedBy[99], "bad-rows-") {
					return fmt.Sprintf("attempted_by has %d entries, from %q to %q", len(r.attemptedBy), r.attemptedBy[0], r.attemptedBy[len(r.attemptedBy)-1])
				}
				return ""
			}},
		stuck("stuck running", `{}`, millracetype.JobStateCompleted),
		stuck("stuck running, river:rescue_count not a number", `{"river:rescue_count": "x"}`, millracetype.JobStateCompleted),
		stuck("stuck running, cancel_attempted_at unparsable", `{"cancel_attempted_at": "yesterday"}`, millracetype.JobStateCancelled),
	}
}

// wantMetadata checks the final metadata (as Postgres renders jsonb).
func wantMetadata(r finalRow, want string) string {
	if r.metadata != want {
		return fmt.Sprintf("metadata %s, want %s", r.metadata, want)
	}
	return ""
}

func wantErrors(r finalRow, n int) string {
	if len(r.errors) != n {
		return fmt.Sprintf("%d errors recorded, want %d: %q", len(r.errors), n, r.errors)
	}
	return ""
}

// Scenario 9: bad rows written with raw SQL next to good jobs. Each bad row
// gets a clear recorded error (or is left for a client that knows its
// kind, which then works it), none strands the others, and the good jobs
// flow about as fast as without them.
func scenarioBadRows(t *testing.T, sz sizes) tally {
	e := newEnv(t, sz)
	quick := func(cfg *client.Config) { cfg.RetryPolicy = quickRetry{} }
	x, _ := e.newClient(clientOpts{id: "bad-rows-x", tweak: quick})
	half := sz.jobs / 2
	rows := badRows()
	ids := make([]int64, len(rows))
	// insertBad writes bad row i with scan (the test pool's, or a
	// transaction's).
	insertBad := func(i int, scan func(sql string, args []any, dest ...any)) {
		r := rows[i]
		args := append([]any(nil), r.args...)
		if s := args[1].(string); strings.Contains(s, "%d") {
			args[1] = fmt.Sprintf(s, 1_000_000+i)
		}
		columns, values := "kind, args", "$1, $2::jsonb"
		if r.columns != "" {
			columns, values = columns+", "+r.columns, values+", "+r.values
		}
		scan("INSERT INTO "+e.job()+" ("+columns+") VALUES ("+values+") RETURNING id", args, &ids[i])
		e.addExtra(ids[i])
	}
	for i, r := range rows {
		if r.early {
			insertBad(i, e.scan)
		}
	}

	// Good jobs alone, for comparison (the stuck rows are rescued when the
	// client becomes leader, at once).
	e.insertJobs(half, nil)
	begin := time.Now()
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitGood(half, 3*time.Minute)
	alone := time.Since(begin)

	// Good jobs with the other bad rows among them.
	params := make([]client.InsertManyParams, 0, half)
	e.mu.Lock()
	for i := range half {
		params = append(params, client.InsertManyParams{Args: jobArgs{N: e.nextN + i, MS: e.rng.IntN(sz.maxMS + 1)}})
	}
	e.nextN += half
	e.mu.Unlock()
	// They are written in one transaction, so that the clients see them
	// all at once, as they saw the good jobs alone: the time measured is
	// the clients' work, not the test's writing (the 10 MB row alone takes
	// a second to write under the race detector).
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // after Commit, a no-op
	txScan := func(sql string, args []any, dest ...any) {
		t.Helper()
		if err := tx.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for i, r := range rows {
		if r.early {
			continue
		}
		insertBad(i, txScan)
		// Good jobs between the bad ones.
		chunk := params[:min(len(params), half/len(rows)+1)]
		params = params[len(chunk):]
		if len(chunk) > 0 {
			if _, err := e.admin.InsertManyFastTx(ctx, tx, chunk); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(params) > 0 {
		if _, err := e.admin.InsertManyFastTx(ctx, tx, params); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	e.waitGood(sz.jobs, 3*time.Minute)
	mixed := time.Since(begin)
	if mixed > 3*alone+3*time.Second {
		t.Errorf("good jobs took %v next to the bad rows, %v without them", mixed, alone)
	}

	// The job of a kind this client has no worker for is left alone, for a
	// client that has one, which then works it.
	var unknown int64
	for i, r := range rows {
		if r.args[0] == kindUnknown {
			unknown = ids[i]
		}
	}
	var state string
	var attempt int
	e.scan("SELECT state::text, attempt FROM "+e.job()+" WHERE id = $1", []any{unknown}, &state, &attempt)
	if state != "available" || attempt != 0 {
		t.Errorf("a client without a worker for its kind made the job %s (attempt %d); it must leave it for a client that has one", state, attempt)
	}
	t.Logf("%v: starting a client that knows the unknown kind; states %v", time.Since(begin), e.states())
	z, _ := e.startClient(clientOpts{id: "bad-rows-z", workers: 2, tweak: quick, register: func(ws *client.Workers) {
		client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[unknownArgs]) error {
			return e.wlog.record(job.ID, job.Attempt, "bad-rows-z", outcomeOK)
		}))
	}})
	if !e.waitFinished(2 * time.Minute) {
		t.Errorf("not finished: %v", e.states())
	}
	t.Logf("%v: finished", time.Since(begin))
	stopClient(t, x, time.Minute)
	stopClient(t, z, time.Minute)

	for i, r := range rows {
		var f finalRow
		e.scan(`SELECT state::text, attempt, coalesce((SELECT array_agg(coalesce(e->>'error', '')) FROM unnest(errors) e), '{}'),
			coalesce(attempted_by, '{}'), metadata::text FROM `+e.job()+` WHERE id = $1`, []any{ids[i]},
			&f.state, &f.attempt, &f.errors, &f.attemptedBy, &f.metadata)
		if f.state != string(r.want) {
			t.Errorf("%s (job %d): %s, want %s; errors %q", r.name, ids[i], f.state, r.want, f.errors)
			continue
		}
		all := strings.Join(f.errors, "\n")
		for _, want := range r.errs {
			if !strings.Contains(all, want) {
				t.Errorf("%s (job %d): errors %q lack %q", r.name, ids[i], f.errors, want)
			}
		}
		if r.check != nil {
			if problem := r.check(f); problem != "" {
				t.Errorf("%s (job %d): %s", r.name, ids[i], problem)
			}
		}
	}
	row, _ := e.finish(fmt.Sprintf("%d bad rows; good jobs took %v among them, %v alone",
		len(rows), mixed.Round(10*time.Millisecond), alone.Round(10*time.Millisecond)))
	e.noDuplicates(row)
	return row
}

// waitGood waits until n good jobs (fault jobs numbered by insertJobs) are
// completed, failing the test after timeout.
func (e *env) waitGood(n int, timeout time.Duration) {
	e.t.Helper()
	count := func() int {
		var done int
		e.scan(`SELECT count(*) FROM `+e.job()+` WHERE kind = $1 AND state = 'completed' AND args->>'n' ~ '^[0-9]{1,6}$'`,
			[]any{kindJob}, &done)
		return done
	}
	if !testwait.Poll(timeout, func() bool { return count() >= n }) {
		e.t.Fatalf("only %d of %d good jobs completed within %v; states %v", count(), n, timeout, e.states())
	}
}
