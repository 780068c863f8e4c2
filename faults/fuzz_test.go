package faults

import (
	"errors"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
)

// Fuzz tests of the schedule parsers, through the public API. Plain test
// runs exercise the seeds (here and in testdata/fuzz); make fuzz runs the
// fuzzer for a while.

// FuzzParseCron: ParseCron never panics; it accepts an expression or
// returns an error wrapping ErrInvalidArgs; an accepted schedule's Next is
// strictly after its argument (or zero: no run within the parser's
// horizon), and keeps going forward.
func FuzzParseCron(f *testing.F) {
	for _, s := range []string{
		"* * * * *", "*/5 * * * *", "0 3 * * MON", "0 0 1 1 *", "0 0 30 2 *", "59 23 31 12 SUN",
		"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@every 10m", "@every 1h30m",
		"@every 0s", "@every -5s", "@every", "@", "CRON_TZ=Europe/Paris 0 9 * * 1-5", "TZ=UTC 0 * * * *",
		"CRON_TZ=UTC", "TZ=", "CRON_TZ=Nowhere/Nothing * * * * *", "CRON_TZ=../../etc/passwd * * * * *",
		"", " ", "* * * *", "* * * * * *", "60 * * * *", "1-0 * * * *", "*/0 * * * *", "0-59/7 * * * *",
		"5,10,15 * ? * *", "L * * * *", "0 0 * * 7", "0 0 * JAN-DEC *", "-1 * * * *", "1/2/3 * * * *",
		// Zones with fixed hours (kept to one run per wall time across DST):
		// New York, Lord Howe (30-minute shifts), Apia (skipped 2011-12-30).
		"CRON_TZ=America/New_York 30 1,2 * * *", "CRON_TZ=Australia/Lord_Howe 15,45 1,2 * * *", "CRON_TZ=Pacific/Apia 0 0 * * *",
	} {
		f.Add(s, int64(1_790_000_000))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := client.ParseCron(expr)
		if err != nil {
			if !errors.Is(err, client.ErrInvalidArgs) {
				t.Fatalf("ParseCron(%q): error %v does not wrap ErrInvalidArgs", expr, err)
			}
			if s != nil {
				t.Fatalf("ParseCron(%q): a schedule with error %v", expr, err)
			}
			return
		}
		at := fuzzTime(unix)
		next := s.Next(at)
		if next.IsZero() {
			return
		}
		if !next.After(at) {
			t.Fatalf("ParseCron(%q).Next(%v) = %v, not after it", expr, at, next)
		}
		if after := s.Next(next); !after.IsZero() && !after.After(next) {
			t.Fatalf("ParseCron(%q).Next(%v) = %v, not after it", expr, next, after)
		}
	})
}

// FuzzPeriodicInterval: an interval schedule's next run is strictly after
// its argument, at most one interval later, and on a multiple of the
// interval (so every client computes the same run times); a non-positive
// interval never runs.
func FuzzPeriodicInterval(f *testing.F) {
	for _, c := range []struct {
		d    time.Duration
		unix int64
		nsec uint32
	}{
		{time.Second, 1_790_000_000, 0}, {time.Second, 1_790_000_000, 999_999_999}, {time.Minute, 1_790_000_059, 1},
		{time.Hour, 1_790_000_000, 0}, {24 * time.Hour, 1_790_000_000, 5}, {7 * 24 * time.Hour, 1_790_000_000, 0},
		{15 * time.Minute, -1, 0}, {1500 * time.Millisecond, 0, 0}, {time.Second + 1, 42, 42}, {0, 0, 0}, {-time.Hour, 0, 0},
		{100 * 365 * 24 * time.Hour, 1_790_000_000, 0},
	} {
		f.Add(int64(c.d), c.unix, c.nsec)
	}
	f.Fuzz(func(t *testing.T, d int64, unix int64, nsec uint32) {
		interval := time.Duration(d)
		if interval > 0 {
			// Intervals from 1 s (the shortest Add accepts) to 100 years.
			interval = time.Second + interval%(100*365*24*time.Hour)
		}
		at := fuzzTime(unix).Add(time.Duration(nsec % 1_000_000_000))
		next := client.PeriodicInterval(interval).Next(at)
		if interval <= 0 {
			if !next.IsZero() {
				t.Fatalf("interval %v: Next(%v) = %v, want never", interval, at, next)
			}
			return
		}
		if !next.After(at) || next.Sub(at) > interval {
			t.Fatalf("interval %v: Next(%v) = %v, want within (at, at+interval]", interval, at, next)
		}
		if !next.Truncate(interval).Equal(next) {
			t.Fatalf("interval %v: Next(%v) = %v, not on a multiple of the interval", interval, at, next)
		}
		if again := client.PeriodicInterval(interval).Next(next); again.Sub(next) != interval {
			t.Fatalf("interval %v: runs %v then %v", interval, next, again)
		}
	})
}

// fuzzTime maps any int64 to a time between 1900 and 2300, where periodic
// schedules are asked about.
func fuzzTime(unix int64) time.Time {
	const lo, span = -2_208_988_800, 400 * 365 * 24 * 3600 // 1900-01-01, 400 years
	u := unix % span
	if u < 0 {
		u += span
	}
	return time.Unix(lo+u, 0).UTC()
}
