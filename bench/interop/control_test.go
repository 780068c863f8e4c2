package interop

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/millrace/millrace/client"
)

type blockArgs struct {
	N int `json:"n"`
}

func (blockArgs) Kind() string { return "interop_block" }

// How long a control notification may take to act. Both systems also poll
// (running-job cancels and queue state every minute when notifications
// work), so acting within this proves the notification got through.
const controlWithin = 5 * time.Second

// blocker is a worker that tells when a job starts and then waits for the
// job's context to end (or the test to finish).
type blocker struct {
	started chan int64
	ended   chan error
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan int64, 10), ended: make(chan error, 10), release: make(chan struct{})}
}

func (b *blocker) work(ctx context.Context, id int64) error {
	b.started <- id
	select {
	case <-ctx.Done():
		b.ended <- ctx.Err()
		return ctx.Err()
	case <-b.release:
		b.ended <- nil
		return nil
	}
}

// releaseAtCleanup lets a blocked job return before its client is stopped
// (cleanups run last registered first).
func (b *blocker) releaseAtCleanup(t *testing.T) { t.Cleanup(func() { close(b.release) }) }

func (b *blocker) waitStarted(t *testing.T) int64 {
	t.Helper()
	select {
	case id := <-b.started:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not start within 10 s")
		return 0
	}
}

func (b *blocker) waitCancelled(t *testing.T, who string) {
	t.Helper()
	select {
	case err := <-b.ended:
		if err == nil {
			t.Fatalf("the job was released, not cancelled")
		}
	case <-time.After(controlWithin):
		t.Fatalf("a cancel issued by %s did not reach the running job within %s", who, controlWithin)
	}
}

// checkCancelledRow checks the row of a job cancelled while it ran, as
// River reads it.
func checkCancelledRow(t *testing.T, get func() (*rivertype.JobRow, error)) {
	t.Helper()
	var job *rivertype.JobRow
	if !eventually(controlWithin, func() bool {
		var err error
		job, err = get()
		if err != nil {
			t.Fatal(err)
		}
		return job.State == rivertype.JobStateCancelled
	}) {
		t.Fatalf("job is %s, want cancelled", job.State)
	}
	if job.FinalizedAt == nil {
		t.Errorf("cancelled job has no finalized_at")
	}
	var meta map[string]any
	if err := json.Unmarshal(job.Metadata, &meta); err != nil {
		t.Fatal(err)
	}
	if s, _ := meta["cancel_attempted_at"].(string); s == "" {
		t.Errorf("metadata %s has no cancel_attempted_at", job.Metadata)
	} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		t.Errorf("cancel_attempted_at %q is not RFC 3339: %v", s, err)
	}
	if len(job.Errors) != 1 || job.Errors[0].Error != "JobCancelError: job cancelled remotely" || job.Errors[0].Attempt != 1 {
		t.Errorf("errors %+v, want one, of attempt 1: JobCancelError: job cancelled remotely", job.Errors)
	}
}

// TestCancelFromRiverReachesMillrace: River's JobCancel cancels a job a
// millrace client is running.
func TestCancelFromRiverReachesMillrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t, true)
	b := newBlocker()
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[blockArgs]) error { return b.work(ctx, job.ID) }))
	newMillraceClient(t, schema, &client.Config{Workers: workers, Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}}})
	b.releaseAtCleanup(t)
	rc := newRiverClient(t, schema, nil)
	res, err := rc.Insert(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := b.waitStarted(t); id != res.Job.ID {
		t.Fatalf("job %d started, want %d", id, res.Job.ID)
	}
	if _, err := rc.JobCancel(ctx, res.Job.ID); err != nil {
		t.Fatalf("River JobCancel: %v", err)
	}
	b.waitCancelled(t, "River")
	checkCancelledRow(t, func() (*rivertype.JobRow, error) { return rc.JobGet(ctx, res.Job.ID) })
}

// TestCancelFromMillraceReachesRiver: millrace's JobCancel cancels a job a
// River client is running.
func TestCancelFromMillraceReachesRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t, false)
	b := newBlocker()
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[blockArgs]) error { return b.work(ctx, job.ID) }))
	rc := newRiverClient(t, schema, &river.Config{Workers: workers, Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}})
	b.releaseAtCleanup(t)
	mc := newMillraceClient(t, schema, nil)
	res, err := mc.Insert(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := b.waitStarted(t); id != res.Job.ID {
		t.Fatalf("job %d started, want %d", id, res.Job.ID)
	}
	if _, err := mc.JobCancel(ctx, res.Job.ID); err != nil {
		t.Fatalf("millrace JobCancel: %v", err)
	}
	b.waitCancelled(t, "millrace")
	checkCancelledRow(t, func() (*rivertype.JobRow, error) { return rc.JobGet(ctx, res.Job.ID) })
}

// pauseCheck drives a pause and a resume through one system while the
// other works the queue.
type pauseCheck struct {
	pause, resume func(name string) error
	insert        func() (int64, error)
	// events has the worker's queue events: "queue_paused", "queue_resumed".
	events <-chan string
	worked <-chan int64
	who    string
}

func (p *pauseCheck) run(t *testing.T, name string) {
	t.Helper()
	wantEvent := func(kind string) {
		t.Helper()
		deadline := time.After(controlWithin)
		for {
			select {
			case got := <-p.events:
				if got == kind {
					return
				}
			case <-deadline:
				t.Fatalf("a %s of queue %q by %s did not reach the working client within %s", kind, name, p.who, controlWithin)
			}
		}
	}
	if err := p.pause(name); err != nil {
		t.Fatalf("%s pause %q: %v", p.who, name, err)
	}
	wantEvent("queue_paused")
	id, err := p.insert()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-p.worked:
		t.Fatalf("job %d was worked while the queue was paused", got)
	case <-time.After(1500 * time.Millisecond):
	}
	if err := p.resume(name); err != nil {
		t.Fatalf("%s resume %q: %v", p.who, name, err)
	}
	wantEvent("queue_resumed")
	select {
	case got := <-p.worked:
		if got != id {
			t.Fatalf("job %d worked, want %d", got, id)
		}
	case <-time.After(controlWithin):
		t.Fatalf("the job was not worked within %s of the resume", controlWithin)
	}
}

// TestPauseFromRiverReachesMillrace: River pauses and resumes a queue (by
// name, then with "*") that a millrace client works.
func TestPauseFromRiverReachesMillrace(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"default", "*"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			_, schema := setup(t, true)
			worked := make(chan int64, 10)
			workers := client.NewWorkers()
			client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[blockArgs]) error {
				worked <- job.ID
				return nil
			}))
			mc := newMillraceClient(t, schema, &client.Config{Workers: workers,
				Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}}})
			sub, unsubscribe := mc.Subscribe(client.EventKindQueuePaused, client.EventKindQueueResumed)
			t.Cleanup(unsubscribe)
			events := make(chan string, 10)
			go func() {
				for ev := range sub {
					select {
					case events <- string(ev.Kind):
					default:
					}
				}
			}()
			rc := newRiverClient(t, schema, nil)
			(&pauseCheck{
				pause:  func(name string) error { return rc.QueuePause(ctx, name, nil) },
				resume: func(name string) error { return rc.QueueResume(ctx, name, nil) },
				insert: func() (int64, error) {
					res, err := rc.Insert(ctx, blockArgs{}, nil)
					if err != nil {
						return 0, err
					}
					return res.Job.ID, nil
				},
				events: events, worked: worked, who: "River",
			}).run(t, name)
		})
	}
}

// TestPauseFromMillraceReachesRiver: millrace pauses and resumes a queue
// (by name, then with "*") that a River client works.
func TestPauseFromMillraceReachesRiver(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"default", "*"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			_, schema := setup(t, false)
			worked := make(chan int64, 10)
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[blockArgs]) error {
				worked <- job.ID
				return nil
			}))
			rc := newRiverClient(t, schema, &river.Config{Workers: workers,
				Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}})
			sub, unsubscribe := rc.Subscribe(river.EventKindQueuePaused, river.EventKindQueueResumed)
			t.Cleanup(unsubscribe)
			events := make(chan string, 10)
			go func() {
				for ev := range sub {
					select {
					case events <- string(ev.Kind):
					default:
					}
				}
			}()
			mc := newMillraceClient(t, schema, nil)
			(&pauseCheck{
				pause:  func(name string) error { return mc.QueuePause(ctx, name) },
				resume: func(name string) error { return mc.QueueResume(ctx, name) },
				insert: func() (int64, error) {
					res, err := mc.Insert(ctx, blockArgs{}, nil)
					if err != nil {
						return 0, err
					}
					return res.Job.ID, nil
				},
				events: events, worked: worked, who: "millrace",
			}).run(t, name)
		})
	}
}

// TestInsertNotificationsWake: an insert by one system wakes the other's
// producer through the river_insert notification, in both directions. The
// working clients poll only every 30 s, so a job worked within
// controlWithin was fetched because of the notification.
func TestInsertNotificationsWake(t *testing.T) {
	t.Parallel()
	const poll = 30 * time.Second
	t.Run("River inserts, millrace works", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		_, schema := setup(t, true)
		worked := make(chan int64, 10)
		workers := client.NewWorkers()
		client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[blockArgs]) error {
			worked <- job.ID
			return nil
		}))
		newMillraceClient(t, schema, &client.Config{Workers: workers, FetchPollInterval: poll,
			Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}}})
		rc := newRiverClient(t, schema, nil)
		time.Sleep(200 * time.Millisecond) // past the producer's first fetch
		for i := range 3 {
			res, err := rc.Insert(ctx, blockArgs{N: i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case id := <-worked:
				if id != res.Job.ID {
					t.Fatalf("job %d worked, want %d", id, res.Job.ID)
				}
			case <-time.After(controlWithin):
				t.Fatalf("a job River inserted was not worked by millrace within %s (insert %d)", controlWithin, i+1)
			}
			time.Sleep(150 * time.Millisecond) // past River's insert notification cooldown
		}
	})
	t.Run("millrace inserts, River works", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		_, schema := setup(t, false)
		worked := make(chan int64, 10)
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[blockArgs]) error {
			worked <- job.ID
			return nil
		}))
		newRiverClient(t, schema, &river.Config{Workers: workers, FetchPollInterval: poll,
			Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}})
		mc := newMillraceClient(t, schema, nil)
		time.Sleep(200 * time.Millisecond)
		for i := range 3 {
			res, err := mc.Insert(ctx, blockArgs{N: i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case id := <-worked:
				if id != res.Job.ID {
					t.Fatalf("job %d worked, want %d", id, res.Job.ID)
				}
			case <-time.After(controlWithin):
				t.Fatalf("a job millrace inserted was not worked by River within %s (insert %d)", controlWithin, i+1)
			}
			time.Sleep(150 * time.Millisecond)
		}
	})
}
