package client

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/completer"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/millracetype"
)

// jobPathClient returns a client set up to run no-op jobs through its
// executor without a database: its completer is not started, so Complete
// only queues the outcome (the write is the completer's, measured with the
// driver). timeout is Config.JobTimeout.
func jobPathClient(tb testing.TB, timeout time.Duration) (*Client[pgx.Tx], context.Context) {
	tb.Helper()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	c, err := New(pgxv5.New(nil), &Config{Workers: workers, Logger: testLogger(), JobTimeout: timeout})
	if err != nil {
		tb.Fatal(err)
	}
	// Room for every outcome a measurement queues: Complete never blocks.
	c.completer = completer.New(nil, &completer.Config{MaxPending: 1 << 20})
	workCtx, cancel := context.WithCancelCause(context.Background())
	tb.Cleanup(func() { cancel(nil) })
	return c, workCtx
}

// noopRow returns a fetched no-op job as the driver gives it.
func noopRow() *millracetype.JobRow {
	now := time.Now()
	return &millracetype.JobRow{ID: 1, Kind: "noop", Queue: QueueDefault, State: millracetype.JobStateRunning,
		Args: json.RawMessage(`{"n":1}`), Attempt: 1, MaxAttempts: 25, ScheduledAt: now, AttemptedAt: &now,
		Metadata: json.RawMessage(`{}`)}
}

// runJob runs one job as a producer does: the executor makes its context
// below workCtx, and the producer cancels it once the job is done. A
// producer reuses its Cancels; cancel is a fresh one, made beforehand so
// as not to be counted.
func runJob(c *Client[pgx.Tx], workCtx context.Context, row *millracetype.JobRow, cancel *producer.Cancel) {
	c.exec.WorkBound(workCtx, row, cancel)
	cancel.Cancel(context.Canceled)
}

// cancels returns n fresh Cancels for runJob.
func cancels(n int) []producer.Cancel { return make([]producer.Cancel, n) }

// maxJobPathAllocs bounds the allocations of the client's side of a no-op
// job, from the producer's hand-off (its job context included) to the
// outcome queued in the completer, with the default job timeout and with
// none. The driver's share (decoding the fetched row, encoding the
// outcome) is not counted. Measured: 5 with either (issue 26; 18 and 9
// before).
var maxJobPathAllocs = map[string]float64{"default timeout": 5, "no timeout": 5}

// raceAllocSlack is added to the bounds under the race detector, whose
// sync.Pool drops a quarter of what is put back on purpose (the args
// decoders and stuck watches are pooled): 1 to 2 more per job on average.
const raceAllocSlack = 3

// TestJobPathAllocs fails when the allocations per job of the job path
// grow past maxJobPathAllocs: a lean job path is a performance goal (issue
// 26) that a benchmark would only show when someone looks.
func TestJobPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations")
	}
	for name, timeout := range map[string]time.Duration{"default timeout": 0, "no timeout": -1} {
		t.Run(name, func(t *testing.T) {
			c, workCtx := jobPathClient(t, timeout)
			row := noopRow()
			const runs = 1000
			fresh, i := cancels(runs+1), 0 // AllocsPerRun runs once more to warm up
			got := testing.AllocsPerRun(runs, func() { runJob(c, workCtx, row, &fresh[i]); i++ })
			t.Logf("%s: %.0f allocations per job", name, got)
			limit := maxJobPathAllocs[name]
			if raceEnabled {
				limit += raceAllocSlack
			}
			if got > limit {
				t.Errorf("%s: %.0f allocations per job, want at most %.0f", name, got, limit)
			}
		})
	}
}

// BenchmarkJobPath measures the client's side of a no-op job (see
// TestJobPathAllocs) with the default job timeout.
func BenchmarkJobPath(b *testing.B) {
	for _, bc := range []struct {
		name    string
		timeout time.Duration
	}{{"default_timeout", 0}, {"no_timeout", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			c, workCtx := jobPathClient(b, bc.timeout)
			row := noopRow()
			fresh := cancels(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				runJob(c, workCtx, row, &fresh[i])
			}
		})
	}
}
