package client

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func jsonEq(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(a, b)
}

// TestQueueUpdate: new metadata reaches every client working the queue,
// the one that changed it (at once) and another one (by notification), as
// one event each.
func TestQueueUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	a := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	b := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	aEvents, unsubA := a.Subscribe(EventKindQueueMetadataChanged)
	defer unsubA()
	bEvents, unsubB := b.Subscribe(EventKindQueueMetadataChanged)
	defer unsubB()
	start(t, a)
	start(t, b)

	before, err := a.QueueGet(ctx, QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	q, err := a.QueueUpdate(ctx, QueueDefault, &QueueUpdateParams{Metadata: []byte(`{"limit": 3, "owner": "ops"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, q.Metadata, `{"limit":3,"owner":"ops"}`) || q.Name != QueueDefault || !q.UpdatedAt.After(before.UpdatedAt) {
		t.Fatalf("updated queue %+v (metadata %s)", q, q.Metadata)
	}
	for name, ch := range map[string]<-chan *Event{"a": aEvents, "b": bEvents} {
		ev := waitEvent(t, ch)
		if ev.Kind != EventKindQueueMetadataChanged || ev.Queue != QueueDefault || !jsonEq(t, ev.QueueMetadata, `{"owner":"ops","limit":3}`) {
			t.Fatalf("client %s: event %+v (metadata %s)", name, ev, ev.QueueMetadata)
		}
	}
	if p := b.producer(QueueDefault); p == nil || !jsonEq(t, p.Metadata(), `{"limit":3,"owner":"ops"}`) {
		t.Fatal("client b's producer does not hold the new metadata")
	}

	// No metadata: only updated_at changes, and nobody hears of it.
	again, err := a.QueueUpdate(ctx, QueueDefault, &QueueUpdateParams{})
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, again.Metadata, `{"limit":3,"owner":"ops"}`) || !again.UpdatedAt.After(q.UpdatedAt) {
		t.Fatalf("update without metadata: %+v", again)
	}
	if _, err := a.QueueUpdate(ctx, QueueDefault, nil); err != nil {
		t.Fatalf("nil params: %v", err)
	}
	// The same value again is not a change either; a different one is.
	if _, err := b.QueueUpdate(ctx, QueueDefault, &QueueUpdateParams{Metadata: []byte(`{"owner":"ops","limit":3}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.QueueUpdate(ctx, QueueDefault, &QueueUpdateParams{Metadata: []byte(`{"limit":4}`)}); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan *Event{"a": aEvents, "b": bEvents} {
		if ev := waitEvent(t, ch); !jsonEq(t, ev.QueueMetadata, `{"limit":4}`) {
			t.Fatalf("client %s: next event has metadata %s, want the second change only", name, ev.QueueMetadata)
		}
	}
}

// TestQueueUpdatePollOnly: a poll-only client applies its own update at
// once, without a notification coming back.
func TestQueueUpdatePollOnly(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil), PollOnly: true})
	events, unsub := c.Subscribe(EventKindQueueMetadataChanged)
	defer unsub()
	start(t, c)
	if _, err := c.QueueUpdate(context.Background(), QueueDefault, &QueueUpdateParams{Metadata: []byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, events); !jsonEq(t, ev.QueueMetadata, `{"x":1}`) {
		t.Fatalf("event metadata %s", ev.QueueMetadata)
	}
}

// TestQueueUpdateBadInput: each refusal is a specific error, and the row
// is untouched.
func TestQueueUpdateBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: "q",
		Metadata: []byte(`{"keep":true}`)}); err != nil {
		t.Fatal(err)
	}
	before, err := c.QueueGet(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, metadata string
		want           error
	}{
		{"missing", `{"a":1}`, ErrNotFound},
		{"missing", ``, ErrNotFound},
		{"*", `{"a":1}`, ErrInvalidArgs},
		{"Not A Queue", `{"a":1}`, ErrInvalidArgs},
		{"q", `[1,2]`, ErrInvalidArgs},
		{"q", `"text"`, ErrInvalidArgs},
		{"q", `null`, ErrInvalidArgs},
		{"q", `{"a":`, ErrInvalidArgs},
		{"q", `{"a":1} {"b":2}`, ErrInvalidArgs},
	} {
		_, err := c.QueueUpdate(ctx, tc.name, &QueueUpdateParams{Metadata: []byte(tc.metadata)})
		if !errors.Is(err, tc.want) {
			t.Errorf("QueueUpdate(%q, %q): %v, want %v", tc.name, tc.metadata, err, tc.want)
		}
	}
	after, err := c.QueueGet(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, after.Metadata, `{"keep":true}`) || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("queue changed by refused updates: %+v", after)
	}
}

// TestQueueUpdateTx: the change and its notification go with the
// transaction.
func TestQueueUpdateTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	events, unsub := c.Subscribe(EventKindQueueMetadataChanged)
	defer unsub()
	start(t, c)
	update := func(metadata string, commit bool) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		q, err := c.QueueUpdateTx(ctx, tx, QueueDefault, &QueueUpdateParams{Metadata: []byte(metadata)})
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEq(t, q.Metadata, metadata) {
			t.Fatalf("metadata inside the transaction %s", q.Metadata)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	update(`{"v":"rolled back"}`, false)
	update(`{"v":"committed"}`, true)
	// Notifications come in commit order: the first event is the commit's.
	if ev := waitEvent(t, events); !jsonEq(t, ev.QueueMetadata, `{"v":"committed"}`) {
		t.Fatalf("event metadata %s", ev.QueueMetadata)
	}
	q, err := c.QueueGet(ctx, QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, q.Metadata, `{"v":"committed"}`) {
		t.Fatalf("stored metadata %s", q.Metadata)
	}
}

// TestQueueGetWithCounts: the counts of live states, per queue; get and
// list agree; bad input is refused.
func TestQueueGetWithCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	for _, name := range []string{"alpha", "beta"} {
		if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	add := func(queue string, state millracetype.JobState, n int) {
		for range n {
			p := &driver.JobInsertFullParams{Queue: queue, State: state}
			switch {
			case state.Finalized():
				p.FinalizedAt, p.Attempt = &now, 1
			case state == millracetype.JobStateRunning:
				p.AttemptedAt, p.Attempt = &now, 1
			}
			db.InsertJob(t, p)
		}
	}
	add("alpha", millracetype.JobStateAvailable, 4)
	add("alpha", millracetype.JobStateRunning, 2)
	add("alpha", millracetype.JobStateRetryable, 1)
	add("alpha", millracetype.JobStateScheduled, 3)
	add("alpha", millracetype.JobStatePending, 1)
	add("alpha", millracetype.JobStateCompleted, 5)
	add("alpha", millracetype.JobStateDiscarded, 1)
	add("beta", millracetype.JobStateAvailable, 1)

	want := map[string]millracetype.QueueJobCounts{
		"alpha": {Available: 4, Running: 2, Retryable: 1, Scheduled: 3, Pending: 1},
		"beta":  {Available: 1},
	}
	for name, counts := range want {
		q, err := c.QueueGetWithCounts(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if q.Name != name || q.Counts != counts {
			t.Errorf("QueueGetWithCounts(%s): %s %+v, want %+v", name, q.Name, q.Counts, counts)
		}
	}
	list, err := c.QueueListWithCounts(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" || list[0].Counts != want["alpha"] || list[1].Counts != want["beta"] {
		t.Fatalf("QueueListWithCounts: %+v", list)
	}
	if one, err := c.QueueListWithCounts(ctx, 1); err != nil || len(one) != 1 || one[0].Name != "alpha" {
		t.Fatalf("QueueListWithCounts(1): %v %v", one, err)
	}

	// The counts move with the jobs.
	if _, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Queue: "beta"}); err != nil {
		t.Fatal(err)
	}
	if q, err := c.QueueGetWithCounts(ctx, "beta"); err != nil || q.Counts.Available != 2 {
		t.Fatalf("after an insert: %+v %v", q, err)
	}

	if _, err := c.QueueGetWithCounts(ctx, "gamma"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing queue: %v", err)
	}
	if _, err := c.QueueGetWithCounts(ctx, "Bad Name"); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("bad name: %v", err)
	}
	for _, limit := range []int{-1, 10001} {
		if _, err := c.QueueListWithCounts(ctx, limit); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if q, err := c.QueueGetWithCountsTx(ctx, tx, "alpha"); err != nil || q.Counts != want["alpha"] {
		t.Fatalf("QueueGetWithCountsTx: %+v %v", q, err)
	}
	if qs, err := c.QueueListWithCountsTx(ctx, tx, 10); err != nil || len(qs) != 2 {
		t.Fatalf("QueueListWithCountsTx: %v %v", qs, err)
	}
}
