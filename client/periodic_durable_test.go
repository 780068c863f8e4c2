package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

// TestParseCronBadInput: malformed expressions, unknown zones and
// schedules that never fire are refused at configuration time.
func TestParseCronBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, want string }{
		{"", "empty spec string"},
		{"not a cron", "expected exactly 5 fields"},
		{"61 * * * *", "end of range (61) above maximum (59)"},
		{"* * * *", "expected exactly 5 fields"},
		{"CRON_TZ=UTC", "malformed"},
		{"CRON_TZ=Mars/Olympus_Mons 0 3 * * *", "provided bad location Mars/Olympus_Mons"},
		{"0 0 30 2 *", "never fires"},                                 // February 30th
		{"CRON_TZ=America/New_York 0 0 31 4,6,9,11 *", "never fires"}, // the 31st of 30-day months
	} {
		_, err := ParseCron(tc.expr)
		if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCron(%q) = %v, want ErrInvalidArgs saying %q", tc.expr, err, tc.want)
		}
	}
	for _, expr := range []string{"0 0 29 2 *", "CRON_TZ=America/New_York 30 2 * * *", "@every 90s", "@weekly"} {
		if _, err := ParseCron(expr); err != nil {
			t.Errorf("ParseCron(%q): %v", expr, err)
		}
	}
}

// neverSchedule never fires.
type neverSchedule struct{}

func (neverSchedule) Next(time.Time) time.Time { return time.Time{} }

// TestPeriodicAddBadInput: Add refuses a schedule that never fires and a
// second job with an ID already added; New refuses them in the config.
func TestPeriodicAddBadInput(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	ctor := func() (JobArgs, *InsertOpts) { return reportArgs{}, nil }
	if _, err := c.PeriodicJobs().Add(NewPeriodicJob(neverSchedule{}, ctor, nil)); !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "never fires") {
		t.Errorf("a schedule that never fires: %v", err)
	}
	h, err := c.PeriodicJobs().Add(NewPeriodicJob(PeriodicInterval(time.Hour), ctor, &PeriodicJobOpts{ID: "report"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PeriodicJobs().Add(NewPeriodicJob(PeriodicInterval(time.Minute), ctor, &PeriodicJobOpts{ID: "report"})); !errors.Is(err, ErrInvalidArgs) ||
		!strings.Contains(err.Error(), `periodic job ID already added: "report"`) {
		t.Errorf("a second job with ID report: %v", err)
	}
	// Once removed, the ID is free again.
	c.PeriodicJobs().Remove(h)
	if _, err := c.PeriodicJobs().Add(NewPeriodicJob(PeriodicInterval(time.Minute), ctor, &PeriodicJobOpts{ID: "report"})); err != nil {
		t.Errorf("re-adding a removed ID: %v", err)
	}
	job := NewPeriodicJob(PeriodicInterval(time.Hour), ctor, &PeriodicJobOpts{ID: "twice"})
	if _, err := New(db.Driver, &Config{Schema: db.Schema, PeriodicJobs: []*PeriodicJob{job, job}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a config with one ID twice: %v", err)
	}
	if _, err := New(db.Driver, &Config{Schema: db.Schema, PeriodicJobs: []*PeriodicJob{NewPeriodicJob(neverSchedule{}, ctor, nil)}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a config with a schedule that never fires: %v", err)
	}
}

// TestPeriodicDurableAcrossRestart: a client enqueues a durable 1 s job,
// stops; a second client started later continues the persisted schedule
// from the first one's last run: each tick once, none skipped while the
// second ran, and the one run (the first) for the ticks that fell while no
// client ran.
func TestPeriodicDurableAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[reportArgs]) error { return nil }))
	newOne := func() *Client[pgx.Tx] {
		return newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, PeriodicJobs: []*PeriodicJob{
			NewPeriodicJob(PeriodicInterval(time.Second), func() (JobArgs, *InsertOpts) { return reportArgs{}, nil }, &PeriodicJobOpts{ID: "every_second"}),
		}})
	}
	runs := func() []time.Time {
		rows, err := db.Pool.Query(ctx, "SELECT scheduled_at FROM "+db.Schema+".river_job WHERE kind = 'report' ORDER BY scheduled_at")
		if err != nil {
			t.Fatal(err)
		}
		at, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	first := newOne()
	start(t, first)
	testwait.For(t, 30*time.Second, "3 runs", func() bool { return len(runs()) >= 3 })
	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := runs()
	lastBefore := stopped[len(stopped)-1]
	// Let at least 2 ticks fall with no client running.
	var now time.Time
	testwait.For(t, 10*time.Second, "2 ticks to pass", func() bool {
		if err := db.Pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
			t.Fatal(err)
		}
		return now.After(lastBefore.Add(3 * time.Second))
	})
	second := newOne()
	start(t, second)
	testwait.For(t, 30*time.Second, "3 more runs", func() bool { return len(runs()) >= len(stopped)+4 })
	if err := second.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	all := runs()
	for i := 1; i < len(stopped); i++ {
		if !all[i].Equal(all[i-1].Add(time.Second)) {
			t.Fatalf("first client's runs not every second: %v", all[:len(stopped)])
		}
	}
	// The catch-up run is the first tick after the last run, then the
	// ticks from the second client's start on, each once.
	if catchUp := all[len(stopped)]; !catchUp.Equal(lastBefore.Add(time.Second)) {
		t.Fatalf("first run after the restart at %v, want the catch-up run at %v (runs %v)", catchUp, lastBefore.Add(time.Second), all)
	}
	rest := all[len(stopped)+1:]
	if !rest[0].After(now) {
		t.Fatalf("a run at %v for a tick that fell with no client running (before %v): %v", rest[0], now, all)
	}
	for i := 1; i < len(rest); i++ {
		if !rest[i].Equal(rest[i-1].Add(time.Second)) {
			t.Fatalf("second client's runs not every second: %v", rest)
		}
	}
}

// TestCronDaylightSaving: cron schedules in America/New_York across the
// 2026 changes (clocks forward on March 8 at 02:00 EST, back on November
// 1 at 02:00 EDT).
func TestCronDaylightSaving(t *testing.T) {
	t.Parallel()
	utc := func(month time.Month, day, hour, minute int) time.Time {
		return time.Date(2026, month, day, hour, minute, 0, 0, time.UTC)
	}
	for _, tc := range []struct {
		name string
		expr string
		from time.Time
		want []time.Time
	}{
		{
			// 02:30 does not exist on March 8: that day's run is at the
			// jump, 03:00 EDT.
			name: "02:30 daily, spring forward",
			expr: "CRON_TZ=America/New_York 30 2 * * *",
			from: utc(3, 6, 12, 0),
			want: []time.Time{utc(3, 7, 7, 30), utc(3, 8, 7, 0), utc(3, 9, 6, 30), utc(3, 10, 6, 30)},
		},
		{
			// 02:30 exists once on November 1 (02:00 EDT became 01:00 EST).
			name: "02:30 daily, fall back",
			expr: "CRON_TZ=America/New_York 30 2 * * *",
			from: utc(10, 30, 12, 0),
			want: []time.Time{utc(10, 31, 6, 30), utc(11, 1, 7, 30), utc(11, 2, 7, 30)},
		},
		{
			// 01:30 comes twice on November 1: it runs the first time.
			name: "01:30 daily, fall back",
			expr: "CRON_TZ=America/New_York 30 1 * * *",
			from: utc(10, 31, 12, 0),
			want: []time.Time{utc(11, 1, 5, 30), utc(11, 2, 6, 30)},
		},
		{
			// Every 30 minutes of every hour: by the real clock, through the
			// repeated hour.
			name: "every 30 minutes, fall back",
			expr: "CRON_TZ=America/New_York */30 * * * *",
			from: utc(11, 1, 4, 15),
			want: []time.Time{utc(11, 1, 4, 30), utc(11, 1, 5, 0), utc(11, 1, 5, 30), utc(11, 1, 6, 0), utc(11, 1, 6, 30), utc(11, 1, 7, 0)},
		},
		{
			name: "every 30 minutes, spring forward",
			expr: "CRON_TZ=America/New_York */30 * * * *",
			from: utc(3, 8, 6, 15),
			want: []time.Time{utc(3, 8, 6, 30), utc(3, 8, 7, 0), utc(3, 8, 7, 30)},
		},
		{
			// Lord Howe moves its clocks by 30 minutes: 02:00 became 02:30
			// on October 4, 2026 (UTC+10:30 to +11).
			name: "Lord Howe 02:15 daily, spring forward",
			expr: "CRON_TZ=Australia/Lord_Howe 15 2 * * *",
			from: utc(10, 2, 12, 0),
			want: []time.Time{utc(10, 2, 15, 45), utc(10, 3, 15, 30), utc(10, 4, 15, 15)},
		},
		{
			// And 02:00 became 01:30 on April 5, 2026: 01:45 came twice.
			name: "Lord Howe 01:45 daily, fall back",
			expr: "CRON_TZ=Australia/Lord_Howe 45 1 * * *",
			from: utc(4, 3, 12, 0),
			want: []time.Time{utc(4, 3, 14, 45), utc(4, 4, 14, 45), utc(4, 5, 15, 15)},
		},
		{
			name: "02:30 daily in UTC, no change",
			expr: "30 2 * * *",
			from: utc(3, 7, 12, 0),
			want: []time.Time{utc(3, 8, 2, 30), utc(3, 9, 2, 30)},
		},
	} {
		s, err := ParseCron(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []time.Time
		for at := tc.from; len(got) < len(tc.want); {
			at = s.Next(at)
			got = append(got, at)
		}
		if !slices.EqualFunc(got, tc.want, time.Time.Equal) {
			t.Errorf("%s: runs\n%v\nwant\n%v", tc.name, got, tc.want)
		}
		// Each run is what Next gives from just before it, so that a
		// persisted run reads as on schedule.
		for _, at := range got {
			if again := s.Next(at.Add(-time.Microsecond)); !again.Equal(at) {
				t.Errorf("%s: Next(%v - 1µs) = %v", tc.name, at, again)
			}
		}
	}
}
