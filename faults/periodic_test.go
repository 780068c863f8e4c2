package faults

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testwait"
)

// envPeriodicKillFor overrides how long TestDurablePeriodicLeaderKills
// kills leaders (default 5m; at least 2m, so that the daily run falls in
// it).
const envPeriodicKillFor = "MILLRACE_FAULTS_PERIODIC_KILL_FOR"

// runAtSQL is a periodic run's run time, which its scheduled_at stops
// being once the run is retried (a run rescued from a killed leader).
const runAtSQL = "(metadata->>'" + client.PeriodicRunAtMetadataKey + "')::timestamptz"

// TestDurablePeriodicLeaderKills is the acceptance test of durable
// periodic jobs. Three helper processes share a periodic job every 2 s
// (ID "tick") and a daily one (ID "daily", a cron in America/New_York due
// half way through). For 5 minutes the leader is killed with SIGKILL
// every 20 s (or, as a survivor takes over only once the dead leader's
// term has expired, 15 s by default, 3 ticks after it does); a replacement
// process starts once a survivor leads. Then
// every process is killed and the cluster stays down for at least 3 ticks
// before 3 new processes start.
//
// Expected: every 2 s tick from the first run to the last one enqueued
// before the cluster went down is enqueued exactly once; the daily run
// exactly once; of the ticks that fell while the cluster was down, exactly
// one run, the first (the catch-up run); ticks from the moment the last
// new process was running are each enqueued exactly once; none twice
// anywhere.
//
// A new leader knows only its own start: ticks held up by a change of
// leader are all enqueued when the new leader was already running at
// those ticks. So each replacement process is started once a survivor
// leads (see PeriodicJobEnqueuerConfig.LiveSince).
func TestDurablePeriodicLeaderKills(t *testing.T) {
	t.Parallel()
	killFor := 5 * time.Minute
	if v := os.Getenv(envPeriodicKillFor); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Minute {
			t.Fatalf("%s=%q: want a duration of at least 2m", envPeriodicKillFor, v)
		}
		killFor = d
	}
	const (
		tick       = 2 * time.Second
		killEvery  = 20 * time.Second
		downTicks  = 3
		afterTicks = 10 // ticks to see enqueued after the restart
	)
	e := newEnv(t, loadSizes(t))
	now := e.dbNow()
	dailyAt := now.Add(killFor / 2).Truncate(time.Minute).Add(time.Minute)
	zone, loc := dailyZone(t, dailyAt)
	local := dailyAt.In(loc)
	daily := fmt.Sprintf("CRON_TZ=%s %d %d * * *", zone, local.Minute(), local.Hour())
	opts := helperOpts{periodic: tick, daily: daily}

	n := 0
	helpers := map[string]*helper{}
	startOne := func() {
		n++
		opts.id = fmt.Sprintf("p%d", n)
		helpers[opts.id] = e.startHelper(opts)
	}
	for range 3 {
		startOne()
	}
	leader := func(timeout time.Duration) string {
		t.Helper()
		var id string
		if !testwait.Poll(timeout, func() bool { id = e.leader(); return helpers[id] != nil }) {
			t.Fatalf("no live helper leads after %v (leader %q)", timeout, id)
		}
		return id
	}
	leader(60 * time.Second)
	begin := time.Now()
	kills := 0
	for time.Since(begin) < killFor {
		id := leader(60 * time.Second)
		killedAt := time.Now()
		helpers[id].kill()
		delete(helpers, id)
		kills++
		leader(60 * time.Second) // a survivor takes over
		elected := time.Now()
		startOne()
		// The scenario's rhythm (not a wait for a condition): the next
		// kill comes 20 s after this one, and no sooner than 3 ticks after
		// the new leader took over, so that it also enqueues on time.
		time.Sleep(max(time.Until(killedAt.Add(killEvery)), time.Until(elected.Add(3*tick))))
	}

	// The whole cluster goes down.
	for id, h := range helpers {
		h.kill()
		delete(helpers, id)
	}
	var lastBefore time.Time
	e.scan("SELECT max("+runAtSQL+") FROM "+e.job()+" WHERE kind = $1", []any{kindPeriodic}, &lastBefore)
	lastBefore = lastBefore.UTC()
	testwait.For(t, time.Minute, fmt.Sprintf("%d ticks to fall with the cluster down", downTicks), func() bool {
		return e.dbNow().After(lastBefore.Add((downTicks + 1) * tick))
	})
	restartAt := e.dbNow()
	for range 3 {
		startOne()
	}
	allRunning := e.dbNow()
	var last time.Time
	testwait.For(t, 2*time.Minute, fmt.Sprintf("%d ticks enqueued after the restart", afterTicks), func() bool {
		e.scan("SELECT coalesce(max("+runAtSQL+"), 'epoch') FROM "+e.job()+" WHERE kind = $1", []any{kindPeriodic}, &last)
		return last.After(allRunning.Add(afterTicks * tick))
	})
	for _, h := range helpers {
		h.stop()
	}
	last = last.UTC()

	// The accounting.
	// A run is known by the run time it records (a run rescued from a
	// killed leader is retried at another scheduled_at).
	rows, err := e.db.Pool.Query(t.Context(), "SELECT run_at, count(*) FROM (SELECT "+runAtSQL+" AS run_at FROM "+e.job()+
		" WHERE kind = $1) r GROUP BY run_at ORDER BY run_at", kindPeriodic)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[time.Time]int{}
	var first time.Time
	var at time.Time
	var count int
	if _, err := pgx.ForEachRow(rows, []any{&at, &count}, func() error {
		at = at.UTC()
		if first.IsZero() {
			first = at
		}
		runs[at] = count
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var expected, enqueued, doubled, missing, downRuns, downTicksSeen, ambiguous int
	var problems []string
	for at := first; !at.After(last); at = at.Add(tick) {
		c := runs[at]
		if c > 1 {
			doubled++
			problems = append(problems, fmt.Sprintf("%s enqueued %d times", at.Format(time.TimeOnly), c))
		}
		switch {
		case !at.After(lastBefore) || at.After(allRunning):
			expected++
			enqueued += min(c, 1)
			if c == 0 {
				missing++
				problems = append(problems, fmt.Sprintf("%s missing", at.Format(time.TimeOnly)))
			}
		case at.Before(restartAt):
			downTicksSeen++
			downRuns += c
			if c > 0 && !at.Equal(lastBefore.Add(tick)) {
				problems = append(problems, fmt.Sprintf("down-time run at %s, not the first down tick %s", at.Format(time.TimeOnly), lastBefore.Add(tick).Format(time.TimeOnly)))
			}
		default:
			ambiguous += c // between the restart and the last process running: at most once each
		}
	}
	for at := range runs {
		if !at.Equal(at.Truncate(tick)) {
			problems = append(problems, fmt.Sprintf("run at %s is not on a tick", at.Format(time.RFC3339Nano)))
		}
	}
	if downRuns != 1 {
		problems = append(problems, fmt.Sprintf("%d runs for the %d ticks that fell while the cluster was down, want 1", downRuns, downTicksSeen))
	}
	if downTicksSeen < downTicks {
		problems = append(problems, fmt.Sprintf("only %d ticks fell while the cluster was down, want at least %d", downTicksSeen, downTicks))
	}
	var dailyRuns int
	var dailyScheduled time.Time
	e.scan("SELECT count(*), coalesce(max("+runAtSQL+"), 'epoch') FROM "+e.job()+" WHERE kind = $1", []any{kindDaily}, &dailyRuns, &dailyScheduled)
	if dailyRuns != 1 || !dailyScheduled.Equal(dailyAt) {
		problems = append(problems, fmt.Sprintf("daily job: %d runs (last at %s), want 1 at %s", dailyRuns, dailyScheduled.UTC(), dailyAt))
	}
	var dailyNext time.Time
	e.scan("SELECT next_run_at FROM "+pgx.Identifier{e.schema, "millrace_periodic"}.Sanitize()+" WHERE id = 'daily'", nil, &dailyNext)
	if !dailyNext.Equal(dailyAt.In(loc).AddDate(0, 0, 1)) {
		problems = append(problems, fmt.Sprintf("daily job's next run %s, want a day after %s", dailyNext.UTC(), dailyAt))
	}
	summary := fmt.Sprintf("%d leader kills in %v; 2 s ticks: %d expected, %d enqueued, %d doubled, %d missing; "+
		"cluster down for %d ticks: %d run(s); %d run(s) of the ticks between restart and the last process up; daily: %d run(s)",
		kills, killFor, expected, enqueued, doubled, missing, downTicksSeen, downRuns, ambiguous, dailyRuns)
	t.Log(summary)
	fmt.Println("durable periodic jobs:", summary)
	if len(problems) > 0 {
		t.Errorf("%d problems:\n%s", len(problems), strings.Join(problems[:min(len(problems), 40)], "\n"))
	}
}

// dailyZone is the zone of the daily job that runs at dailyAt:
// America/New_York, a zone with daylight saving time, unless its offset
// changes within an hour before dailyAt or the day after it. Then the
// job's run time may be one the clock skips or passes twice, which the
// schedule handles on purpose (TestCronDaylightSaving) and this test does
// not expect: Asia/Kolkata, a zone without, is used instead.
func dailyZone(t *testing.T, dailyAt time.Time) (string, *time.Location) {
	t.Helper()
	load := func(zone string) *time.Location {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	ny := load("America/New_York")
	// A window of 26 hours holds at most one change of offset.
	_, from := dailyAt.Add(-time.Hour).In(ny).Zone()
	_, to := dailyAt.Add(25 * time.Hour).In(ny).Zone()
	if from == to {
		return "America/New_York", ny
	}
	t.Logf("America/New_York changes its offset within a day of the daily run at %s: the daily job runs in Asia/Kolkata", dailyAt.UTC())
	return "Asia/Kolkata", load("Asia/Kolkata")
}

// TestDailyZone: the daily job leaves New York's zone on the days its
// offset changes, and only then.
func TestDailyZone(t *testing.T) {
	for _, c := range []struct {
		at   time.Time
		zone string
	}{
		{time.Date(2027, 6, 1, 12, 0, 0, 0, time.UTC), "America/New_York"},
		// 02:30 EST on the Saturday before 2027's spring forward: the next
		// day's 02:30 does not exist.
		{time.Date(2027, 3, 13, 7, 30, 0, 0, time.UTC), "Asia/Kolkata"},
		// 01:30 EDT on 2027's fall back: passed twice.
		{time.Date(2027, 11, 7, 5, 30, 0, 0, time.UTC), "Asia/Kolkata"},
		// 01:30 EST the day before it: its next day's 01:30 is passed twice.
		{time.Date(2027, 11, 6, 5, 30, 0, 0, time.UTC), "Asia/Kolkata"},
		{time.Date(2027, 11, 9, 5, 30, 0, 0, time.UTC), "America/New_York"},
	} {
		if zone, loc := dailyZone(t, c.at); zone != c.zone || loc.String() != c.zone {
			t.Errorf("dailyZone(%s) = %s (%s), want %s", c.at, zone, loc, c.zone)
		}
	}
}

// dbNow is the database's clock.
func (e *env) dbNow() time.Time {
	var now time.Time
	e.scan("SELECT now()", nil, &now)
	return now.UTC()
}
