package riverdrivertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testKind is the kind fixtures get unless they say otherwise.
const testKind = "test_kind"

// clockSlack is how far a time written with the database's now() may lie
// outside the window of the test's own clock readings around the call. The
// database runs on the test's machine or close to it; a second covers clock
// granularity without hiding a wrong column (those are off by minutes here).
const clockSlack = time.Second

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// now is the test's clock in UTC, cut to the microseconds Postgres keeps, so
// that a time written and read back compares equal.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// --- assertions ---

func requireNoError(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

func requireErrorIs(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

func requireEqual[T any](t *testing.T, got, want T, what string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %#v, want %#v", what, got, want)
	}
}

func requireTime(t *testing.T, got, want time.Time, what string) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s: got %s, want %s", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

func requireTimePtr(t *testing.T, got *time.Time, want time.Time, what string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil, want %s", what, want.Format(time.RFC3339Nano))
	}
	requireTime(t, *got, want, what)
}

// requireSameTimePtr checks two optional times: both nil or equal.
func requireSameTimePtr(t *testing.T, got, want *time.Time, what string) {
	t.Helper()
	if want == nil {
		requireNilTime(t, got, what)
		return
	}
	requireTimePtr(t, got, *want, what)
}

func requireNilTime(t *testing.T, got *time.Time, what string) {
	t.Helper()
	if got != nil {
		t.Fatalf("%s: got %s, want nil", what, got.Format(time.RFC3339Nano))
	}
}

// requireBetween checks that a time written with the database clock lies
// within [from, to] of the test's clock, give or take clockSlack.
func requireBetween(t *testing.T, got, from, to time.Time, what string) {
	t.Helper()
	if got.Before(from.Add(-clockSlack)) || got.After(to.Add(clockSlack)) {
		t.Fatalf("%s: got %s, want within [%s, %s] (±%v)", what, got.Format(time.RFC3339Nano),
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano), clockSlack)
	}
}

// requireJSON checks that raw is JSON equal to want (any value that
// encoding/json can marshal): same keys, same values, key order and
// spacing ignored.
func requireJSON(t *testing.T, raw []byte, want any, what string) {
	t.Helper()
	var got any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s: %q is not JSON: %v", what, raw, err)
	}
	wantRaw, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("%s: marshal expected value: %v", what, err)
	}
	var wantAny any
	if err := json.Unmarshal(wantRaw, &wantAny); err != nil {
		t.Fatalf("%s: unmarshal expected value: %v", what, err)
	}
	if !reflect.DeepEqual(got, wantAny) {
		t.Fatalf("%s: got JSON %s, want %s", what, raw, wantRaw)
	}
}

// requireIDs checks the IDs of jobs, in order.
func requireIDs(t *testing.T, jobs []*millracetype.JobRow, want []int64, what string) {
	t.Helper()
	if got := jobIDs(jobs); !slices.Equal(got, want) {
		t.Fatalf("%s: got ids %v, want %v", what, got, want)
	}
}

func jobIDs(jobs []*millracetype.JobRow) []int64 {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

// sortedIDs returns ids sorted ascending, without touching the input.
func sortedIDs(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// requireSameJob checks that a job is unchanged: every column equal.
func requireSameJob(t *testing.T, got, want *millracetype.JobRow, what string) {
	t.Helper()
	if diff := diffJob(got, want); len(diff) > 0 {
		t.Fatalf("%s: job %d changed:\n  %s", what, want.ID, strings.Join(diff, "\n  "))
	}
}

// diffJob lists the columns in which two rows differ.
func diffJob(a, b *millracetype.JobRow) []string {
	var d []string
	add := func(name string, x, y any) { d = append(d, fmt.Sprintf("%s: %v != %v", name, x, y)) }
	if a == nil || b == nil {
		if a != b {
			add("row", a, b)
		}
		return d
	}
	timeEq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	fmtTime := func(x *time.Time) string {
		if x == nil {
			return "nil"
		}
		return x.Format(time.RFC3339Nano)
	}
	if a.ID != b.ID {
		add("id", a.ID, b.ID)
	}
	if !jsonEqual(a.Args, b.Args) {
		add("args", string(a.Args), string(b.Args))
	}
	if a.Attempt != b.Attempt {
		add("attempt", a.Attempt, b.Attempt)
	}
	if !timeEq(a.AttemptedAt, b.AttemptedAt) {
		add("attempted_at", fmtTime(a.AttemptedAt), fmtTime(b.AttemptedAt))
	}
	if !slices.Equal(a.AttemptedBy, b.AttemptedBy) {
		add("attempted_by", a.AttemptedBy, b.AttemptedBy)
	}
	if !a.CreatedAt.Equal(b.CreatedAt) {
		add("created_at", fmtTime(&a.CreatedAt), fmtTime(&b.CreatedAt))
	}
	if !slices.EqualFunc(a.Errors, b.Errors, func(x, y millracetype.AttemptError) bool {
		return x.At.Equal(y.At) && x.Attempt == y.Attempt && x.Error == y.Error && x.Trace == y.Trace
	}) {
		add("errors", a.Errors, b.Errors)
	}
	if !timeEq(a.FinalizedAt, b.FinalizedAt) {
		add("finalized_at", fmtTime(a.FinalizedAt), fmtTime(b.FinalizedAt))
	}
	if a.Kind != b.Kind {
		add("kind", a.Kind, b.Kind)
	}
	if a.MaxAttempts != b.MaxAttempts {
		add("max_attempts", a.MaxAttempts, b.MaxAttempts)
	}
	if !jsonEqual(a.Metadata, b.Metadata) {
		add("metadata", string(a.Metadata), string(b.Metadata))
	}
	if a.Priority != b.Priority {
		add("priority", a.Priority, b.Priority)
	}
	if a.Queue != b.Queue {
		add("queue", a.Queue, b.Queue)
	}
	if !a.ScheduledAt.Equal(b.ScheduledAt) {
		add("scheduled_at", fmtTime(&a.ScheduledAt), fmtTime(&b.ScheduledAt))
	}
	if a.State != b.State {
		add("state", a.State, b.State)
	}
	if !slices.Equal(a.Tags, b.Tags) {
		add("tags", a.Tags, b.Tags)
	}
	if !bytes.Equal(a.UniqueKey, b.UniqueKey) {
		add("unique_key", a.UniqueKey, b.UniqueKey)
	}
	if a.UniqueStates != b.UniqueStates {
		add("unique_states", a.UniqueStates, b.UniqueStates)
	}
	return d
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// --- fixtures ---

// insertFull inserts one job with JobInsertFull; Kind and Args default to
// testKind and {}. The params are copied, so callers may reuse them.
func (e *env[TTx]) insertFull(t *testing.T, p *driver.JobInsertFullParams) *millracetype.JobRow {
	t.Helper()
	cp := *p
	cp.Schema = e.schema
	if cp.Kind == "" {
		cp.Kind = testKind
	}
	if cp.Args == nil {
		cp.Args = []byte(`{}`)
	}
	job, err := e.exec.JobInsertFull(e.ctx, &cp)
	requireNoError(t, err, "JobInsertFull")
	return job
}

// running returns JobInsertFull params for a job that a client fetched at
// attemptedAt (attempt 1).
func running(attemptedAt time.Time) *driver.JobInsertFullParams {
	return &driver.JobInsertFullParams{
		State:       millracetype.JobStateRunning,
		Attempt:     1,
		AttemptedAt: &attemptedAt,
		AttemptedBy: []string{"client_a"},
	}
}

// finalized returns JobInsertFull params for a job finalized at finalizedAt
// in a final state.
func finalized(state millracetype.JobState, finalizedAt time.Time) *driver.JobInsertFullParams {
	return &driver.JobInsertFullParams{State: state, Attempt: 1, FinalizedAt: &finalizedAt}
}

// inState returns JobInsertFull params for a job in any state, with
// finalized_at set for the final ones.
func inState(state millracetype.JobState, at time.Time) *driver.JobInsertFullParams {
	switch {
	case state.Finalized():
		return finalized(state, at)
	case state == millracetype.JobStateRunning:
		return running(at)
	}
	return &driver.JobInsertFullParams{State: state}
}

// jobParams returns JobInsertMany params with the defaults a client would
// fill in, changed by mods.
func jobParams(mods ...func(p *driver.JobInsertParams)) *driver.JobInsertParams {
	p := &driver.JobInsertParams{
		Args:        []byte(`{"n":1}`),
		Kind:        testKind,
		MaxAttempts: 25,
		Priority:    1,
		Queue:       "default",
		State:       millracetype.JobStateAvailable,
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// insertMany inserts jobs with JobInsertMany and checks one result per job.
func (e *env[TTx]) insertMany(t *testing.T, jobs ...*driver.JobInsertParams) []*driver.JobInsertResult {
	t.Helper()
	res, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: jobs})
	requireNoError(t, err, "JobInsertMany")
	if len(res) != len(jobs) {
		t.Fatalf("JobInsertMany: %d results for %d jobs", len(res), len(jobs))
	}
	return res
}

// getJob reads a job that must exist.
func (e *env[TTx]) getJob(t *testing.T, id int64) *millracetype.JobRow {
	t.Helper()
	job, err := e.exec.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: id})
	requireNoError(t, err, fmt.Sprintf("JobGetByID(%d)", id))
	return job
}

// requireGone checks that a job does not exist.
func (e *env[TTx]) requireGone(t *testing.T, id int64) {
	t.Helper()
	_, err := e.exec.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: id})
	requireErrorIs(t, err, millracetype.ErrNotFound, fmt.Sprintf("JobGetByID(%d) of a job that should not exist", id))
}

// allJobs lists every job of the schema by id.
func (e *env[TTx]) allJobs(t *testing.T) []*millracetype.JobRow {
	t.Helper()
	jobs, err := e.exec.JobList(e.ctx, &driver.JobListParams{Schema: e.schema, Limit: 10000})
	requireNoError(t, err, "JobList (all jobs)")
	return jobs
}

// --- raw SQL (Postgres) ---

// table returns a table of the env's schema, qualified for raw SQL.
func (e *env[TTx]) table(name string) string {
	return `"` + e.name + `".` + name
}

// sql picks the statement of the env's dialect: pg for Postgres, lite for
// SQLite (where bind parameters are ?, times are text, JSON is text).
func (e *env[TTx]) sql(pg, lite string) string {
	if e.dialect == DialectSQLite {
		return lite
	}
	return pg
}

// liteAgo is SQLite SQL for the time the given number of seconds ago, as
// the SQLite driver stores times.
func liteAgo(seconds int) string {
	return fmt.Sprintf(`(strftime('%%Y-%%m-%%dT%%H:%%M:%%f', 'now', '-%d seconds') || '000Z')`, seconds)
}

// waitForLockWait waits until a statement containing text waits for a row
// lock (pg_stat_activity). finished reports, without waiting, how the
// statement ended if it already has ("" while it runs): it must not end
// before it has waited.
func (e *env[TTx]) waitForLockWait(t *testing.T, text string, finished func() string) {
	t.Helper()
	e.waitForWaiting(t, "the locked row", finished, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
			AND position($1 IN query) > 0`, text)
}

// waitForWaiting waits until query (a count) finds a statement waiting for
// lock, which names it in failures. finished is as for waitForLockWait.
func (e *env[TTx]) waitForWaiting(t *testing.T, lock string, finished func() string, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e.rawString(t, query, args...) != "0" {
			return
		}
		if how := finished(); how != "" {
			t.Fatalf("the statement did not wait for %s: %s", lock, how)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the statement never waited for %s", lock)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setStateWhileRescued writes outcome for job while another transaction
// holds the job's row, having rescued it (back to retryable): the
// statement, whose text contains stmt, must wait for the row lock; the
// rescue then commits or rolls back, and the statement's returned rows
// are returned once it has finished.
func (e *env[TTx]) setStateWhileRescued(t *testing.T, job *millracetype.JobRow, outcome *driver.JobSetState, stmt string,
	commit bool) []*millracetype.JobRow {
	t.Helper()
	tx, err := e.exec.Begin(e.ctx)
	requireNoError(t, err, "Begin")
	defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
	requireNoError(t, tx.Exec(e.ctx, `UPDATE `+e.table("river_job")+` SET state = 'retryable', scheduled_at = now()
		WHERE id = $1`, job.ID), "rescue in a transaction")

	type result struct {
		rows []*millracetype.JobRow
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
			Jobs: []*driver.JobSetState{outcome}})
		done <- result{rows, err}
	}()
	e.waitForLockWait(t, stmt, func() string {
		select {
		case r := <-done:
			return fmt.Sprintf("rows %v, error %v", jobIDs(r.rows), r.err)
		default:
			return ""
		}
	})
	if commit {
		requireNoError(t, tx.Commit(e.ctx), "Commit")
	} else {
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the statement did not finish once the row was released")
	}
	requireNoError(t, r.err, "JobSetStateIfRunningMany")
	return r.rows
}

// requireRowLocks skips a subtest about row locks (a row one transaction
// holds being skipped or waited for by another) for a driver that declares
// it has none (driver.SingleWriter).
func (e *env[TTx]) requireRowLocks(t *testing.T) {
	t.Helper()
	if driver.IsSingleWriter(e.drv) {
		t.Skip("driver is a single writer (driver.SingleWriter): no row locks for another transaction to skip or wait for")
	}
}

// sameSchema reports whether another factory call's schema is the env's
// own: a driver whose database has one schema (SQLite's "main"). Cases
// about a second schema cannot be checked then.
func (e *env[TTx]) sameSchema(other string) bool { return other == e.name }

// rawExec runs raw SQL through the driver's Exec.
func (e *env[TTx]) rawExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	requireNoError(t, e.exec.Exec(e.ctx, sql, args...), "raw SQL "+sql)
}

const (
	probeOpen  = "millrace-probe["
	probeClose = "]millrace-probe"
)

// installProbe creates the function rawValue uses: it raises its argument,
// JSON-encoded between markers, as an error. On SQLite the factory's
// connections have it already (see the package documentation).
func (e *env[TTx]) installProbe(t *testing.T) {
	t.Helper()
	if e.dialect == DialectSQLite {
		return
	}
	e.rawExec(t, `CREATE FUNCTION `+e.table("millrace_test_probe")+`(v text) RETURNS void
LANGUAGE plpgsql AS $probe$
BEGIN
    RAISE EXCEPTION USING MESSAGE = '`+probeOpen+`' || coalesce(to_json(v)::text, 'null') || '`+probeClose+`';
END;
$probe$`)
}

// rawValue runs a query returning at most one row of one column and gives
// that value as text; ok is false when it is NULL or there is no row. It
// works through Executor.Exec alone (see the package documentation), so it
// runs on the pool, never inside a transaction that must survive.
func (e *env[TTx]) rawValue(t *testing.T, query string, args ...any) (value string, ok bool) {
	t.Helper()
	probe := `SELECT ` + e.table("millrace_test_probe") + `((` + query + `)::text)`
	if e.dialect == DialectSQLite {
		probe = `SELECT millrace_test_probe(CAST((` + query + `) AS TEXT))`
	}
	err := e.exec.Exec(e.ctx, probe, args...)
	if err == nil {
		t.Fatalf("raw query %s: the probe function did not raise", query)
	}
	msg := err.Error()
	i, j := strings.Index(msg, probeOpen), strings.LastIndex(msg, probeClose)
	if i < 0 || j < i {
		t.Fatalf("raw query %s: %v", query, err)
	}
	raw := msg[i+len(probeOpen) : j]
	if raw == "null" {
		return "", false
	}
	if err := json.Unmarshal([]byte(raw), &value); err != nil {
		t.Fatalf("raw query %s: decode probe value %q: %v", query, raw, err)
	}
	return value, true
}

// rawString is rawValue for a value that must not be NULL.
func (e *env[TTx]) rawString(t *testing.T, query string, args ...any) string {
	t.Helper()
	v, ok := e.rawValue(t, query, args...)
	if !ok {
		t.Fatalf("raw query %s: got NULL", query)
	}
	return v
}

// --- notifications ---

// listen returns a connected listener of the driver for schema, listening
// to topics, closed at cleanup. For a driver without a listener
// (SupportsListener false) it returns nil: the subtest's other checks run,
// requireNext and requireQuiet on the nil listener check nothing, and next
// skips the rest of the subtest (it needs a notification's content).
func (e *env[TTx]) listen(t *testing.T, schema string, topics ...string) driver.Listener {
	t.Helper()
	if !e.drv.SupportsListener() {
		t.Log("driver does not support LISTEN/NOTIFY (SupportsListener is false): this subtest's notification checks are skipped")
		return nil
	}
	l, err := e.drv.GetListener(schema)
	requireNoError(t, err, "GetListener")
	requireNoError(t, l.Connect(e.ctx), "Listener.Connect")
	t.Cleanup(func() {
		if err := l.Close(context.WithoutCancel(e.ctx)); err != nil {
			t.Errorf("Listener.Close: %v", err)
		}
	})
	for _, topic := range topics {
		requireNoError(t, l.Listen(e.ctx, topic), "Listener.Listen "+topic)
	}
	return l
}

// notificationTimeout bounds the wait for a notification that must come.
const notificationTimeout = 10 * time.Second

// requireListener skips a subtest that is about the listener itself for a
// driver without one.
func (e *env[TTx]) requireListener(t *testing.T) {
	t.Helper()
	if !e.drv.SupportsListener() {
		t.Skip("driver does not support LISTEN/NOTIFY (SupportsListener is false)")
	}
}

// next waits for the next notification, which must come. On the nil
// listener of a driver without one it skips the rest of the subtest.
func (e *env[TTx]) next(t *testing.T, l driver.Listener) *driver.Notification {
	t.Helper()
	if l == nil {
		t.Skip("driver does not support LISTEN/NOTIFY (SupportsListener is false): the rest of this subtest reads a notification")
	}
	ctx, cancel := context.WithTimeout(e.ctx, notificationTimeout)
	defer cancel()
	n, err := l.WaitForNotification(ctx)
	requireNoError(t, err, "WaitForNotification")
	return n
}

// requireNext waits for the next notification and checks its topic and
// its payload as JSON.
func (e *env[TTx]) requireNext(t *testing.T, l driver.Listener, topic string, payload any) {
	t.Helper()
	if l == nil {
		return // no listener: see listen
	}
	n := e.next(t, l)
	requireEqual(t, n.Topic, topic, "notification topic")
	requireJSON(t, []byte(n.Payload), payload, "notification payload on "+topic)
}

// requireQuiet checks that no notification on topic was sent before now:
// it sends a sentinel on topic (of schema) and requires it to be the next
// notification. Postgres delivers notifications in commit order, so any
// notification sent by an earlier statement would come first. l must
// listen to topic of schema.
func (e *env[TTx]) requireQuiet(t *testing.T, l driver.Listener, schema, topic string) {
	t.Helper()
	if l == nil {
		return // no listener: see listen
	}
	sentinel := fmt.Sprintf(`{"sentinel":%d}`, time.Now().UnixNano())
	requireNoError(t, e.exec.NotifyMany(e.ctx, &driver.NotifyManyParams{Schema: schema, Topic: topic, Payloads: []string{sentinel}}),
		"NotifyMany sentinel")
	n := e.next(t, l)
	if n.Topic != topic || n.Payload != sentinel {
		t.Fatalf("expected no notification before the sentinel, got topic %q payload %s", n.Topic, n.Payload)
	}
}
