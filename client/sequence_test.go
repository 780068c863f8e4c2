package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

type seqArgs struct {
	Account string `json:"account"`
	N       int    `json:"n"`
	Fail    bool   `json:"fail,omitempty"`
	Block   bool   `json:"block,omitempty"`
}

func (seqArgs) Kind() string { return "seq_job" }

// InsertOpts gives every job its account's sequence.
func (a seqArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: "seq", Sequence: SequenceOpts{Key: a.Account, BlockOnFailure: a.Block}}
}

// seqRecorder checks, in the workers, that no two jobs of a sequence run
// at once, and records the order in which each sequence's jobs completed.
type seqRecorder struct {
	mu       sync.Mutex
	running  map[string]int
	overlaps []string
	done     map[string][]int
	attempts map[string]int
}

func newSeqRecorder() *seqRecorder {
	return &seqRecorder{running: map[string]int{}, done: map[string][]int{}, attempts: map[string]int{}}
}

func (r *seqRecorder) work(ctx context.Context, job *Job[seqArgs]) error {
	a := job.Args
	r.mu.Lock()
	r.running[a.Account]++
	if r.running[a.Account] > 1 {
		r.overlaps = append(r.overlaps, fmt.Sprintf("%s/%d", a.Account, a.N))
	}
	r.mu.Unlock()
	time.Sleep(time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[a.Account]--
	// Jobs marked Fail fail their first attempt.
	if a.Fail && job.Attempt == 1 {
		return errors.New("first attempt fails")
	}
	r.done[a.Account] = append(r.done[a.Account], a.N)
	return nil
}

func TestSequenceOrder(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	rec := newSeqRecorder()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(rec.work))
	c := newClient(t, db, &Config{Workers: workers, RetryPolicy: soonRetry{},
		Queues: map[string]QueueConfig{"seq": {MaxWorkers: 20}}})
	const accounts, perAccount = 5, 30
	// Interleaved: InsertMany batches and single inserts, some jobs
	// failing once (they hold their sequence through the retry).
	var batch []InsertManyParams
	for n := range perAccount {
		for a := range accounts {
			args := seqArgs{Account: fmt.Sprintf("acct-%d", a), N: n, Fail: (n+a)%7 == 3}
			if n%3 == 0 {
				if _, err := c.Insert(context.Background(), args, nil); err != nil {
					t.Fatal(err)
				}
				continue
			}
			batch = append(batch, InsertManyParams{Args: args})
		}
		if n%3 == 2 {
			if _, err := c.InsertMany(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		if _, err := c.InsertMany(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	// Before the client starts, only the heads are available.
	var avail, pending int
	seqQuery(t, db, `SELECT count(*) FILTER (WHERE state = 'available'), count(*) FILTER (WHERE state = 'pending') FROM `+seqTable(db, "river_job"), &avail, &pending)
	if avail != accounts || pending != accounts*(perAccount-1) {
		t.Fatalf("before start: %d available and %d pending, want %d and %d", avail, pending, accounts, accounts*(perAccount-1))
	}
	start(t, c)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var completed int
		seqQuery(t, db, `SELECT count(*) FROM `+seqTable(db, "river_job")+` WHERE state = 'completed'`, &completed)
		if completed == accounts*perAccount {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d completed after 60 s", completed, accounts*perAccount)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.overlaps) > 0 {
		t.Errorf("jobs that started while another of their sequence ran: %v", rec.overlaps)
	}
	for a := range accounts {
		key := fmt.Sprintf("acct-%d", a)
		got := rec.done[key]
		for i, n := range got {
			if n != i {
				t.Fatalf("sequence %s completed in order %v, want 0..%d", key, got, perAccount-1)
			}
		}
		if len(got) != perAccount {
			t.Fatalf("sequence %s completed %d jobs, want %d", key, len(got), perAccount)
		}
	}
	// Every sequence is passed to its end and gone: the last head's
	// promotion follows its outcome's write (by the completer, in a
	// statement of its own), so it may come a moment after the rows show
	// completed; the sequencer's pass (every second) is the backstop.
	var seqs []*Sequence
	deadline = time.Now().Add(5 * time.Second)
	for {
		var err error
		if seqs, err = c.SequenceList(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if len(seqs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sequences left 5 s after every job completed: %+v", seqs[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSequenceFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	rec := newSeqRecorder()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(rec.work))
	c := newClient(t, db, &Config{Workers: workers, RetryPolicy: soonRetry{},
		Queues: map[string]QueueConfig{"seq": {MaxWorkers: 5}}})
	start(t, c)
	one := &InsertOpts{MaxAttempts: 1}
	insert := func(a seqArgs) int64 {
		t.Helper()
		r, err := c.Insert(ctx, a, one)
		if err != nil {
			t.Fatal(err)
		}
		return r.Job.ID
	}
	// Default: a discarded job lets the next one run.
	insert(seqArgs{Account: "go-on", N: 0, Fail: true})
	next := insert(seqArgs{Account: "go-on", N: 1})
	waitState(t, db, next, millracetype.JobStateCompleted)

	// BlockOnFailure: the sequence waits until the job is retried and
	// completes.
	head := insert(seqArgs{Account: "stop", N: 0, Fail: true, Block: true})
	after := insert(seqArgs{Account: "stop", N: 1})
	waitState(t, db, head, millracetype.JobStateDiscarded)
	seqs, err := c.SequenceList(ctx, &SequenceListParams{Queue: "seq"})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 1 || *seqs[0] != (Sequence{Queue: "seq", Key: "stop", HeadID: head, HeadState: millracetype.JobStateDiscarded, Waiting: 1, Blocked: true}) {
		t.Fatalf("sequences while blocked: %+v", seqs)
	}
	// Give the client time to move it on wrongly (a completer write and a
	// sequencer pass), then check it did not.
	if err := c.completer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if j := db.Job(t, after); j.State != millracetype.JobStatePending {
		t.Fatalf("job after a blocking failure is %s, want pending", j.State)
	}
	if _, err := c.JobRetry(ctx, head); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, head, millracetype.JobStateCompleted) // its second attempt succeeds
	waitState(t, db, after, millracetype.JobStateCompleted)

}

func TestSequenceInsertTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{})
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertTx(ctx, tx, seqArgs{Account: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var jobs, seqs int
	seqQuery(t, db, `SELECT (SELECT count(*) FROM `+seqTable(db, "river_job")+`), (SELECT count(*) FROM `+seqTable(db, "millrace_sequence")+`)`, &jobs, &seqs)
	if jobs != 0 || seqs != 0 {
		t.Fatalf("after rollback: %d jobs, %d sequences", jobs, seqs)
	}
	// Committed, the first job of the sequence is its head at once; the
	// second, in the same transaction, waits.
	var returned []millracetype.JobState
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for n := range 2 {
			r, err := c.InsertTx(ctx, tx, seqArgs{Account: "a", N: n}, nil)
			if err != nil {
				return err
			}
			returned = append(returned, r.Job.State)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var states string
	seqQuery(t, db, `SELECT string_agg(state::text, ',' ORDER BY id) FROM `+seqTable(db, "river_job"), &states)
	if states != "available,pending" {
		t.Fatalf("states after a committed insert of two: %s", states)
	}
	if fmt.Sprint(returned) != "[available pending]" {
		t.Fatalf("states the inserts returned: %v", returned)
	}
}

func TestSequenceBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{})
	for _, tc := range []struct {
		name string
		opts InsertOpts
		want string
	}{
		{"pending", InsertOpts{Pending: true, Sequence: SequenceOpts{Key: "k"}}, "Pending"},
		{"replace", InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Args: true}, Sequence: SequenceOpts{Key: "k"}}, "Replace"},
		{"long key", InsertOpts{Sequence: SequenceOpts{Key: strings.Repeat("k", 256)}}, "1 to 255 bytes"},
		{"NUL", InsertOpts{Sequence: SequenceOpts{Key: "a\x00b"}}, "without NUL"},
		{"bad UTF-8", InsertOpts{Sequence: SequenceOpts{Key: "a\xffb"}}, "UTF-8"},
		{"block without key", InsertOpts{Sequence: SequenceOpts{BlockOnFailure: true}}, "needs a Key"},
		{"reserved metadata", InsertOpts{Metadata: []byte(`{"millrace:sequence":{"key":"x"}}`)}, "reserved"},
	} {
		_, err := c.Insert(ctx, noopArgs{}, &tc.opts)
		if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Insert gave %v, want ErrInvalidArgs about %q", tc.name, err, tc.want)
		}
	}
	_, err := c.InsertManyFast(ctx, []InsertManyParams{{Args: seqArgs{Account: "a"}}})
	if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "sequence") {
		t.Errorf("InsertManyFast of a sequenced job: %v", err)
	}
	for _, p := range []*SequenceListParams{{Limit: -1}, {Limit: 10_001}, {After: "x"}, {Queue: "Bad Queue"}} {
		if _, err := c.SequenceList(ctx, p); err == nil {
			t.Errorf("SequenceList(%+v): no error", *p)
		}
	}
	var n int
	seqQuery(t, db, `SELECT count(*) FROM `+seqTable(db, "river_job"), &n)
	if n != 0 {
		t.Fatalf("%d jobs inserted by refused calls", n)
	}
}

func seqTable(db *testfixture.DB, name string) string {
	return pgx.Identifier{db.Schema, name}.Sanitize()
}

func seqQuery(t *testing.T, db *testfixture.DB, sql string, dst ...any) {
	t.Helper()
	if err := db.Pool.QueryRow(context.Background(), sql).Scan(dst...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
