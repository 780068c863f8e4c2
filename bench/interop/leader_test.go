package interop

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/millrace/millrace/client"
)

// TestLeaderElection starts a River client and a millrace client on one
// schema, each order in turn: the first becomes the leader, the second
// follows (exactly one leader), and when the leader stops the other takes
// over.
func TestLeaderElection(t *testing.T) {
	t.Parallel()
	t.Run("River first", func(t *testing.T) {
		t.Parallel()
		testLeaderHandover(t, true)
	})
	t.Run("millrace first", func(t *testing.T) {
		t.Parallel()
		testLeaderHandover(t, false)
	})
}

func testLeaderHandover(t *testing.T, riverFirst bool) {
	pool, schema := setup(t, riverFirst)
	rWorkers := river.NewWorkers()
	river.AddWorker(rWorkers, river.WorkFunc(func(context.Context, *river.Job[sharedArgs]) error { return nil }))
	mWorkers := client.NewWorkers()
	client.AddWorker(mWorkers, client.WorkFunc(func(context.Context, *client.Job[sharedArgs]) error { return nil }))
	startRiver := func() *river.Client[pgx.Tx] {
		return newRiverClient(t, schema, &river.Config{ID: "interop_river", Workers: rWorkers,
			Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}})
	}
	startMillrace := func() *client.Client[pgx.Tx] {
		return newMillraceClient(t, schema, &client.Config{ID: "interop_millrace", Workers: mWorkers,
			Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}}})
	}
	var (
		rc                *river.Client[pgx.Tx]
		mc                *client.Client[pgx.Tx]
		firstID, secondID string
	)
	if riverFirst {
		rc = startRiver()
		firstID = rc.ID()
	} else {
		mc = startMillrace()
		firstID = mc.ID()
	}
	if !eventually(10*time.Second, func() bool { return leaderID(t, pool, schema) == firstID }) {
		t.Fatalf("the first client (%s) did not become leader within 10 s; river_leader says %q", firstID, leaderID(t, pool, schema))
	}
	if riverFirst {
		mc = startMillrace()
		secondID = mc.ID()
	} else {
		rc = startRiver()
		secondID = rc.ID()
	}
	// For a while, exactly one leader: the first, and millrace knows
	// whether it is the one.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if id := leaderID(t, pool, schema); id != firstID {
			t.Fatalf("with two clients up, river_leader names %q; want the first leader %q to keep it", id, firstID)
		}
		if mc.IsLeader() != !riverFirst {
			t.Fatalf("millrace IsLeader() = %v while river_leader names %q", mc.IsLeader(), firstID)
		}
		time.Sleep(50 * time.Millisecond)
	}

	stopped := time.Now()
	if riverFirst {
		stopWithin(t, "River client", rc.Stop)
	} else {
		stopWithin(t, "millrace client", mc.Stop)
	}
	if !eventually(10*time.Second, func() bool { return leaderID(t, pool, schema) == secondID }) {
		t.Fatalf("after the leader %s stopped, %s did not take over within 10 s; river_leader says %q",
			firstID, secondID, leaderID(t, pool, schema))
	}
	if riverFirst && !eventually(5*time.Second, mc.IsLeader) {
		t.Errorf("river_leader names millrace, but its IsLeader() stays false")
	}
	if !riverFirst && mc.IsLeader() {
		t.Errorf("millrace stopped but IsLeader() is still true")
	}
	t.Logf("%s took over %s after the leader stopped", secondID, time.Since(stopped).Round(time.Millisecond))
}

// leaderID reads river_leader: the leader's ID, or "" when nobody leads.
func leaderID(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	var id string
	err := pool.QueryRow(context.Background(), "SELECT leader_id FROM "+pgx.Identifier{schema, "river_leader"}.Sanitize()).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("read river_leader: %v", err)
	}
	return id
}
