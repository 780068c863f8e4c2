package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestSubscribeKinds: a subscriber gets only the kinds it asked for; one
// that asked for none gets every kind.
func TestSubscribeKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[outcomeArgs]) error {
		switch job.Args.Mode {
		case "error":
			return errors.New("nope")
		case "cancel":
			return JobCancel(nil)
		case "snooze":
			return JobSnooze(time.Hour)
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(4), Workers: workers})
	all, unsubAll := c.Subscribe()
	defer unsubAll()
	failed, unsubFailed := c.Subscribe(EventKindJobFailed)
	two, unsubTwo := c.Subscribe(EventKindJobCancelled, EventKindJobSnoozed)
	start(t, c)

	want := map[string]EventKind{"ok": EventKindJobCompleted, "error": EventKindJobFailed,
		"cancel": EventKindJobCancelled, "snooze": EventKindJobSnoozed}
	byID := map[int64]EventKind{}
	for mode, kind := range want {
		res, err := c.Insert(ctx, outcomeArgs{Mode: mode}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		byID[res.Job.ID] = kind
	}
	for range want {
		ev := waitEvent(t, all)
		if ev.Kind != byID[ev.Job.ID] {
			t.Errorf("job %d: event %s, want %s", ev.Job.ID, ev.Kind, byID[ev.Job.ID])
		}
		if ev.Stats == nil {
			t.Errorf("event %s has no stats", ev.Kind)
		}
	}
	// Every event has been sent to every subscriber once the emitting call
	// returns; ending a subscription waits for an emit in progress, so the
	// closed channels hold all they will ever get.
	unsubFailed()
	unsubTwo()
	collect := func(ch <-chan *Event) []EventKind {
		var kinds []EventKind
		for ev := range ch {
			kinds = append(kinds, ev.Kind)
		}
		return kinds
	}
	if got := collect(failed); len(got) != 1 || got[0] != EventKindJobFailed {
		t.Errorf("failed-only subscriber got %v", got)
	}
	got := collect(two)
	if len(got) != 2 || got[0] == got[1] || (got[0] != EventKindJobCancelled && got[0] != EventKindJobSnoozed) ||
		(got[1] != EventKindJobCancelled && got[1] != EventKindJobSnoozed) {
		t.Errorf("cancelled+snoozed subscriber got %v", got)
	}
	select {
	case ev := <-all:
		t.Errorf("unexpected extra event %s", ev.Kind)
	default:
	}
}

// TestSubscribeSlowSubscriber: a subscriber that never reads (buffer 1)
// does not hold up the workers; it keeps the first event.
func TestSubscribeSlowSubscriber(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: oneQueue(10), Workers: workers, SubscribeBufferSize: 1})
	stuck, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)
	const n = 100
	params := make([]InsertManyParams, n)
	for i := range params {
		params[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for db.CountByState(t)[millracetype.JobStateCompleted] != n {
		if time.Now().After(deadline) {
			t.Fatalf("jobs did not all complete with a stuck subscriber: %v", db.CountByState(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(stuck) != 1 {
		t.Errorf("stuck subscriber holds %d events, want its buffer's 1", len(stuck))
	}
	if ev := <-stuck; ev.Kind != EventKindJobCompleted {
		t.Errorf("event %s", ev.Kind)
	}
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	gone, unsubscribe := c.Subscribe()
	kept, unsubKept := c.Subscribe(EventKindJobCompleted)
	defer unsubKept()
	unsubscribe()
	unsubscribe() // idempotent
	if _, ok := <-gone; ok {
		t.Fatal("channel still open after unsubscribe")
	}
	start(t, c)
	// Events keep flowing to the other subscriber (and sending to the ended
	// one would panic on its closed channel).
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, kept); ev.Job.ID != res.Job.ID {
		t.Fatalf("event for job %d, want %d", ev.Job.ID, res.Job.ID)
	}
}

// TestEventStats: the queue wait is from the job's due time to its fetch,
// the run duration covers Work.
func TestEventStats(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const work = 20 * time.Millisecond
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		time.Sleep(work)
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	due := time.Now().Add(-time.Hour)
	job := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", Args: []byte(`{}`), ScheduledAt: &due})
	start(t, c)
	ev := waitEvent(t, events)
	if ev.Job.ID != job.ID || ev.Stats == nil {
		t.Fatalf("event %+v", ev)
	}
	if w := ev.Stats.QueueWaitDuration; w < 59*time.Minute || w > 61*time.Minute {
		t.Errorf("queue wait %s, want about an hour", w)
	}
	if d := ev.Stats.RunDuration; d < work || d > 10*time.Second {
		t.Errorf("run duration %s, want at least %s", d, work)
	}
	if ev.Queue != "" {
		t.Errorf("job event with queue %q", ev.Queue)
	}
}
