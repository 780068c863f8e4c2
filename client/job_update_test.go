package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestMetadataSet: keys set while a job runs are merged whatever the
// outcome; reserved keys, bad values and calls outside a worker are
// refused.
func TestMetadataSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	refusals := make(chan []error, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[outcomeArgs]) error {
		if err := MetadataSet(ctx, "progress", map[string]any{"done": 3, "of": 4}); err != nil {
			return err
		}
		if err := MetadataSet(ctx, "note", "first"); err != nil {
			return err
		}
		if err := MetadataSet(ctx, "note", "second"); err != nil { // replaces
			return err
		}
		switch job.Args.Mode {
		case "refusals":
			refusals <- []error{MetadataSet(ctx, "river:resumable_step", "x"), MetadataSet(ctx, "bad", make(chan int))}
		case "fail":
			return errors.New("failed after setting metadata")
		case "panic":
			panic("panicked after setting metadata")
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(3), Workers: workers})
	start(t, c)
	ids := map[string]int64{}
	for _, mode := range []string{"refusals", "fail", "panic"} {
		res, err := c.Insert(ctx, outcomeArgs{Mode: mode}, &InsertOpts{MaxAttempts: 1, Metadata: []byte(`{"keep":true,"note":"old"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids[mode] = res.Job.ID
	}
	errs := recv(t, refusals, "the worker's refusals")
	if !errors.Is(errs[0], ErrReservedMetadataKey) {
		t.Errorf("river: key: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "encode chan int") {
		t.Errorf("unencodable value: %v", errs[1])
	}
	want := []byte(`{"keep":true,"note":"second","progress":{"done":3,"of":4}}`)
	for mode, state := range map[string]millracetype.JobState{"refusals": millracetype.JobStateCompleted,
		"fail": millracetype.JobStateDiscarded, "panic": millracetype.JobStateDiscarded} {
		job := waitState(t, db, ids[mode], state)
		if !sameJSON(t, job.Metadata, want) {
			t.Errorf("%s: metadata %s", mode, job.Metadata)
		}
	}
	if err := MetadataSet(ctx, "x", 1); !errors.Is(err, ErrNotInWorker) {
		t.Errorf("outside a worker: %v", err)
	}
	if err := MetadataSet(ctx, "river:x", 1); !errors.Is(err, ErrReservedMetadataKey) {
		t.Errorf("river: key outside a worker: %v", err)
	}
}

// TestJobUpdate: metadata and output from outside, in a transaction or
// not; bad input writes nothing.
func TestJobUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	res, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Metadata: []byte(`{"keep":1,"over":"old"}`)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.ID

	job, err := c.JobUpdate(ctx, id, &JobUpdateParams{Metadata: []byte(`{"over":"new","list":[1,2]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, job.Metadata, []byte(`{"keep":1,"over":"new","list":[1,2]}`)) || job.State != millracetype.JobStateAvailable {
		t.Fatalf("after metadata update: %s %s", job.State, job.Metadata)
	}
	job, err = c.JobUpdate(ctx, id, &JobUpdateParams{Output: map[string]int{"total": 7}, Metadata: []byte(`{"also":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte(`{"keep":1,"over":"new","list":[1,2],"also":true,"output":{"total":7}}`)
	if !sameJSON(t, job.Metadata, want) || !sameJSON(t, db.Job(t, id).Metadata, want) {
		t.Fatalf("after output update: %s", job.Metadata)
	}
	if job, err := c.JobUpdate(ctx, id, nil); err != nil || !sameJSON(t, job.Metadata, want) {
		t.Fatalf("nil params: %v %v", job, err)
	}

	bad := []struct {
		name   string
		params *JobUpdateParams
		target error
	}{
		{"array metadata", &JobUpdateParams{Metadata: []byte(`[1]`)}, ErrInvalidArgs},
		{"null metadata", &JobUpdateParams{Metadata: []byte(`null`)}, ErrInvalidArgs},
		{"string metadata", &JobUpdateParams{Metadata: []byte(`"x"`)}, ErrInvalidArgs},
		{"invalid JSON", &JobUpdateParams{Metadata: []byte(`{"a":`)}, ErrInvalidArgs},
		{"river: key", &JobUpdateParams{Metadata: []byte(`{"ok":1,"river:resumable_step":"x"}`)}, ErrReservedMetadataKey},
		{"output twice", &JobUpdateParams{Metadata: []byte(`{"output":1}`), Output: 2}, ErrInvalidArgs},
		{"unencodable output", &JobUpdateParams{Output: make(chan int)}, ErrInvalidArgs},
		{"oversized output", &JobUpdateParams{Output: strings.Repeat("x", MaxOutputSize)}, ErrInvalidArgs},
	}
	for _, b := range bad {
		if _, err := c.JobUpdate(ctx, id, b.params); !errors.Is(err, b.target) {
			t.Errorf("%s: %v, want %v", b.name, err, b.target)
		}
	}
	if _, err := c.JobUpdate(ctx, id+1000, &JobUpdateParams{Metadata: []byte(`{"a":1}`)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if got := db.Job(t, id); !sameJSON(t, got.Metadata, want) {
		t.Fatalf("refused updates wrote: %s", got.Metadata)
	}

	// In a transaction: only a commit keeps it.
	for _, commit := range []bool{false, true} {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.JobUpdateTx(ctx, tx, id, &JobUpdateParams{Metadata: []byte(`{"tx":true}`)}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if has := millracetype.MetadataHasKey(db.Job(t, id).Metadata, "tx"); has != commit {
			t.Errorf("commit %v: key stored %v", commit, has)
		}
	}

	// Stored metadata that is not an object is left alone.
	odd := db.InsertJob(t, &driver.JobInsertFullParams{Metadata: []byte(`[1,2]`)})
	if _, err := c.JobUpdate(ctx, odd.ID, &JobUpdateParams{Output: 1}); err == nil {
		t.Error("update merged into array metadata")
	}
	if got := db.Job(t, odd.ID); !sameJSON(t, got.Metadata, []byte(`[1,2]`)) {
		t.Errorf("array metadata became %s", got.Metadata)
	}
}

// TestJobUpdateFromWorker: with no Output, a worker's JobUpdate stores the
// output recorded so far at once, while the job still runs.
func TestJobUpdateFromWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	stored := make(chan error, 1)
	release := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		if err := RecordOutput(ctx, "partial"); err != nil {
			return err
		}
		c := ClientFromContext[pgx.Tx](ctx)
		if c == nil {
			return errors.New("no client in the job's context")
		}
		_, err := c.JobUpdate(ctx, job.ID, nil)
		stored <- err
		<-release
		return RecordOutput(ctx, "final")
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := recv(t, stored, "the worker's update"); err != nil {
		t.Fatal(err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateRunning || !sameJSON(t, job.Metadata, []byte(`{"output":"partial"}`)) {
		t.Errorf("while running: %s %s", job.State, job.Metadata)
	}
	close(release)
	if job := waitState(t, db, res.Job.ID, millracetype.JobStateCompleted); !sameJSON(t, job.Metadata, []byte(`{"output":"final"}`)) {
		t.Errorf("completed with metadata %s", job.Metadata)
	}
}
