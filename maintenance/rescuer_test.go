package maintenance

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// insertUnrescuable bulk-inserts n running jobs of kind, stuck since
// attemptedAt, in one statement.
func insertUnrescuable(t *testing.T, db *testfixture.DB, n int, kind string, attemptedAt time.Time) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO `+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+`
    (args, kind, state, attempt, attempted_at, attempted_by, max_attempts, priority, queue, scheduled_at)
SELECT '{}', $1, 'running', 1, $2, '{client_gone}', 25, 1, 'default', $2
FROM generate_series(1, $3)`, kind, attemptedAt, n)
	if err != nil {
		t.Fatalf("insert %d unrescuable jobs: %v", n, err)
	}
}

// A rescuable job behind more than a batch of stuck jobs the rescuer must
// leave alone (their kind's timeout has not run out) is rescued in the
// first pass: the pass pages on by id instead of stopping at a page that
// rescued nothing.
func TestRescuerPagesPastUnrescuableJobs(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	stuckAt := time.Now().UTC().Add(-2 * time.Hour)
	insertUnrescuable(t, db, DefaultRescuerBatch+1, "slow", stuckAt)
	rescuable := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "known", State: millracetype.JobStateRunning,
		Attempt: 1, MaxAttempts: 5, AttemptedAt: &stuckAt})

	passes := make(chan struct{}, 1)
	r, err := NewRescuer(db.Exec(), &RescuerConfig{Schema: db.Schema,
		WorkerTimeout: fakeTimeouts{"known": 0, "slow": 3 * time.Hour}.lookup})
	if err != nil {
		t.Fatal(err)
	}
	r.passes = passes
	onePass(t, r, passes)

	if got := db.Job(t, rescuable.ID); got.State != millracetype.JobStateRetryable {
		t.Fatalf("job %d behind %d unrescuable jobs: state %s after one pass, want retryable", rescuable.ID,
			DefaultRescuerBatch+1, got.State)
	}
	if n := db.CountByState(t)[millracetype.JobStateRunning]; n != DefaultRescuerBatch+1 {
		t.Fatalf("%d jobs still running, want the %d unrescuable ones", n, DefaultRescuerBatch+1)
	}
}

// recordHandler keeps the messages of the records logged through it.
type recordHandler struct {
	mu       sync.Mutex
	messages []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.messages = append(h.messages, r.Message)
	return nil
}

func (h *recordHandler) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.messages {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// A pass that reaches its time bound stops after the page at hand, says
// so in the log, and the next pass continues after that page, so even
// passes too short for one page each reach every stuck job in turn.
func TestRescuerPassTimeBound(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	stuckAt := time.Now().UTC().Add(-2 * time.Hour)
	insertUnrescuable(t, db, 6, "slow", stuckAt)
	rescuable := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "known", State: millracetype.JobStateRunning,
		Attempt: 1, MaxAttempts: 5, AttemptedAt: &stuckAt})

	logs := &recordHandler{}
	passes := make(chan struct{}, 1)
	// Pages of 2 and a bound every pass reaches after its first page:
	// pages [slow, slow] three times, then [known].
	r, err := NewRescuer(db.Exec(), &RescuerConfig{Schema: db.Schema, Logger: slog.New(logs),
		Interval: time.Hour, Batch: 2, MaxPassDuration: time.Nanosecond,
		WorkerTimeout: fakeTimeouts{"known": 0, "slow": 3 * time.Hour}.lookup})
	if err != nil {
		t.Fatal(err)
	}
	r.passes = passes
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	for pass := 1; pass <= 4; pass++ {
		if pass > 1 {
			r.RunNow()
		}
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatalf("pass %d: not done within 10s", pass)
		}
		want := millracetype.JobStateRunning
		if pass == 4 {
			want = millracetype.JobStateRetryable
		}
		if state := db.Job(t, rescuable.ID).State; state != want {
			t.Fatalf("after pass %d: rescuable job %s, want %s", pass, state, want)
		}
		if n := logs.count("time bound"); n != min(pass, 3) {
			t.Fatalf("after pass %d: %d time-bound log lines, want %d", pass, n, min(pass, 3))
		}
	}
}

func TestRescuerConfigInvalid(t *testing.T) {
	t.Parallel()
	if _, err := NewRescuer(nil, &RescuerConfig{MaxPassDuration: -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "max pass duration") {
		t.Fatalf("negative MaxPassDuration: got error %v", err)
	}
	if _, err := NewRescuer(nil, nil); err == nil {
		t.Fatalf("nil config: got error %v", err)
	}
}
