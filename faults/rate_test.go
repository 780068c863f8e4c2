package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/producer"
)

// The rate limit test (issue 23): N jobs per interval per key, 5 keys, 4
// OS processes, several windows; in every window every key starts between
// N-1 and N jobs (but the last window, cut by the stop), never more.

// rateJob is a job of one key (an API token, say).
type rateJob struct {
	Token string `json:"token"`
}

func (rateJob) Kind() string { return "rate_job" }

// rateSizes are the test's figures: reduced by default (50 per 10 s over 3
// windows), the with MILLRACE_FAULTS=full (100 per minute over 3
// minutes). Both have more candidates than a fetch reads at once (N+1 of
// each of the 5 keys, over 200), which a fetch starving the keys it does
// not read first fails.
type rateSizes struct {
	n        int
	interval time.Duration
	windows  int
}

func loadRateSizes(t testing.TB) rateSizes {
	switch mode := os.Getenv(envMode); mode {
	case "", "reduced":
		return rateSizes{n: 50, interval: 10 * time.Second, windows: 3}
	case "full":
		return rateSizes{n: 100, interval: time.Minute, windows: 3}
	default:
		t.Fatalf("%s=%q: want full or reduced", envMode, mode)
		return rateSizes{}
	}
}

const (
	rateKeys      = 5
	rateProcesses = 4
	rateWorkers   = 10 // per process
)

// rateHelperMain runs a client of the test: queue default with the rate
// limit spec ("N/interval") per token; its jobs do nothing.
func rateHelperMain(spec string) int {
	fail := helperFail(os.Getenv(helperID))
	ns, is, _ := strings.Cut(spec, "/")
	n, err := strconv.Atoi(ns)
	if err != nil {
		return fail(fmt.Errorf("%s %q: %w", helperRate, spec, err))
	}
	interval, err := time.ParseDuration(is)
	if err != nil {
		return fail(fmt.Errorf("%s %q: %w", helperRate, spec, err))
	}
	h, err := openSimpleHelper(slog.LevelInfo)
	if err != nil {
		return fail(err)
	}
	defer h.pool.Close()
	ws := client.NewWorkers()
	client.AddWorker(ws, client.WorkFunc(func(context.Context, *client.Job[rateJob]) error { return nil }))
	c, err := client.New(pgxv5.New(h.pool), &client.Config{
		ID: h.id, Schema: h.schema, Logger: h.logger, Workers: ws,
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: h.workers,
			RateLimits: []client.RateLimit{{N: n, Interval: interval, PartitionByArgs: []string{"token"}}}}},
	})
	if err != nil {
		return fail(err)
	}
	return serveHelper(h.id, c, fail)
}

// TestRateLimitProcesses is the acceptance test of rate limits.
func TestRateLimitProcesses(t *testing.T) {
	rs := loadRateSizes(t)
	e := newEnv(t, loadSizes(t))
	ctx := context.Background()
	spec := fmt.Sprintf("%d/%v", rs.n, rs.interval)
	var helpers []*helper
	for i := range rateProcesses {
		helpers = append(helpers, e.startHelper(helperOpts{id: fmt.Sprintf("rate-%d", i), workers: rateWorkers, rate: spec}))
	}

	// The jobs become available at the start of the next window but one
	// (the helpers are running by then), more of every key than the
	// windows can start, so the queue never runs short.
	var now time.Time
	if err := e.db.Pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	_, first := producer.RateWindow(now.Add(rs.interval/2), rs.interval)
	perKey := rs.n*(rs.windows+1) + rs.n/2
	var params []client.InsertManyParams
	for k := range rateKeys {
		for range perKey {
			params = append(params, client.InsertManyParams{Args: rateJob{Token: fmt.Sprintf("t%d", k)},
				InsertOpts: &client.InsertOpts{ScheduledAt: first, MaxAttempts: 1}})
		}
	}
	if _, err := e.admin.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	// Run the windows and a part of the next one, then stop every process.
	end := first.Add(time.Duration(rs.windows)*rs.interval + rs.interval/3)
	t.Logf("%d jobs per key of %d keys from %v, %s per key, %d processes, until %v", perKey, rateKeys, first, spec, rateProcesses, end)
	time.Sleep(time.Until(end)) // the test is about time windows: it waits for them to pass
	for _, h := range helpers {
		h.stop()
	}

	// Count the started jobs (attempted_at, written by the fetch that
	// took them, at the time their window was chosen by) per key and
	// window.
	rows, err := e.db.Pool.Query(ctx, `SELECT args->>'token', attempted_at, state::text, attempt, attempted_by[1] FROM river_job WHERE attempted_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[time.Time]map[string]int{}
	byProcess := map[string]int{}
	for rows.Next() {
		var tok, state, by string
		var at time.Time
		var attempt int
		if err := rows.Scan(&tok, &at, &state, &attempt, &by); err != nil {
			t.Fatal(err)
		}
		byProcess[by]++
		if state != "completed" || attempt != 1 {
			t.Errorf("a job of %s started at %v is %s at attempt %d", tok, at, state, attempt)
		}
		w, _ := producer.RateWindow(at, rs.interval)
		if counts[w] == nil {
			counts[w] = map[string]int{}
		}
		counts[w][tok]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for i := 0; i <= rs.windows; i++ {
		w := first.Add(time.Duration(i) * rs.interval)
		var line []string
		for k := range rateKeys {
			tok := fmt.Sprintf("t%d", k)
			n := counts[w][tok]
			line = append(line, fmt.Sprintf("%s=%d", tok, n))
			last := i == rs.windows
			if n > rs.n || (!last && n < rs.n-1) {
				t.Errorf("window %v (%d of %d), key %s: %d started, want %d..%d", w, i+1, rs.windows, tok, n, rs.n-1, rs.n)
			}
		}
		t.Logf("window %v: %s", w.Format(time.TimeOnly), strings.Join(line, " "))
		delete(counts, w)
	}
	for w, c := range counts {
		t.Errorf("jobs started in window %v, outside the test's: %v", w, c)
	}
	// The limits were shared: more than one process took jobs.
	t.Logf("jobs started by process: %v", byProcess)
	if len(byProcess) < 2 {
		t.Errorf("only %d process(es) started jobs: the limit was not shared", len(byProcess))
	}
}
