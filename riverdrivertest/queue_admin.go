package riverdrivertest

import (
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testQueueAdmin checks the runtime queue management queries: QueueUpdate
// (and its metadata_changed notification) and the queue reads with job
// counts.
func (s *suite[TTx]) testQueueAdmin(t *testing.T) {
	upsert := func(t *testing.T, e *env[TTx], name string, meta []byte, at *time.Time) *millracetype.Queue {
		t.Helper()
		q, err := e.exec.QueueCreateOrSetUpdatedAt(e.ctx, &driver.QueueCreateParams{Schema: e.schema, Name: name, Metadata: meta, Now: at})
		requireNoError(t, err, "QueueCreateOrSetUpdatedAt")
		return q
	}
	get := func(t *testing.T, e *env[TTx], name string) *millracetype.Queue {
		t.Helper()
		q, err := e.exec.QueueGet(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: name})
		requireNoError(t, err, "QueueGet "+name)
		return q
	}
	requireUnchanged := func(t *testing.T, e *env[TTx], want *millracetype.Queue, what string) {
		t.Helper()
		got := get(t, e, want.Name)
		requireTime(t, got.UpdatedAt, want.UpdatedAt, what+": updated_at")
		requireSameTimePtr(t, got.PausedAt, want.PausedAt, what+": paused_at")
		requireJSON(t, got.Metadata, jsonValue(t, want.Metadata), what+": metadata")
	}

	s.run(t, "UpdateMetadata", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		old := now().Add(-time.Hour)
		upsert(t, e, "queue_a", []byte(`{"old":true}`), &old)
		other := upsert(t, e, "queue_b", []byte(`{"b":1}`), &old)
		requireNoError(t, e.exec.QueuePause(e.ctx, &driver.QueuePauseParams{Schema: e.schema, Name: "queue_a"}), "QueuePause")
		e.next(t, l) // the pause notification
		paused := get(t, e, "queue_a")

		before := now()
		q, err := e.exec.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "queue_a",
			MetadataDoUpdate: true, Metadata: []byte(`{"limit": 5,  "tier":"gold"}`)})
		after := now()
		requireNoError(t, err, "QueueUpdate")
		requireEqual(t, q.Name, "queue_a", "name")
		requireJSON(t, q.Metadata, map[string]any{"limit": 5, "tier": "gold"}, "metadata returned")
		requireBetween(t, q.UpdatedAt, before, after, "updated_at")
		requireTime(t, q.CreatedAt, old, "created_at (kept)")
		requireSameTimePtr(t, q.PausedAt, paused.PausedAt, "paused_at (kept)")
		requireUnchanged(t, e, q, "queue_a read back")
		requireUnchanged(t, e, other, "the other queue")

		// The payload is River's, byte for byte (River's producers parse it;
		// its field order and compacted metadata are what River sends).
		n := e.next(t, l)
		requireEqual(t, n.Topic, driver.TopicControl, "notification topic")
		requireEqual(t, n.Payload, `{"action":"metadata_changed","metadata":{"limit":5,"tier":"gold"},"queue":"queue_a"}`,
			"metadata_changed payload")
	})

	s.run(t, "UpdateWithoutMetadata", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		old := now().Add(-time.Hour)
		upsert(t, e, "queue_a", []byte(`{"keep":1}`), &old)
		before := now()
		q, err := e.exec.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "queue_a",
			Metadata: []byte(`{"ignored":true}`)})
		after := now()
		requireNoError(t, err, "QueueUpdate without MetadataDoUpdate")
		requireJSON(t, q.Metadata, map[string]any{"keep": 1}, "metadata (kept)")
		requireBetween(t, q.UpdatedAt, before, after, "updated_at (refreshed)")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})

	s.run(t, "UpdateBadInput", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		old := now().Add(-time.Hour)
		q := upsert(t, e, "queue_a", []byte(`{"keep":1}`), &old)

		_, err := e.exec.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "missing",
			MetadataDoUpdate: true, Metadata: []byte(`{"a":1}`)})
		requireErrorIs(t, err, millracetype.ErrNotFound, "QueueUpdate of a missing queue")
		_, err = e.exec.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "missing"})
		requireErrorIs(t, err, millracetype.ErrNotFound, "QueueUpdate of a missing queue without metadata")

		for _, bad := range []string{``, `[1,2]`, `"text"`, `null`, `{"a":`, `not json`, `{"a":1} {"b":2}`} {
			_, err := e.exec.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "queue_a",
				MetadataDoUpdate: true, Metadata: []byte(bad)})
			if err == nil {
				t.Fatalf("QueueUpdate with metadata %q: no error", bad)
			}
		}
		requireUnchanged(t, e, q, "queue after the refused updates")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})

	s.run(t, "UpdateRolledBack", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		old := now().Add(-time.Hour)
		q := upsert(t, e, "queue_a", []byte(`{"keep":1}`), &old)
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		updated, err := tx.QueueUpdate(e.ctx, &driver.QueueUpdateParams{Schema: e.schema, Name: "queue_a",
			MetadataDoUpdate: true, Metadata: []byte(`{"new":1}`)})
		requireNoError(t, err, "QueueUpdate in a transaction")
		requireJSON(t, updated.Metadata, map[string]any{"new": 1}, "metadata seen inside the transaction")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		requireUnchanged(t, e, q, "queue after the rollback")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})

	s.run(t, "GetWithCounts", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		upsert(t, e, "queue_a", []byte(`{"m":1}`), &at)
		upsert(t, e, "queue_b", nil, nil)
		want := map[millracetype.JobState]int{
			millracetype.JobStateAvailable: 3, millracetype.JobStatePending: 1, millracetype.JobStateRetryable: 2,
			millracetype.JobStateRunning: 4, millracetype.JobStateScheduled: 5,
			millracetype.JobStateCompleted: 6, millracetype.JobStateCancelled: 1, millracetype.JobStateDiscarded: 2,
		}
		for state, n := range want {
			for range n {
				p := inState(state, at)
				p.Queue = "queue_a"
				e.insertFull(t, p)
			}
			// Jobs of other queues (one with no river_queue row) never count.
			p := inState(state, at)
			p.Queue = "queue_c"
			e.insertFull(t, p)
		}
		qc, err := e.exec.QueueGetWithCounts(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: "queue_a"})
		requireNoError(t, err, "QueueGetWithCounts")
		requireTime(t, qc.CreatedAt, at, "created_at")
		requireJSON(t, qc.Metadata, map[string]any{"m": 1}, "metadata")
		requireEqual(t, qc.Counts, millracetype.QueueJobCounts{Available: 3, Pending: 1, Retryable: 2, Running: 4, Scheduled: 5},
			"counts of queue_a")
		requireEqual(t, qc.Name, "queue_a", "name")

		empty, err := e.exec.QueueGetWithCounts(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: "queue_b"})
		requireNoError(t, err, "QueueGetWithCounts of a queue without jobs")
		requireEqual(t, empty.Counts, millracetype.QueueJobCounts{}, "counts of queue_b")

		_, err = e.exec.QueueGetWithCounts(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: "queue_c"})
		requireErrorIs(t, err, millracetype.ErrNotFound, "QueueGetWithCounts of a queue with jobs but no row")
	})

	s.run(t, "ListWithCounts", func(t *testing.T, e *env[TTx]) {
		at := now()
		for _, n := range []string{"queue_c", "queue_a", "queue_b"} {
			upsert(t, e, n, nil, &at)
		}
		for i, name := range []string{"queue_a", "queue_b", "queue_c"} {
			for range i + 1 {
				p := inState(millracetype.JobStateAvailable, at)
				p.Queue = name
				e.insertFull(t, p)
			}
			p := inState(millracetype.JobStateRunning, at)
			p.Queue = name
			e.insertFull(t, p)
		}
		list := func(limit int) []*millracetype.QueueWithCounts {
			t.Helper()
			qs, err := e.exec.QueueListWithCounts(e.ctx, &driver.QueueListParams{Schema: e.schema, Limit: limit})
			requireNoError(t, err, "QueueListWithCounts")
			return qs
		}
		all := list(10)
		requireEqual(t, len(all), 3, "queues listed")
		for i, qc := range all {
			requireEqual(t, qc.Name, []string{"queue_a", "queue_b", "queue_c"}[i], "queues listed by name")
			requireEqual(t, qc.Counts, millracetype.QueueJobCounts{Available: int64(i + 1), Running: 1}, "counts of "+qc.Name)
		}
		two := list(2)
		requireEqual(t, len(two), 2, "queues listed with limit 2")
		requireEqual(t, two[1].Name, "queue_b", "second queue with limit 2")
		requireEqual(t, two[1].Counts, all[1].Counts, "counts with limit 2")
		_, err := e.exec.QueueListWithCounts(e.ctx, &driver.QueueListParams{Schema: e.schema, Limit: 0})
		if err == nil {
			t.Fatal("QueueListWithCounts with limit 0: no error")
		}
	})
}
