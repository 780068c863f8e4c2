package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// chanArgs cannot be encoded.
type chanArgs struct {
	C chan int `json:"c"`
}

func (chanArgs) Kind() string { return "chan" }

// listArgs encodes to a JSON array.
type listArgs []int

func (listArgs) Kind() string { return "list" }

// kindOptsArgs gives defaults for its kind.
type kindOptsArgs struct {
	N int `json:"n"`
}

func (kindOptsArgs) Kind() string { return "kind_opts" }
func (kindOptsArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: "kindq", Priority: 3, MaxAttempts: 7, Tags: []string{"kind_tag"},
		Metadata:   []byte(`{"ignored": true}`),
		UniqueOpts: UniqueOpts{ByQueue: true}}
}

// sleepArgs is the args of the spec's unique-key example.
type sleepArgs struct {
	ZZ string `json:"zz"`
	A  int    `json:"a"`
}

func (sleepArgs) Kind() string { return "sleep" }

// sameJSON reports whether two JSON documents have the same value (jsonb
// rewrites spacing and key order).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

func hashOf(preImage string) []byte {
	sum := sha256.Sum256([]byte(preImage))
	return sum[:]
}

func TestInsertValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	valid := noopArgs{N: 1}
	tests := []struct {
		name    string
		args    JobArgs
		opts    *InsertOpts
		wantMsg string
	}{
		{"nil args", nil, nil, "args is nil"},
		{"nil pointer args", (*ptrArgs)(nil), nil, "Kind() panicked"},
		{"empty kind", emptyKindArgs{}, nil, "Kind() returned an empty string"},
		{"args that cannot be encoded", chanArgs{C: make(chan int)}, nil, "encode args client.chanArgs"},
		{"args encoding to an array", listArgs{1, 2}, nil, "not a JSON object"},
		{"args encoding to null", listArgs(nil), nil, "not a JSON object"},
		{"InsertOpts panics", panicOptsArgs{}, nil, "InsertOpts() panicked"},
		{"priority -1", valid, &InsertOpts{Priority: -1}, "priority -1 out of range 1..4"},
		{"priority 5", valid, &InsertOpts{Priority: 5}, "priority 5 out of range 1..4"},
		{"max attempts -1", valid, &InsertOpts{MaxAttempts: -1}, "max attempts -1 out of range"},
		{"max attempts 32768", valid, &InsertOpts{MaxAttempts: 32768}, "max attempts 32768 out of range"},
		{"upper-case queue", valid, &InsertOpts{Queue: "Upper"}, `queue name "Upper" must match`},
		{"queue with space", valid, &InsertOpts{Queue: "a b"}, `queue name "a b" must match`},
		{"queue too long", valid, &InsertOpts{Queue: strings.Repeat("q", 65)}, "longer than 64 characters"},
		{"tag with comma", valid, &InsertOpts{Tags: []string{"a,b,c"}}, `tag "a,b,c" must match`},
		{"tag too short", valid, &InsertOpts{Tags: []string{"ok_tag", "ab"}}, `tag "ab" must match`},
		{"tag too long", valid, &InsertOpts{Tags: []string{strings.Repeat("t", 256)}}, "at most 255 characters"},
		{"tag starting with dash", valid, &InsertOpts{Tags: []string{"-abc"}}, `tag "-abc" must match`},
		{"metadata array", valid, &InsertOpts{Metadata: []byte(`[1]`)}, "metadata must be a JSON object"},
		{"metadata null", valid, &InsertOpts{Metadata: []byte(`null`)}, "metadata must be a JSON object"},
		{"metadata not JSON", valid, &InsertOpts{Metadata: []byte(`{nope`)}, "metadata must be a JSON object"},
		{"metadata with river: key", valid, &InsertOpts{Metadata: []byte(`{"a": 1, "river:x": 2}`)}, `metadata key "river:x"`},
		{"unique period under 1s", valid, &InsertOpts{UniqueOpts: UniqueOpts{ByPeriod: 500 * time.Millisecond}}, "must not be less than 1 second"},
		{"unique ExcludeKind alone", valid, &InsertOpts{UniqueOpts: UniqueOpts{ExcludeKind: true}}, "ExcludeKind requires ByArgs, ByPeriod or ByQueue"},
		{"unique ByState without running", valid, &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true, ByState: []millracetype.JobState{
			millracetype.JobStateAvailable, millracetype.JobStatePending, millracetype.JobStateScheduled}}}, "missing running"},
		{"unique ByState unknown state", valid, &InsertOpts{UniqueOpts: UniqueOpts{ByState: []millracetype.JobState{"bogus"}}}, `"bogus"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted the job", what)
				}
				if !errors.Is(err, ErrInvalidArgs) {
					t.Errorf("%s: error does not wrap ErrInvalidArgs: %v", what, err)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("%s: error %q does not say %q", what, err, tc.wantMsg)
				}
			}
			res, err := c.Insert(ctx, tc.args, tc.opts)
			check("Insert", err)
			if res != nil {
				t.Errorf("Insert returned a result with its error: %+v", res)
			}
			// In a batch, the bad job fails the whole batch and is named.
			batch := []InsertManyParams{{Args: valid}, {Args: tc.args, InsertOpts: tc.opts}}
			_, err = c.InsertMany(ctx, batch)
			check("InsertMany", err)
			if err != nil && !strings.Contains(err.Error(), "job 1: ") {
				t.Errorf("InsertMany error does not name the job: %v", err)
			}
			_, err = c.InsertManyFast(ctx, batch)
			check("InsertManyFast", err)
		})
	}
	if counts := db.CountByState(t); len(counts) != 0 {
		t.Errorf("invalid inserts wrote jobs: %v", counts)
	}
}

func TestInsertManyLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	for _, params := range [][]InsertManyParams{nil, {}} {
		if _, err := c.InsertMany(ctx, params); !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "no jobs to insert") {
			t.Errorf("InsertMany(%v): %v", params, err)
		}
		if n, err := c.InsertManyFast(ctx, params); !errors.Is(err, ErrInvalidArgs) || n != 0 {
			t.Errorf("InsertManyFast(%v): %d, %v", params, n, err)
		}
	}
	tooMany := make([]InsertManyParams, MaxInsertBatch+1)
	for i := range tooMany {
		tooMany[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	if _, err := c.InsertMany(ctx, tooMany); !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "at most 100000") {
		t.Errorf("InsertMany over the limit: %v", err)
	}
	if _, err := c.InsertManyFast(ctx, tooMany); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("InsertManyFast over the limit: %v", err)
	}
	if counts := db.CountByState(t); len(counts) != 0 {
		t.Errorf("rejected batches wrote jobs: %v", counts)
	}
}

// TestInsertOptionPrecedence: per insert, then the kind's InsertOpts, then
// the config.
func TestInsertOptionPrecedence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{MaxAttempts: 9})

	type want struct {
		queue       string
		priority    int
		maxAttempts int
		tags        []string
		metadata    string
		unique      bool
	}
	tests := []struct {
		name string
		args JobArgs
		opts *InsertOpts
		want want
	}{
		{"defaults and config", noopArgs{N: 1}, nil, want{"default", 1, 9, []string{}, `{}`, false}},
		{"zero options are unset", noopArgs{N: 2}, &InsertOpts{}, want{"default", 1, 9, []string{}, `{}`, false}},
		{"kind's options", kindOptsArgs{N: 1}, nil, want{"kindq", 3, 7, []string{"kind_tag"}, `{}`, true}},
		{"insert's options win", kindOptsArgs{N: 2}, &InsertOpts{Queue: "optq", Priority: 2, MaxAttempts: 4,
			Tags: []string{"opt_tag"}, Metadata: []byte(`{"m": 1}`)},
			want{"optq", 2, 4, []string{"opt_tag"}, `{"m": 1}`, true}},
		// (Another queue: the kind's ByQueue would make it a duplicate.)
		{"empty tags win over the kind's", kindOptsArgs{N: 3}, &InsertOpts{Queue: "tagsq", Tags: []string{}},
			want{"tagsq", 3, 7, []string{}, `{}`, true}},
		{"insert's options over config", noopArgs{N: 3}, &InsertOpts{MaxAttempts: 2, Priority: 4},
			want{"default", 4, 2, []string{}, `{}`, false}},
	}
	for _, tc := range tests {
		res, err := c.Insert(ctx, tc.args, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// Check the stored row, not only what Insert returned.
		for _, job := range []*millracetype.JobRow{res.Job, db.Job(t, res.Job.ID)} {
			got := want{job.Queue, job.Priority, job.MaxAttempts, job.Tags, string(job.Metadata), job.UniqueKey != nil}
			if got.queue != tc.want.queue || got.priority != tc.want.priority || got.maxAttempts != tc.want.maxAttempts ||
				!slices.Equal(got.tags, tc.want.tags) || got.metadata != tc.want.metadata || got.unique != tc.want.unique {
				t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			}
		}
	}

	// The kind's unique options apply unless the insert gives its own: two
	// kindOptsArgs in one queue are duplicates (ByQueue), whatever the args.
	first, err := c.Insert(ctx, kindOptsArgs{N: 10}, &InsertOpts{Queue: "uq"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Insert(ctx, kindOptsArgs{N: 11}, &InsertOpts{Queue: "uq"})
	if err != nil {
		t.Fatal(err)
	}
	if first.UniqueSkippedAsDuplicate || !second.UniqueSkippedAsDuplicate || second.Job.ID != first.Job.ID {
		t.Errorf("kind's ByQueue: first dup=%v, second dup=%v ids %d %d", first.UniqueSkippedAsDuplicate,
			second.UniqueSkippedAsDuplicate, first.Job.ID, second.Job.ID)
	}
	// The insert's unique options replace the kind's: ByArgs makes N count.
	third, err := c.Insert(ctx, kindOptsArgs{N: 12}, &InsertOpts{Queue: "uq", UniqueOpts: UniqueOpts{ByArgs: true}})
	if err != nil {
		t.Fatal(err)
	}
	if third.UniqueSkippedAsDuplicate {
		t.Error("insert's ByArgs did not replace the kind's ByQueue")
	}
	if want := hashOf(`&kind=kind_opts&args={"n":12}`); !slices.Equal(third.Job.UniqueKey, want) {
		t.Errorf("unique key %x, want %x", third.Job.UniqueKey, want)
	}
}

func TestInsertInitialState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	now := time.Now()
	c := newClient(t, db, nil)

	avail, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if j := avail.Job; j.State != millracetype.JobStateAvailable || j.ScheduledAt.Before(now.Add(-time.Second)) ||
		j.ScheduledAt.After(time.Now().Add(time.Second)) || !j.CreatedAt.Equal(j.ScheduledAt) {
		t.Errorf("plain insert: state %s scheduled %s created %s", j.State, j.ScheduledAt, j.CreatedAt)
	}

	past := now.Add(-time.Hour).Truncate(time.Microsecond)
	sched, err := c.Insert(ctx, noopArgs{}, &InsertOpts{ScheduledAt: past})
	if err != nil {
		t.Fatal(err)
	}
	if j := db.Job(t, sched.Job.ID); j.State != millracetype.JobStateAvailable || !j.ScheduledAt.Equal(past) {
		t.Errorf("past ScheduledAt: state %s scheduled %s, want available at %s", j.State, j.ScheduledAt, past)
	}

	soon := now.Add(3 * time.Second).Truncate(time.Microsecond)
	soonRes, err := c.Insert(ctx, noopArgs{}, &InsertOpts{ScheduledAt: soon})
	if err != nil {
		t.Fatal(err)
	}
	if j := db.Job(t, soonRes.Job.ID); j.State != millracetype.JobStateAvailable || !j.ScheduledAt.Equal(soon) {
		t.Errorf("ScheduledAt 3s ahead: state %s scheduled %s, want available at %s", j.State, j.ScheduledAt, soon)
	}

	future := now.Add(time.Hour).Truncate(time.Microsecond)
	fut, err := c.Insert(ctx, noopArgs{}, &InsertOpts{ScheduledAt: future})
	if err != nil {
		t.Fatal(err)
	}
	if j := db.Job(t, fut.Job.ID); j.State != millracetype.JobStateScheduled || !j.ScheduledAt.Equal(future) {
		t.Errorf("future ScheduledAt: state %s scheduled %s", j.State, j.ScheduledAt)
	}

	pend, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Pending: true, ScheduledAt: future})
	if err != nil {
		t.Fatal(err)
	}
	if j := db.Job(t, pend.Job.ID); j.State != millracetype.JobStatePending {
		t.Errorf("pending insert: state %s", j.State)
	}
}

// TestInsertManyOrderAndDuplicates: results come back in input order, and a
// job repeating an earlier unique job of the batch, or an existing one, is
// flagged as a duplicate pointing at that job.
func TestInsertManyOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	unique := &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}}
	existing, err := c.Insert(ctx, noopArgs{N: 100}, unique)
	if err != nil {
		t.Fatal(err)
	}
	params := []InsertManyParams{
		{Args: noopArgs{N: 0}},
		{Args: noopArgs{N: 1}, InsertOpts: unique},
		{Args: sleepArgs{A: 2}},
		{Args: noopArgs{N: 1}, InsertOpts: unique}, // repeats job 1
		{Args: noopArgs{N: 100}, InsertOpts: unique},
		{Args: noopArgs{N: 5}, InsertOpts: &InsertOpts{Queue: "other", Priority: 2}},
	}
	res, err := c.InsertMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(params) {
		t.Fatalf("%d results for %d jobs", len(res), len(params))
	}
	for i, r := range res {
		want, _ := json.Marshal(params[i].Args)
		if !sameJSON(t, r.Job.Args, want) || r.Job.Kind != params[i].Args.Kind() {
			t.Errorf("result %d: %s %s, want %s %s", i, r.Job.Kind, r.Job.Args, params[i].Args.Kind(), want)
		}
	}
	dups := []bool{false, false, false, true, true, false}
	for i, r := range res {
		if r.UniqueSkippedAsDuplicate != dups[i] {
			t.Errorf("result %d: duplicate %v, want %v", i, r.UniqueSkippedAsDuplicate, dups[i])
		}
	}
	if res[3].Job.ID != res[1].Job.ID || res[4].Job.ID != existing.Job.ID {
		t.Errorf("duplicates point at %d and %d, want %d and %d", res[3].Job.ID, res[4].Job.ID, res[1].Job.ID, existing.Job.ID)
	}
	if res[5].Job.Queue != "other" || res[5].Job.Priority != 2 {
		t.Errorf("options of job 5 lost: %+v", res[5].Job)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateAvailable] != 5 {
		t.Errorf("states %v, want 5 available", counts)
	}

	n, err := c.InsertManyFast(ctx, []InsertManyParams{{Args: noopArgs{N: 7}}, {Args: sleepArgs{}}, {Args: noopArgs{N: 8},
		InsertOpts: &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)}}})
	if err != nil || n != 3 {
		t.Fatalf("InsertManyFast: %d, %v", n, err)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateAvailable] != 7 || counts[millracetype.JobStateScheduled] != 1 {
		t.Errorf("states after InsertManyFast %v", counts)
	}
}

// TestInsertTxRollback: nothing survives a rolled-back transaction, whichever
// insert method was used; a commit keeps everything.
func TestInsertTxRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	params := []InsertManyParams{{Args: noopArgs{N: 1}}, {Args: noopArgs{N: 2}}}
	run := func(commit bool) {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if _, err := c.InsertTx(ctx, tx, noopArgs{N: 0}, nil); err != nil {
			t.Fatal(err)
		}
		res, err := c.InsertManyTx(ctx, tx, params)
		if err != nil || len(res) != 2 {
			t.Fatalf("InsertManyTx: %v, %v", res, err)
		}
		// Visible inside the transaction.
		if _, err := c.JobGetTx(ctx, tx, res[0].Job.ID); err != nil {
			t.Fatal(err)
		}
		if n, err := c.InsertManyFastTx(ctx, tx, params); err != nil || n != 2 {
			t.Fatalf("InsertManyFastTx: %d, %v", n, err)
		}
		// Invisible outside it until commit.
		if _, err := c.JobGet(ctx, res[0].Job.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("uncommitted job visible outside its transaction: %v", err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	run(false)
	if counts := db.CountByState(t); len(counts) != 0 {
		t.Fatalf("jobs after rollback: %v", counts)
	}
	run(true)
	if counts := db.CountByState(t); counts[millracetype.JobStateAvailable] != 5 {
		t.Fatalf("jobs after commit: %v", counts)
	}

	// A client on a driver without a pool inserts in transactions.
	txOnly, err := New(pgxv5.New(nil), &Config{Schema: db.Schema, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := txOnly.InsertTx(ctx, tx, noopArgs{N: 9}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := txOnly.InsertManyFastTx(ctx, tx, params); err != nil || n != 2 {
		t.Fatalf("InsertManyFastTx without a pool: %d, %v", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateAvailable] != 8 {
		t.Fatalf("jobs after the pool-less client's commit: %v", counts)
	}
	// Outside a transaction it fails cleanly.
	if _, err := txOnly.Insert(ctx, noopArgs{}, nil); err == nil || !strings.Contains(err.Error(), "no pool") {
		t.Errorf("Insert without a pool: %v", err)
	}
}

// TestUniqueKeys checks keys against the spec's pre-images, end to end.
func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	insert := func(args JobArgs, opts *InsertOpts) *InsertResult {
		t.Helper()
		res, err := c.Insert(ctx, args, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	args := sleepArgs{ZZ: "q", A: 5}

	// ByArgs + ByQueue: the spec's example pre-image.
	byArgsQueue := &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true, ByQueue: true}}
	first := insert(args, byArgsQueue)
	want := hashOf(`&kind=sleep&args={"a":5,"zz":"q"}&queue=default`)
	stored := db.Job(t, first.Job.ID)
	if !slices.Equal(stored.UniqueKey, want) || stored.UniqueStates != 0xF5 {
		t.Errorf("unique key %x states %08b, want %x 11110101", stored.UniqueKey, stored.UniqueStates, want)
	}
	second := insert(args, byArgsQueue)
	if first.UniqueSkippedAsDuplicate || !second.UniqueSkippedAsDuplicate || second.Job.ID != first.Job.ID {
		t.Errorf("second ByArgs insert: duplicate %v, id %d (first %d)", second.UniqueSkippedAsDuplicate, second.Job.ID, first.Job.ID)
	}
	// Different args: not a duplicate.
	if other := insert(sleepArgs{ZZ: "q", A: 6}, byArgsQueue); other.UniqueSkippedAsDuplicate {
		t.Error("different args flagged as duplicate")
	}
	// The same args in another queue: not a duplicate.
	inOther := insert(args, &InsertOpts{Queue: "other", UniqueOpts: UniqueOpts{ByArgs: true, ByQueue: true}})
	if inOther.UniqueSkippedAsDuplicate {
		t.Error("ByQueue: the same args in another queue flagged as duplicate")
	}
	if want := hashOf(`&kind=sleep&args={"a":5,"zz":"q"}&queue=other`); !slices.Equal(inOther.Job.UniqueKey, want) {
		t.Errorf("key in queue other %x, want %x", inOther.Job.UniqueKey, want)
	}

	// ByQueue alone: one job per queue whatever the args.
	q1 := insert(sleepArgs{A: 1}, &InsertOpts{Queue: "bq1", UniqueOpts: UniqueOpts{ByQueue: true}})
	q2 := insert(sleepArgs{A: 2}, &InsertOpts{Queue: "bq2", UniqueOpts: UniqueOpts{ByQueue: true}})
	q1again := insert(sleepArgs{A: 3}, &InsertOpts{Queue: "bq1", UniqueOpts: UniqueOpts{ByQueue: true}})
	if q1.UniqueSkippedAsDuplicate || q2.UniqueSkippedAsDuplicate || !q1again.UniqueSkippedAsDuplicate || q1again.Job.ID != q1.Job.ID {
		t.Errorf("ByQueue: dup %v %v %v", q1.UniqueSkippedAsDuplicate, q2.UniqueSkippedAsDuplicate, q1again.UniqueSkippedAsDuplicate)
	}
	if want := hashOf(`&kind=sleep&queue=bq1`); !slices.Equal(q1.Job.UniqueKey, want) {
		t.Errorf("ByQueue key %x, want %x", q1.Job.UniqueKey, want)
	}

	// ByPeriod, from ScheduledAt: the same hour is a duplicate, the next is not.
	hour := &UniqueOpts{ByPeriod: time.Hour}
	at := func(h, m int) *InsertOpts {
		return &InsertOpts{ScheduledAt: time.Date(2030, 1, 1, h, m, 0, 0, time.UTC), UniqueOpts: *hour}
	}
	p1 := insert(noopArgs{N: 1}, at(10, 15))
	p2 := insert(noopArgs{N: 2}, at(10, 45))
	p3 := insert(noopArgs{N: 3}, at(11, 5))
	if p1.UniqueSkippedAsDuplicate || !p2.UniqueSkippedAsDuplicate || p2.Job.ID != p1.Job.ID || p3.UniqueSkippedAsDuplicate {
		t.Errorf("ByPeriod: dup %v %v %v", p1.UniqueSkippedAsDuplicate, p2.UniqueSkippedAsDuplicate, p3.UniqueSkippedAsDuplicate)
	}
	if want := hashOf(`&kind=noop&period=2030-01-01T10:00:00Z`); !slices.Equal(p1.Job.UniqueKey, want) {
		t.Errorf("ByPeriod key %x, want %x", p1.Job.UniqueKey, want)
	}
	// ScheduledAt in another zone: the period is written in UTC.
	zoned := insert(noopArgs{N: 4}, &InsertOpts{ScheduledAt: time.Date(2030, 1, 1, 14, 30, 0, 0, time.FixedZone("P", 3*3600)),
		UniqueOpts: *hour})
	if !zoned.UniqueSkippedAsDuplicate || zoned.Job.ID != p3.Job.ID {
		t.Errorf("11:30 UTC given as 14:30+03 is not in 11:00's period: dup %v", zoned.UniqueSkippedAsDuplicate)
	}
	// ByPeriod without ScheduledAt uses the client clock.
	dayKey := func(at time.Time) []byte {
		return hashOf(`&kind=noop&period=` + at.UTC().Truncate(24*time.Hour).Format(time.RFC3339))
	}
	before := time.Now()
	n1 := insert(noopArgs{N: 5}, &InsertOpts{UniqueOpts: UniqueOpts{ByPeriod: 24 * time.Hour}})
	after := time.Now()
	if !slices.Equal(n1.Job.UniqueKey, dayKey(before)) && !slices.Equal(n1.Job.UniqueKey, dayKey(after)) {
		t.Errorf("ByPeriod from the clock: key %x, want %x", n1.Job.UniqueKey, dayKey(before))
	}

	// ExcludeKind: the same args under two kinds collide.
	ex := &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true, ExcludeKind: true}}
	e1 := insert(sleepArgs{A: 9}, ex)
	e2 := insert(exclArgs{A: 9}, ex)
	if e1.UniqueSkippedAsDuplicate || !e2.UniqueSkippedAsDuplicate {
		t.Errorf("ExcludeKind: dup %v %v", e1.UniqueSkippedAsDuplicate, e2.UniqueSkippedAsDuplicate)
	}
	if want := hashOf(`&args={"a":9,"zz":""}`); !slices.Equal(e1.Job.UniqueKey, want) {
		t.Errorf("ExcludeKind key %x, want %x", e1.Job.UniqueKey, want)
	}

	// ByState alone: the key is the kind; the mask is the given states.
	states := []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStatePending,
		millracetype.JobStateRunning, millracetype.JobStateScheduled, millracetype.JobStateCompleted}
	s1 := insert(outcomeArgs{Mode: "x"}, &InsertOpts{UniqueOpts: UniqueOpts{ByState: states}})
	if want := hashOf(`&kind=outcome`); !slices.Equal(s1.Job.UniqueKey, want) ||
		s1.Job.UniqueStates != millracetype.UniqueStatesMask(states...) {
		t.Errorf("ByState key %x mask %08b", s1.Job.UniqueKey, s1.Job.UniqueStates)
	}

	// A duplicate only counts while the existing job is in a unique state:
	// once cancelled (not in the default states), a new job goes in.
	if _, err := c.JobCancel(ctx, first.Job.ID); err != nil {
		t.Fatal(err)
	}
	if again := insert(args, byArgsQueue); again.UniqueSkippedAsDuplicate || again.Job.ID == first.Job.ID {
		t.Errorf("insert after the unique job was cancelled: dup %v id %d", again.UniqueSkippedAsDuplicate, again.Job.ID)
	}
	// Non-unique jobs have no key.
	if plain := insert(args, nil); plain.Job.UniqueKey != nil || plain.Job.UniqueStates != 0 {
		t.Errorf("plain job has key %x states %b", plain.Job.UniqueKey, plain.Job.UniqueStates)
	}
}

type exclArgs struct {
	ZZ string `json:"zz"`
	A  int    `json:"a"`
}

func (exclArgs) Kind() string { return "excl" }

// TestInsertNotifiesOtherClients: an insert wakes a client whose only way
// to hear of it is the notification (it polls once an hour); one inserted
// scheduled or pending does not run.
func TestInsertNotifiesOtherClients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	got := make(chan int64, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { got <- job.ID; return nil }))
	worker := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 2}, "other": {MaxWorkers: 2}},
		Workers: workers, FetchPollInterval: time.Hour})
	start(t, worker)
	inserter := newClient(t, db, nil)
	for _, queue := range []string{"default", "other"} {
		res, err := inserter.Insert(ctx, noopArgs{}, &InsertOpts{Queue: queue})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-got:
			if id != res.Job.ID {
				t.Fatalf("worked %d, want %d", id, res.Job.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("job in queue %s never worked", queue)
		}
	}
}

// TestInsertMiddlewareCannotAliasCallerTags: middleware that edits tags in
// place must not change the caller's InsertOpts.
func TestInsertMiddlewareCannotAliasCallerTags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{JobInsertMiddleware: []JobInsertMiddleware{
		JobInsertMiddlewareFunc(func(ctx context.Context, params []*JobInsertParams, next func(context.Context) ([]*InsertResult, error)) ([]*InsertResult, error) {
			for _, p := range params {
				for i := range p.Tags {
					p.Tags[i] = strings.ToUpper(p.Tags[i])
				}
			}
			return next(ctx)
		}),
	}})
	opts := &InsertOpts{Tags: []string{"mine"}}
	res, err := c.Insert(ctx, noopArgs{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Job.Tags, []string{"MINE"}) {
		t.Errorf("middleware's change lost: %v", res.Job.Tags)
	}
	if !slices.Equal(opts.Tags, []string{"mine"}) {
		t.Errorf("caller's tags changed to %v", opts.Tags)
	}
	// The kind's tags are not changed either.
	res, err = c.Insert(ctx, sharedTagsArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Job.Tags, []string{"SHARED"}) || !slices.Equal(sharedTags, []string{"shared"}) {
		t.Errorf("job tags %v, kind's tags now %v", res.Job.Tags, sharedTags)
	}
}

// sharedTags is what sharedTagsArgs.InsertOpts returns, every time.
var sharedTags = []string{"shared"}

type sharedTagsArgs struct{}

func (sharedTagsArgs) Kind() string           { return "shared_tags" }
func (sharedTagsArgs) InsertOpts() InsertOpts { return InsertOpts{Tags: sharedTags} }
